"""Typed job args: a worker's args declared as a dataclass or a pydantic model.

Stored args stay a JSON object; the declared type checks them at `new()` (naming the field
at fault) and turns them into the value the worker receives. pydantic is never imported:
a model class is recognised by its `model_validate` and `model_dump` methods.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any

from jobrunner.core.errors import InvalidJob


def is_pydantic(tp: object) -> bool:
    return (
        isinstance(tp, type)
        and callable(getattr(tp, "model_validate", None))
        and callable(getattr(tp, "model_dump", None))
    )


def check_type(tp: object, worker: str) -> type:
    """`tp` if it can type a worker's args, else a TypeError naming the worker."""
    if not isinstance(tp, type) or not (dataclasses.is_dataclass(tp) or is_pydantic(tp)):
        raise TypeError(
            f"worker {worker!r}: args must be a dataclass or a pydantic model class, got {tp!r}"
        )
    if dataclasses.is_dataclass(tp):
        try:
            typing.get_type_hints(tp)
        except Exception as exc:
            raise TypeError(f"worker {worker!r}: cannot read the fields of {tp!r}: {exc}") from None
    return tp


def to_value(tp: type, data: Mapping[str, Any], worker: str) -> Any:
    """The typed value for stored `data`; InvalidJob naming the field that does not fit."""
    try:
        if is_pydantic(tp):
            return _pydantic(tp, data)
        return _dataclass(tp, data, "")
    except _Mismatch as exc:
        raise InvalidJob(f"invalid args for worker {worker!r}: {exc}") from None


def to_dict(tp: type, given: Any, worker: str) -> dict[str, Any]:
    """The JSON object to store for `given`: an instance of `tp` or a dict that fits it."""
    if isinstance(given, tp):
        data = _dump(tp, given)
    elif isinstance(given, dict):
        data = _dump(tp, to_value(tp, given, worker))
    else:
        raise InvalidJob(
            f"invalid args for worker {worker!r}: give a {tp.__name__} or a dict, "
            f"got {type(given).__name__}"
        )
    to_value(tp, data, worker)  # a dataclass does not check its own fields' types
    return data


class _Mismatch(Exception):
    pass


def _dump(tp: type, value: Any) -> dict[str, Any]:
    if is_pydantic(tp):
        dumped: dict[str, Any] = value.model_dump(mode="json")
        return dumped
    return typing.cast(dict[str, Any], _jsonable(dataclasses.asdict(value)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _pydantic(tp: type, data: Mapping[str, Any]) -> Any:
    try:
        return tp.model_validate(data)  # type: ignore[attr-defined]
    except Exception as exc:
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            raise _Mismatch(str(exc)) from None
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "(root)"
        raise _Mismatch(f"field {where!r}: {first.get('msg', 'invalid')}") from None


def _dataclass(tp: type, data: object, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise _Mismatch(f"{_where(path)} must be an object, got {_shown(data)}")
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _Mismatch(f"unknown field {_join(path, unknown[0])!r}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        where = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Mismatch(f"missing field {where!r}")
            continue
        values[name] = _convert(data[name], hints.get(name, Any), where)
    try:
        return tp(**values)
    except (TypeError, ValueError) as exc:
        raise _Mismatch(f"{_where(path)}: {exc}") from None


def _convert(value: Any, hint: Any, path: str) -> Any:
    """`value` as `hint` asks, or _Mismatch naming `path`."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(value, hint, path)
    if origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise _Mismatch(f"field {path!r} must be {_type_name(hint)}, got {value!r}")
    if hint is None or hint is type(None):
        if value is None:
            return None
        raise _Mismatch(f"field {path!r} must be None, got {_shown(value)}")
    return _convert_class(value, hint, origin, path)


def _union(value: Any, hint: Any, path: str) -> Any:
    arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
    if value is None and len(arms) < len(typing.get_args(hint)):
        return None
    if len(arms) == 1:  # Optional[X]: X's own message says what is wrong inside it
        return _convert(value, arms[0], path)
    for arm in arms:
        try:
            return _convert(value, arm, path)
        except _Mismatch:
            continue
    raise _Mismatch(f"field {path!r} must be {_type_name(hint)}, got {_shown(value)}")


def _convert_class(value: Any, hint: Any, origin: Any, path: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            pass
    elif origin in (list, tuple, set, frozenset) and isinstance(value, list):
        return _sequence(value, hint, origin, path)
    elif origin is dict and isinstance(value, dict):
        item = (typing.get_args(hint) or (Any, Any))[1]
        return {k: _convert(v, item, f"{path}.{k}") for k, v in value.items()}
    elif _plain(value, origin or hint):
        return value
    raise _Mismatch(f"field {path!r} must be {_type_name(hint)}, got {_shown(value)}")


def _sequence(value: list[Any], hint: Any, origin: type, path: str) -> Any:
    items = typing.get_args(hint)
    if origin is tuple and items and items[-1] is not Ellipsis:
        if len(items) != len(value):
            raise _Mismatch(f"field {path!r} must hold {len(items)} items, got {len(value)}")
        return tuple(
            _convert(v, t, f"{path}[{i}]")
            for i, (v, t) in enumerate(zip(value, items, strict=True))
        )
    item = items[0] if items else Any
    converted = [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    return origin(converted)


def _plain(value: Any, tp: Any) -> bool:
    if not isinstance(tp, type):
        return True  # a hint too rich to check here (a TypeVar, a NewType): trust it
    if isinstance(value, bool) and tp is not bool:
        return tp is object
    if tp is float:
        return isinstance(value, int | float)
    if tp in (list, tuple, set, frozenset):
        return isinstance(value, list)
    return isinstance(value, tp)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return f"one of {typing.get_args(hint)}"
    if isinstance(hint, type):
        return "None" if hint is type(None) else hint.__name__
    return str(hint).replace("typing.", "")


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"field {path!r}" if path else "args"
