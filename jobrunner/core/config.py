"""Settings: defaults < config/jobrunner.toml < JOBRUNNER_* environment < CLI flags."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobrunner.core.errors import ConfigError, InvalidJob
from jobrunner.core.new_job import validate_queue
from jobrunner.core.queue_config import MAX_QUEUE_LIMIT as MAX_QUEUE_LIMIT
from jobrunner.core.queue_config import QueueConfig as QueueConfig
from jobrunner.core.queue_config import _seconds
from jobrunner.core.queue_config import parse_queues as parse_queues
from jobrunner.core.queue_config import queue_config as queue_config
from jobrunner.core.schema import DEFAULT_SCHEMA, validate_schema

if TYPE_CHECKING:
    from jobrunner.core.job import Job

DEFAULT_CONFIG_PATH = Path("config/jobrunner.toml")

# jobrunner.testing.with_testing_mode: the testing mode ("inline" or "manual") of every
# client inside the block it wraps, over `testing=` and the setting.
testing_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jobrunner_testing_mode", default=None
)
DAY_S = 86_400.0
MIN_INTERVAL_S = 0.01
"""The shortest interval or lease: shorter ones would spin, committing without pause."""


@dataclass(frozen=True, slots=True)
class CronEntry:
    """One crontab line: insert `worker` with `args` on every `schedule` slot."""

    schedule: str
    worker: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    timezone: str = "UTC"
    name: str | None = None
    tags: tuple[str, ...] | None = None  # None: the worker's
    meta: dict[str, Any] = field(default_factory=dict)  # besides the cron keys

    def __post_init__(self) -> None:
        if isinstance(self.tags, str):
            raise ConfigError(f"crontab entry {self.key!r} tags must be a list, got {self.tags!r}")
        if self.tags is not None:
            object.__setattr__(self, "tags", tuple(self.tags))
        if not isinstance(self.meta, dict):
            raise ConfigError(
                f"crontab entry {self.key!r} meta must be a JSON object (a table), "
                f"got {self.meta!r}"
            )

    @property
    def key(self) -> str:
        """The entry's identity: its name, or its worker and schedule."""
        return self.name or f"{self.worker}@{self.schedule}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node needs; every field has a sane default."""

    database_url: str | None = None
    app: tuple[str, ...] = ()
    queues: Mapping[str, QueueConfig] = field(
        default_factory=lambda: {"default": QueueConfig(limit=10)}
    )
    node: str | None = None
    data_dir: str = ".jobrunner"
    log_level: str = "info"
    log_format: str = "auto"
    log_job_start: bool = False  # job.start at info (default: debug; job.stop says it all)
    log_job_events: str = "jobrunner"  # "structlog": through the application's structlog
    pool_size: int = 10
    pool_timeout_s: float = 10.0
    threads: int = 10
    poll_interval_s: float = 1.0
    claim_ahead: bool = True  # queues without cluster-wide limits hold a batch claimed ahead
    shutdown_grace_s: float = 15.0
    heartbeat_interval_s: float = 5.0
    node_lease_s: float = 30.0
    leader_lease_s: float = 15.0
    stage_interval_s: float = 1.0
    stage_batch_size: int = 5_000
    rescue_interval_s: float = 10.0
    prune_interval_s: float = 60.0
    prune_max_age_s: float = 7 * DAY_S
    prune_max_age_by_state: Mapping[str, float] = field(default_factory=dict)
    prune_batch_size: int = 10_000
    cron_interval_s: float = 1.0
    cron_catch_up_s: float | None = None
    control_poll_interval_s: float = 1.0
    crontab: tuple[CronEntry, ...] = ()
    testing: str | None = None  # "inline" | "manual": a Runner starts no queue and no plugin
    http_listen: str | None = None  # [http] listen: /metrics, /healthz, /readyz
    http_web: bool = False  # [http] web: `jobrunner start` serves the dashboard there too
    job_counts_interval_s: float = 5.0  # how often /metrics counts jobs by state (the leader)
    on_error: str | Callable[[Job, BaseException], object] | None = None
    otel: bool = False
    schema: str = DEFAULT_SCHEMA  # every table, function and channel of jobrunner's in it
    pgbouncer: bool = False  # transaction-pooler-safe statements (no cache, no session state)
    listen_url: str | None = None  # a direct URL for LISTEN, bypassing a pooler
    reindex_schedule: str | None = None  # crontab (UTC) of the reindexer; None: off
    reindex_timeout_s: float = 3_600.0  # one index's rebuild at most
    reindex_check_interval_s: float = 60.0

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        self._check_types()
        self._check_numbers()
        for queue in self.queues:
            try:
                validate_queue(queue)
            except InvalidJob as exc:
                raise ConfigError(str(exc)) from None
        self._validate_observability()
        self._validate_choices()
        validate_schema(self.schema)
        if not isinstance(self.pgbouncer, bool):
            raise ConfigError(f"pgbouncer must be true or false, got {self.pgbouncer!r}")
        for state, age in self.prune_max_age_by_state.items():
            if state not in ("completed", "cancelled", "discarded") or not _seconds(age):
                raise ConfigError(
                    f"prune_max_age_by_state takes completed, cancelled or discarded "
                    f"with seconds >= 0, got {state!r} = {age!r}"
                )

    def _validate_observability(self) -> None:
        if self.http_listen is not None:
            parse_listen(self.http_listen)
        elif self.http_web:
            raise ConfigError("[http] web = true needs [http] listen (or --web HOST:PORT)")
        if self.on_error is not None and not (
            callable(self.on_error) or (isinstance(self.on_error, str) and self.on_error.strip())
        ):
            raise ConfigError(
                f"on_error must name a function like 'myapp.errors:report', got {self.on_error!r}"
            )
        for name in ("otel", "claim_ahead"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def _validate_choices(self) -> None:
        if self.testing not in (None, "inline", "manual"):
            raise ConfigError(f"testing must be 'inline' or 'manual', got {self.testing!r}")
        if self.log_format not in ("auto", "json", "console"):
            raise ConfigError(f"log_format must be auto, json or console, got {self.log_format!r}")
        if self.log_job_events not in ("jobrunner", "structlog"):
            raise ConfigError(
                f"log_job_events must be jobrunner or structlog, got {self.log_job_events!r}"
            )
        if not isinstance(self.log_job_start, bool):
            raise ConfigError(f"log_job_start must be true or false, got {self.log_job_start!r}")

    def _check_numbers(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_s") and value is not None and not _seconds(value):
                raise ConfigError(f"{f.name} must be seconds >= 0, got {value!r}")
        for name in _PERIODS:
            if getattr(self, name) < MIN_INTERVAL_S:
                raise ConfigError(
                    f"{name} must be at least {MIN_INTERVAL_S} s, got {getattr(self, name)!r}"
                )
        for name in ("pool_size", "threads", "stage_batch_size", "prune_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")

    def _check_types(self) -> None:
        for name in ("database_url", "node", "listen_url", "reindex_schedule"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, got {value!r}")
        for name in ("data_dir", "log_level", "log_format"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log level must be debug, info, warning or error, got {self.log_level!r}"
            )
        if not isinstance(self.app, tuple) or not all(isinstance(m, str) for m in self.app):
            raise ConfigError(f"app must be a module name or a list of them, got {self.app!r}")
        if not isinstance(self.queues, Mapping) or not all(
            isinstance(c, QueueConfig) for c in self.queues.values()
        ):
            raise ConfigError(f"queues must map names to limits, got {self.queues!r}")
        if not isinstance(self.crontab, tuple) or not all(
            isinstance(e, CronEntry) for e in self.crontab
        ):
            raise ConfigError(f"crontab must be a list of entries, got {self.crontab!r}")
        if not isinstance(self.prune_max_age_by_state, Mapping):
            raise ConfigError(
                f"prune_max_age_by_state must be a table, got {self.prune_max_age_by_state!r}"
            )

    @classmethod
    def load(
        cls,
        *,
        config: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Settings from the config file, then the environment, then `overrides` (None skipped).

        Example:
            >>> Settings.load(queues=parse_queues("emails:20,default:10"))
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = config or env.get("JOBRUNNER_CONFIG")
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
        if path.is_file():
            values.update(_from_toml(path))
        values.update(_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid settings: {exc}") from None


@functools.cache
def configured_schema() -> str:
    """The schema of the project's settings (config file, JOBRUNNER_SCHEMA), read once: for
    the connections jobrunner is handed without settings (an ORM's, Django's)."""
    return Settings.load().schema


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_PERIODS = tuple(name for name in _FIELDS if name.endswith(("_interval_s", "_lease_s")))


DEFAULT_HTTP_LISTEN = "127.0.0.1:9090"


def parse_listen(spec: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (every interface) or `PORT` (127.0.0.1) into a host and a port.

    Example:
        >>> parse_listen("0.0.0.0:9090")
        ('0.0.0.0', 9090)
    """
    if not isinstance(spec, str):
        raise ConfigError(f"http listen address must be HOST:PORT, got {spec!r}")
    host, sep, port = spec.strip().rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif not host:
        host = "0.0.0.0"  # noqa: S104 - ':PORT' asks for every interface
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            f"http listen address must be HOST:PORT with a port from 0 to 65535, got {spec!r}"
        )
    return host, int(port)


def _flatten_http(data: dict[str, Any]) -> dict[str, Any]:
    """`[http] listen = ...` is the setting `http_listen`, `[http] web = ...` `http_web`."""
    if "http" not in data:
        return data
    flat = {k: v for k, v in data.items() if k != "http"}
    flat["http_listen"] = _http_table(data["http"])
    if "web" in data["http"]:
        flat["http_web"] = data["http"]["web"]
    return flat


def _http_table(raw: Any) -> str:
    if not isinstance(raw, dict) or set(raw) - {"listen", "web"}:
        raise ConfigError(f'[http] takes only listen = "HOST:PORT" and web = true, got {raw!r}')
    listen = raw.get("listen", DEFAULT_HTTP_LISTEN)
    if not isinstance(listen, str):
        raise ConfigError(f"[http] listen must be a string like {DEFAULT_HTTP_LISTEN!r}")
    if not isinstance(raw.get("web", False), bool):
        raise ConfigError(f"[http] web must be true or false, got {raw['web']!r}")
    return listen


_CRON_TYPES: dict[str, type | tuple[type, ...]] = {
    "schedule": str,
    "worker": str,
    "args": dict,
    "queue": (str, type(None)),
    "priority": (int, type(None)),
    "max_attempts": (int, type(None)),
    "timezone": str,
    "name": (str, type(None)),
}


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    names = {str: "a string", dict: "a table", int: "an integer", type(None): "absent"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names[k] for k in kinds)


def _cron_entry(raw: Any) -> CronEntry:
    if not isinstance(raw, dict):
        raise ConfigError(f"crontab entries are tables, got {raw!r}")
    for name, kinds in _CRON_TYPES.items():
        value = raw.get(name)
        if name in raw and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise ConfigError(
                f"crontab entry {raw.get('name') or raw.get('worker')!r}: {name} must be "
                f"{_kind_names(kinds)}, got {value!r}"
            )
    try:
        return CronEntry(**raw)
    except TypeError:
        known = {f.name for f in dataclasses.fields(CronEntry)}
        raise ConfigError(
            f"crontab entry {raw!r} needs schedule and worker, and takes only {sorted(known)}"
        ) from None


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
    values: dict[str, Any] = {}
    for key, raw in _flatten_http(data).items():
        if key == "queues":
            if not isinstance(raw, dict):
                raise ConfigError("[queues] must be a table of name = limit")
            values["queues"] = {name: queue_config(name, v) for name, v in raw.items()}
        elif key == "crontab":
            if not isinstance(raw, list):
                raise ConfigError(f"crontab must be a list of [[crontab]] tables, got {raw!r}")
            values["crontab"] = tuple(_cron_entry(e) for e in raw)
        elif key == "app":
            values["app"] = (raw,) if isinstance(raw, str) else raw
            if isinstance(raw, list):
                values["app"] = tuple(raw)
        elif key in _FIELDS:
            values[key] = raw
        else:
            raise ConfigError(f"unknown setting {key!r} in {str(path)!r}")
    return values


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, f in _FIELDS.items():
        raw = env.get(f"JOBRUNNER_{name.upper()}")
        if raw is None or name in ("crontab", "prune_max_age_by_state"):
            continue
        if name == "queues":
            values[name] = parse_queues(raw)
        elif name == "app":
            values[name] = tuple(m.strip() for m in raw.split(",") if m.strip())
        elif f.type in ("float", "float | None"):
            values[name] = _number(name, raw, float)
        elif f.type == "int":
            values[name] = _number(name, raw, int)
        elif f.type == "bool":
            values[name] = _flag(name, raw)
        else:
            values[name] = raw
    return values


def _number(name: str, raw: str, kind: type[float] | type[int]) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"JOBRUNNER_{name.upper()} must be a number, got {raw!r}") from None


def _flag(name: str, raw: str) -> bool:
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"JOBRUNNER_{name.upper()} must be true or false, got {raw!r}")
