"""One override syntax for frozen dataclass configs (STYLE.md examples 4 and 5).

    cfg = override(PretrainConfig(), ["lr=3e-3", "depth=4"])

Unknown keys and values of the wrong type raise `UserError` naming the key; the resolved
config is a new frozen dataclass, saved with the run as `config.json`.
"""

from __future__ import annotations

import dataclasses
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


def check_choices(cfg: Any) -> None:
    """Every `Literal[...]` field of dataclass `cfg` holds one of its values (call it in `__post_init__`,
    so a config built in Python is checked as one built from the command line is)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        tp = hints.get(f.name)
        if typing.get_origin(tp) is typing.Literal and getattr(cfg, f.name) not in typing.get_args(tp):
            allowed = ", ".join(map(str, typing.get_args(tp)))
            flag = "--" + f.name.replace("_", "-")  # `--set` values were checked by `override` already
            raise UserError(f"{flag} {getattr(cfg, f.name)!r}: expected one of {allowed} (config key {f.name!r})")


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """One config field as `scalinglab config show` prints it."""

    name: str
    type: str
    default: Any
    help: str


def field_docs(cls: type) -> list[FieldDoc]:
    """Every field of dataclass `cls` with its type, default and help.

    The help is the field's own comment in the source (`lr: float = 1e-4  # AdamW learning rate`),
    so the docs are the code: a field without a comment shows an empty help.
    """
    comments = _field_comments(cls)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append(FieldDoc(f.name, _type_name(hints.get(f.name, f.type)), default, comments.get(f.name, "")))
    return out


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _field_comments(cls: type) -> dict[str, str]:
    """{field: the comment on its line(s)}, for `cls` and its dataclass bases (the source, parsed)."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        comments: dict[int, str] = {}
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
        body = ast.parse(src).body[0].body
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                lines = [comments[i] for i in range(node.lineno, node.end_lineno + 1) if i in comments]
                found[node.target.id] = " ".join(lines)
    return found


# Every recipe's config class, by the name `scalinglab config show` and `--set` help use
# (module, class): imported only when asked for, so the CLI starts without torch.
RECIPES: dict[str, tuple[str, str]] = {
    "pretrain": ("scalinglab.train.pretrain", "PretrainConfig"),
    "sweep-pretrain": ("scalinglab.train.ladder", "LadderConfig"),
    "isoflop": ("scalinglab.train.isoflop", "IsoFlopConfig"),
    "datawall": ("scalinglab.train.datawall", "DataWallConfig"),
    "saturation": ("scalinglab.train.saturation", "SaturationConfig"),
    "synth": ("scalinglab.synth.rejection", "SynthConfig"),
    "annotate": ("scalinglab.synth.annotate", "AnnotateConfig"),
    "sft": ("scalinglab.train.sft", "SFTConfig"),
    "dpo": ("scalinglab.train.dpo", "DPOConfig"),
    "reward-model": ("scalinglab.train.reward_trainer", "RewardModelConfig"),
    "grpo": ("scalinglab.train.grpo", "GRPOConfig"),
    "ppo": ("scalinglab.train.ppo", "PPOConfig"),
    "eval": ("scalinglab.testtime.evaluate", "EvalConfig"),
    "run": ("scalinglab.pipeline.presets", "Preset"),
}


def recipe_config(name: str) -> type:
    """The config class of recipe `name` (a key of RECIPES); a UserError lists the known ones."""
    import importlib

    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    module, cls = RECIPES[name]
    return getattr(importlib.import_module(module), cls)


def set_help(recipe: str, example: str) -> str:
    """The help of a command's repeatable `--set KEY=VALUE`: which config, an example, where the fields are listed."""
    cls = RECIPES[recipe][1]
    return (
        f"Override any {cls} field, repeatable: {example}. Every field with its type, default and meaning: "
        f"`scalinglab config show {recipe}`. Unknown keys and values of the wrong type are rejected."
    )
