"""One override syntax for frozen dataclass configs (STYLE.md examples 4 and 5).

    cfg = override(PretrainConfig(), ["lr=3e-3", "depth=4"])

Unknown keys and values of the wrong type raise `UserError` naming the key; the resolved
config is a new frozen dataclass, saved with the run as `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Iterable, Mapping, TypeVar

from scalinglab.errors import UserError

C = TypeVar("C")

_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert `value` (a string from the command line, or a JSON value) to type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X] and X | None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(name, value, args[0])
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise UserError(f"config key {name!r}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else value
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
        out = [_coerce(name, v, inner) for v in items]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        raise UserError(f"config key {name!r}: expected true/false, got {value!r}")
    if tp in (int, float, str):
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise UserError(f"config key {name!r}: expected an integer, got {value!r}")
        if tp in (int, float) and isinstance(value, bool):
            raise UserError(f"config key {name!r}: expected a number, got {value!r}")
        try:
            return tp(float(value)) if tp is int and isinstance(value, str) and "e" in value.lower() else tp(value)
        except (TypeError, ValueError):
            raise UserError(f"config key {name!r}: expected {tp.__name__}, got {value!r}") from None
    return value


def override(cfg: C, updates: Mapping[str, Any] | Iterable[str] | None) -> C:
    """Return a copy of frozen dataclass `cfg` with `updates` applied and type-checked.

    `updates` is a mapping, or `key=value` strings as typed on the command line.
    """
    if not updates:
        return cfg
    if not isinstance(updates, Mapping):
        pairs = {}
        for item in updates:
            if "=" not in item:
                raise UserError(f"override {item!r} is not of the form key=value")
            k, v = item.split("=", 1)
            pairs[k.strip()] = v.strip()
        updates = pairs
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in updates.items():
        if key not in fields:
            raise UserError(f"unknown config key {key!r} for {type(cfg).__name__} (known: {', '.join(sorted(fields))})")
        changes[key] = _coerce(key, value, hints[key])
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a config saved with `to_dict`, type-checking every key."""
    return override(cls(), dict(data))


def dumps(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)
