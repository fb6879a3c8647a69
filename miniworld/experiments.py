"""The mini-world's experiments as declarative files (`miniworld/configs/<name>.yaml`), loaded into the dataclasses
that describe them (`bridge.StageSchedule`, `bases.BaseConfig`, `world.WorldConfig`).

A dataclass's defaults are the main job's recipe (the schema, with its comments); each file declares what one
experiment sets: the fast CI variant, the general world, the ablation rows, the bridge options, the NMT sweep.
Values are checked against the dataclass: an unknown name or a value of the wrong type is an error naming the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from pathlib import Path

import yaml

CONFIGS = Path(__file__).resolve().parent / "configs"


@cache
def _read(name: str) -> dict:
    path = CONFIGS / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
        raise FileNotFoundError(f"no experiment {name!r} ({path}); known: {known}")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(values).__name__}")
    return values


def load(name: str, *keys: str):
    """The experiment `name`'s values (below `keys`: `load("fast", "schedule")`); a missing key is an error."""
    value, where = _read(name), f"{CONFIGS / name}.yaml"
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            have = sorted(value) if isinstance(value, dict) else []
            raise KeyError(f"{where}: no {key!r}; it has {have}")
        value, where = value[key], f"{where}:{key}"
    return value


def _typed(name: str, hint, value, where: str):
    """`value` as the field's type: ints where floats go are floats (YAML writes 1.0 as 1), lists are tuples."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is tuple and isinstance(value, (list, tuple)):
            return tuple(value)
        if origin in (int, str, bool) and type(value) is origin:
            return value
    raise TypeError(f"{where}: {name}={value!r} is not a {hint}")


def make(cls, values: dict | None, where: str, base=None):
    """A `cls` dataclass from `values` (over `base`'s values, or the defaults)."""
    hints, names = typing.get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]
    values = values or {}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown {cls.__name__} field(s) {unknown}; valid: {names}")
    typed = {k: _typed(k, hints[k], v, where) for k, v in values.items()}
    return dataclasses.replace(base, **typed) if base is not None else cls(**typed)


def section(name: str, *keys: str, cls, base=None):
    """`make(cls, load(name, *keys))`, naming the file and keys in its errors."""
    return make(cls, load(name, *keys), f"{CONFIGS / name}.yaml:{':'.join(keys)}", base)
