"""Config dataclass helpers: validation that names the field, `key=value` overrides, TOML files."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from rlhf_desktop.core.errors import ConfigError

T = TypeVar("T")


def field_doc(cls: type, name: str) -> str:
    """The docstring-like help of a dataclass field (from its metadata['help'])."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return str(f.metadata.get("help", ""))
    return ""


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(cls: type, name: str, raw: Any) -> Any:
    hints = typing.get_type_hints(cls)
    kind = hints.get(name)
    if not isinstance(raw, str):
        return raw
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        if raw.lower() in ("none", "null", ""):
            return None
        kind = args[0]
        origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if origin in (list, tuple) or kind in (list, tuple):
            value = json.loads(raw) if raw.strip().startswith("[") else [v.strip() for v in raw.split(",") if v.strip()]
            return list(value) if origin is list or kind is list else tuple(value)
    except ValueError:
        raise ConfigError(f"cannot read {raw!r} as {getattr(kind, '__name__', kind)}", where=name,
                          hint="give a value of the field's type") from None
    return raw


def from_dict(cls: type[T], values: dict[str, Any], *, source: str = "config") -> T:
    """Build `cls` from a dict, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(unknown)}", where=source,
                          hint=f"valid fields: {', '.join(sorted(names))}")
    cfg = cls(**{k: _coerce(cls, k, v) for k, v in values.items()})
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def apply_overrides(cfg: T, overrides: list[str] | dict[str, Any]) -> T:
    """Return a copy of `cfg` with `key=value` strings (or a dict) applied and validated."""
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            if "=" not in text:
                raise ConfigError(f"expected key=value, got {text!r}", where="--set")
            key, value = text.split("=", 1)
            items.append((key.strip(), value.strip()))
    values = to_dict(cfg)
    values.update(dict(items))
    return from_dict(type(cfg), values, source="--set")


def load_toml(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", where=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", where=str(path)) from None
    return from_dict(cls, data, source=str(path))


def require(condition: bool, field: str, message: str, hint: str | None = None) -> None:
    """Validation helper: raise a ConfigError naming `field` unless `condition` holds."""
    if not condition:
        raise ConfigError(message, where=field, hint=hint)
