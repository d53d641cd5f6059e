"""Cluster-wide queue limits: the global limit, the rate limit and partitions (values only).

PostgreSQL enforces them when a node claims jobs (`jobrunner_claim_limited`, migration 4).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from jobrunner.core.errors import ConfigError

PARTITION_FIELDS = ("worker", "args")
MAX_PARTITION_KEYS = 8  # what jobrunner_partition (migration 4) reads
_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0, None: 1.0}


def parse_period(raw: object) -> float:
    """Seconds from `60`, `"60s"`, `"5m"`, `"1h"`, `"1d"` or `"500ms"`; > 0."""
    seconds: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    elif isinstance(raw, str) and (match := _PERIOD.match(raw)):
        seconds = float(match[1]) * _UNITS[match[2]]
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"period must be a duration > 0 like '60s', '5m', '1h' or seconds, got {raw!r}"
        )
    return seconds


def check_global_limit(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"global_limit must be a whole number >= 1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `allowed` jobs (by weight) started in any window of `period_s` seconds."""

    allowed: int
    period_s: float

    @classmethod
    def parse(cls, raw: object) -> RateLimit:
        """From `{allowed = 100, period = "60s"}` or `"100/60s"`."""
        if isinstance(raw, RateLimit):
            return raw
        if isinstance(raw, str):
            allowed, sep, period = raw.partition("/")
            if not sep:
                raise ConfigError(f"rate_limit must look like 100/60s, got {raw!r}")
            raw = {"allowed": _whole(allowed), "period": period}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"rate_limit must be a table like {{ allowed = 100, period = '60s' }}, got {raw!r}"
            )
        unknown = set(raw) - {"allowed", "period"}
        if unknown:
            raise ConfigError(f"rate_limit has unknown options {sorted(unknown)}")
        if "period" not in raw:
            raise ConfigError("rate_limit needs a period, like { allowed = 100, period = '60s' }")
        count: Any = raw.get("allowed")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"rate_limit allowed must be a whole number >= 1, got {count!r}")
        try:
            period_s = parse_period(raw["period"])
        except ConfigError as exc:
            raise ConfigError(f"rate_limit {exc}") from None
        return cls(allowed=count, period_s=period_s)

    def describe(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "period_s": self.period_s}


@dataclass(frozen=True, slots=True)
class Partition:
    """Limits apply per partition: jobs with equal `fields` (worker, args) and args `keys`."""

    fields: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: object) -> Partition:
        """From `{fields = ["worker"]}`, `{keys = ["customer_id"]}` or both."""
        if isinstance(raw, Partition):
            return raw
        if not isinstance(raw, dict) or not raw or set(raw) - {"fields", "keys"}:
            raise ConfigError(
                f"partition must be a table of fields and/or keys, like "
                f"{{ keys = ['customer_id'] }}, got {raw!r}"
            )
        fields = _strings("fields", raw.get("fields", []))
        keys = _strings("keys", raw.get("keys", []))
        for name in fields:
            if name not in PARTITION_FIELDS:
                raise ConfigError(
                    f"partition fields are {', '.join(PARTITION_FIELDS)}, got {name!r}"
                )
        if len(keys) > MAX_PARTITION_KEYS:
            raise ConfigError(f"partition takes at most {MAX_PARTITION_KEYS} keys, got {len(keys)}")
        if not fields and not keys:
            raise ConfigError("partition needs fields or keys, like { keys = ['customer_id'] }")
        return cls(fields=fields, keys=keys)

    def describe(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "keys": list(self.keys)}

    def name(self, values: list[Any]) -> dict[str, Any]:
        """A partition as the database keys it (`jobrunner_partition`: worker, args, then the
        values of the keys) as a readable object: `{"customer_id": 42}`."""
        named: dict[str, Any] = {}
        if "worker" in self.fields:
            named["worker"] = values[0]
        if "args" in self.fields and not self.keys:
            named["args"] = values[1]
        named.update(zip(self.keys, values[2:], strict=False))
        return named


@dataclass(frozen=True, slots=True)
class Limits:
    """A queue's cluster-wide limits, as its producer claims under them."""

    global_limit: int | None = None
    rate_limit: RateLimit | None = None
    partition: Partition | None = None

    def __bool__(self) -> bool:
        return not (
            self.global_limit is None and self.rate_limit is None and self.partition is None
        )

    @property
    def slotted(self) -> bool:
        """Only a global limit: counted in slots that nodes hold (migration 12), so that a
        node may claim jobs ahead of its free slots."""
        return self.global_limit is not None and self.rate_limit is None and self.partition is None

    def partition_args(self) -> tuple[list[str] | None, list[str] | None]:
        if self.partition is None:
            return None, None
        return list(self.partition.fields), list(self.partition.keys)

    def describe(self) -> dict[str, Any]:
        return {
            "global_limit": self.global_limit,
            "rate_limit": None if self.rate_limit is None else self.rate_limit.describe(),
            "partition": None if self.partition is None else self.partition.describe(),
        }


def _strings(option: str, raw: object) -> tuple[str, ...]:
    if isinstance(raw, list | tuple) and all(isinstance(v, str) and v for v in raw):
        return tuple(raw)
    raise ConfigError(f"partition {option} must be a list of non-empty strings, got {raw!r}")


def _whole(raw: str) -> int | str:
    try:
        return int(raw.strip())
    except ValueError:
        return raw.strip()
