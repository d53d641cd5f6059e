"""A queue's options on a node: its limit, cooldown, pause and cluster-wide limits, from
`--queues` (`emails:20:global_limit=5`) or a config table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from jobrunner.core.errors import ConfigError, InvalidJob
from jobrunner.core.limits import Partition, RateLimit, check_global_limit
from jobrunner.core.new_job import validate_queue

MAX_QUEUE_LIMIT = 100_000
"""The most jobs one queue may run at once on a node."""


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """How one queue runs on a node."""

    limit: int = 10
    dispatch_cooldown_s: float = 0.0
    paused: bool = False  # starts paused, unless a resume was persisted (jobrunner resume)
    global_limit: int | None = None  # jobs executing across every node (per partition)
    rate_limit: RateLimit | None = None  # jobs started across every node (per partition)
    partition: Partition | None = None

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if (
            not isinstance(self.limit, int)
            or isinstance(self.limit, bool)
            or not 1 <= self.limit <= MAX_QUEUE_LIMIT
        ):
            raise ConfigError(
                f"queue limit must be an integer from 1 to {MAX_QUEUE_LIMIT}, got {self.limit!r}"
            )
        if not isinstance(self.paused, bool):
            raise ConfigError(f"queue paused must be true or false, got {self.paused!r}")
        if not _seconds(self.dispatch_cooldown_s):
            raise ConfigError(
                f"dispatch_cooldown must be seconds >= 0, got {self.dispatch_cooldown_s!r}"
            )
        if self.global_limit is not None:
            check_global_limit(self.global_limit)
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ConfigError(f"rate_limit must be a RateLimit, got {self.rate_limit!r}")
        if self.partition is not None and not isinstance(self.partition, Partition):
            raise ConfigError(f"partition must be a Partition, got {self.partition!r}")

    @property
    def limited(self) -> bool:
        """Claims go through the cluster-wide limits (a global or rate limit, or partitions)."""
        return (
            self.global_limit is not None
            or self.rate_limit is not None
            or self.partition is not None
        )


def parse_queues(spec: str) -> dict[str, QueueConfig]:
    """Parse `emails:20,default:10` into queue configs.

    Each part is `name[:limit][:option=value...]`, the options being `global_limit=5`,
    `rate_limit=100/60s`, `partition_keys=customer_id+region` and `partition_fields=worker`.
    Raises ConfigError naming the bad part: a limit < 1 or not a number, an empty or
    invalid name, a queue given twice, or a bad option.
    """
    queues: dict[str, QueueConfig] = {}
    if not spec.strip():
        raise ConfigError("--queues is empty; give name:limit pairs like emails:20,default:10")
    for part in spec.split(","):
        name, *options = part.strip().split(":")
        sep, raw_limit = False, ""
        if options and "=" not in options[0]:  # name:limit[:option=value...]
            sep, raw_limit = True, options.pop(0)
        name = name.strip()
        if not name:
            raise ConfigError(f"queue spec {part.strip()!r} has an empty queue name")
        try:
            validate_queue(name)
        except InvalidJob as exc:
            raise ConfigError(str(exc)) from None
        if name in queues:
            raise ConfigError(f"queue {name!r} is given twice in {spec!r}")
        limit = 10
        if sep:
            try:
                limit = int(raw_limit.strip())
            except ValueError:
                raise ConfigError(
                    f"queue {name!r} limit must be a whole number, got {raw_limit.strip()!r}"
                ) from None
            if not 1 <= limit <= MAX_QUEUE_LIMIT:
                raise ConfigError(
                    f"queue {name!r} limit must be from 1 to {MAX_QUEUE_LIMIT}, got {limit}"
                )
        queues[name] = queue_config(name, {"limit": limit, **_spec_options(name, options)})
    return queues


def _spec_options(name: str, options: list[str]) -> dict[str, Any]:
    """`global_limit=5`, `rate_limit=100/60s`, `partition_keys=a+b`, `partition_fields=worker`."""
    table: dict[str, Any] = {}
    partition: dict[str, list[str]] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in _SPEC_OPTIONS:
            raise ConfigError(
                f"queue {name!r} option {option!r} is not one of "
                f"{', '.join(o + '=...' for o in _SPEC_OPTIONS)}"
            )
        if key == "global_limit":
            table[key] = _whole_or_text(value)
        elif key == "rate_limit":
            table[key] = value
        else:
            partition[key.removeprefix("partition_")] = value.split("+") if value else []
    if partition:
        table["partition"] = partition
    return table


_SPEC_OPTIONS = ("global_limit", "rate_limit", "partition_keys", "partition_fields")


def _whole_or_text(raw: str) -> int | str:
    try:
        return int(raw)
    except ValueError:
        return raw


_QUEUE_OPTIONS = {
    "limit",
    "dispatch_cooldown",
    "dispatch_cooldown_s",
    "global_limit",
    "rate_limit",
    "partition",
    "paused",
}


def queue_config(name: str, raw: Any) -> QueueConfig:
    """A queue's config from a limit or a table (the config file's and Runner's shapes).

    Raises ConfigError naming the queue and the option at fault.
    """
    if isinstance(raw, QueueConfig):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"limit": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"queue {name!r} must be a limit or a table, got {raw!r}")
    unknown = set(raw) - _QUEUE_OPTIONS
    if unknown:
        raise ConfigError(f"queue {name!r} has unknown options {sorted(unknown)}")
    try:
        rate = raw.get("rate_limit")
        partition = raw.get("partition")
        cooldown: Any = raw.get("dispatch_cooldown_s", raw.get("dispatch_cooldown", 0.0))
        return QueueConfig(
            limit=raw.get("limit", 10),
            dispatch_cooldown_s=cooldown,
            paused=raw.get("paused", False),
            global_limit=raw.get("global_limit"),
            rate_limit=None if rate is None else RateLimit.parse(rate),
            partition=None if partition is None else Partition.parse(partition),
        )
    except ConfigError as exc:
        raise ConfigError(f"queue {name!r} {str(exc).removeprefix('queue ')}") from None


def _seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
