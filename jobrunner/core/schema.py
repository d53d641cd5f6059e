"""The schema jobrunner's objects live in, and the one rule that puts every statement there.

jobrunner's SQL (sql/*.sql, queries, migrations) names its objects unqualified:
`jobrunner_jobs`, `jobrunner_job_state`, `jobrunner_rate_wait(...)`, and notifies
channels by their plain names (`pg_notify('jobrunner_insert', ...)`). `qualify(sql, schema)`
turns such a statement into the one for `schema`, at the single place statements reach the
server (the connections of `db.connection`, the adapters of the caller's connections):

- an unqualified name starting with `jobrunner_` becomes `"schema".jobrunner_...`, except
  where SQL takes a bare name (after CONSTRAINT, INDEX, TRIGGER, POLICY, RULE);
- a string literal that is exactly such a name (a NOTIFY channel) becomes
  `'schema.jobrunner_...'`, and so does the channel of LISTEN, UNLISTEN and NOTIFY
  (`"schema.jobrunner_..."`), so instances in different schemas never hear each other.

Dollar-quoted bodies (a function's, a DO block's) follow the same rule inside, so a
function finds its own schema's tables whoever calls it (and SQL functions stay
inlinable). String literals otherwise, quoted identifiers and comments are left alone. The
default schema (public) leaves statements untouched. It is text, not a parser:
new SQL keeps to plain `jobrunner_*` names and works in every schema without change.
"""

from __future__ import annotations

import re
from functools import lru_cache

from jobrunner.core.errors import ConfigError

DEFAULT_SCHEMA = "public"
# The longest channel name is `<schema>.jobrunner_<name>` and must fit PostgreSQL's 63 bytes.
MAX_SCHEMA_LENGTH = 32
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

# One token at a time: what to skip whole, or a bare word.
_TOKEN = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>[eE]?'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$.*?\$(?P=tag)?\$)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    """,
    re.S | re.X,
)
_BARE_AFTER = frozenset({"constraint", "index", "trigger", "policy", "rule"})
_CHANNEL_AFTER = frozenset({"listen", "unlisten", "notify"})
_PASSED_OVER = frozenset({"if", "not", "exists", "concurrently"})  # INDEX IF NOT EXISTS x
_PREFIX = "jobrunner_"


def validate_schema(schema: object) -> str:
    """`schema` if it is a plain lowercase identifier; ConfigError saying what is wrong otherwise.

    Example:
        >>> validate_schema("jobs")
        'jobs'
    """
    if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
        raise ConfigError(
            f"schema must be a lowercase identifier (letters, digits, _; not starting with a "
            f"digit), got {schema!r}"
        )
    if len(schema) > MAX_SCHEMA_LENGTH:
        raise ConfigError(
            f"schema must be at most {MAX_SCHEMA_LENGTH} characters, got {len(schema)}: {schema!r}"
        )
    return schema


def quote_ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def channel(name: str, schema: str = DEFAULT_SCHEMA) -> str:
    """The NOTIFY channel `name` (e.g. 'jobrunner_insert') of the instance in `schema`.

    Example:
        >>> channel("jobrunner_insert", "jobs")
        'jobs.jobrunner_insert'
    """
    return name if schema == DEFAULT_SCHEMA else f"{schema}.{name}"


def qualify(sql: str, schema: str = DEFAULT_SCHEMA) -> str:
    """`sql` with jobrunner's unqualified names put in `schema` (see the module's rule)."""
    if schema == DEFAULT_SCHEMA:
        return sql
    return _qualify(sql, schema)


@lru_cache(maxsize=4096)
def _qualify(sql: str, schema: str) -> str:
    if _PREFIX not in sql.lower():
        return sql
    out: list[str] = []
    last = 0
    previous = ""  # the previous bare word, lowercased (IF, NOT, EXISTS passed over)
    for match in _TOKEN.finditer(sql):
        kind, text = match.lastgroup, match.group()
        replacement = None
        if kind == "dollar":  # a function's or a DO block's body: the same rule inside
            tag = len(match["tag"] or "") + 2
            replacement = text[:tag] + _qualify(text[tag:-tag], schema) + text[-tag:]
        elif kind == "string":
            replacement = _literal(text, schema)
        elif kind == "word":
            after_dot = sql[: match.start()].rstrip().endswith(".")
            replacement = None if after_dot else _word(text, previous, schema)
            lowered = text.lower()
            if not (lowered in _PASSED_OVER and previous in _BARE_AFTER):
                previous = lowered
        if replacement is not None:
            out += [sql[last : match.start()], replacement]
            last = match.end()
    out.append(sql[last:])
    return "".join(out)


def _literal(text: str, schema: str) -> str | None:
    """A string literal that is exactly one of jobrunner's names: the schema's channel."""
    inner = text[1:-1]
    if text.startswith("'") and inner.startswith(_PREFIX) and _IDENTIFIER.fullmatch(inner):
        return f"'{channel(inner, schema)}'"
    return None


def _word(text: str, previous: str, schema: str) -> str | None:
    """A bare word: one of jobrunner's names in the schema, or its channel after LISTEN."""
    if not text.lower().startswith(_PREFIX) or previous in _BARE_AFTER:
        return None
    if previous in _CHANNEL_AFTER:  # LISTEN jobrunner_insert: the schema's channel
        return quote_ident(channel(text, schema))
    return f"{quote_ident(schema)}.{text}"
