"""Plain data -> config dataclasses: strict conversion, YAML reading, --set overrides.

Every mapping is turned into a dataclass by `from_dict`, which refuses unknown keys and wrong
types with a MosgymError naming the key and the file, so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mosgym.config.lookup import find_config
from mosgym.config.schema import EnvConfig
from mosgym.errors import MosgymError

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Strict conversion from plain data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert_union(tp: Any, value: Any, where: str) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, where)
        except MosgymError as e:
            errors.append(str(e))
    raise MosgymError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {value!r}")


def _convert_list(tp: Any, value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise MosgymError(f"{where}: expected a list, got {value!r}")
    (item,) = typing.get_args(tp) or (Any,)
    return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]


def _convert_dict(tp: Any, value: Any, where: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise MosgymError(f"{where}: expected a mapping, got {value!r}")
    key_t, val_t = typing.get_args(tp) or (Any, Any)
    return {
        _convert(key_t, k, f"{where}.{k}"): _convert(val_t, v, f"{where}.{k}")
        for k, v in value.items()
    }


def _to_float(value: Any, where: str) -> float:
    if isinstance(value, str):  # YAML 1.1 reads '1e-5' (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MosgymError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _to_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MosgymError(f"{where}: expected an integer, got {value!r}")
    return value


def _to_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise MosgymError(f"{where}: expected true or false, got {value!r}")
    return value


def _to_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MosgymError(f"{where}: expected a string, got {value!r}")
    return value


_SCALARS = {float: _to_float, int: _to_int, bool: _to_bool, str: _to_str}


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Convert `value` to type `tp` or raise MosgymError naming `where`."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        return _convert_list(tp, value, where)
    if origin is dict:
        return _convert_dict(tp, value, where)
    if tp in _SCALARS:
        return _SCALARS[tp](value, where)
    if isinstance(value, tp):
        return value
    raise MosgymError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise MosgymError(f"{where}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise MosgymError(
            f"{where}: unknown key '{unknown[0]}' (valid keys: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MosgymError(f"{where}: missing required key '{name}'")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-data form of a config dataclass (round-trips through `from_dict`)."""
    return dataclasses.asdict(cfg)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts/lists into dotted keys, e.g. {'train.lr': 1e-3, 'skills.0.name': ..}."""
    out: dict[str, Any] = {}
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    if isinstance(data, Mapping):
        items = data.items()
    elif isinstance(data, list | tuple):
        items = ((str(i), v) for i, v in enumerate(data))
    else:
        return {prefix: data}
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping | list | tuple) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


# --------------------------------------------------------------------------------------------
# YAML files and overrides


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; clear errors for missing or malformed files."""
    p = Path(path)
    if not p.is_file():
        raise MosgymError(f"{p}: config file not found (check the path; see `--help` for configs)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise MosgymError(f"{p}: not a UTF-8 text file ({e.reason})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MosgymError(f"{p}:{line}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MosgymError(f"{p}: expected a YAML mapping at the top level")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse 'a.b.c=value' (value read as YAML) into (['a', 'b', 'c'], value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise MosgymError(f"--set {text!r}: expected key=value, e.g. --set train.total_steps=200")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads '3e-4' as a string; users mean a number
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with dotted-key overrides applied (lists indexed by number)."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = data
        for i, k in enumerate(keys[:-1]):
            nxt = keys[i + 1]
            if isinstance(node, list):
                if not k.isdigit() or int(k) >= len(node):
                    raise MosgymError(f"--set {text}: no list item '{k}'")
                node = node[int(k)]
                continue
            if k not in node or node[k] is None:
                node[k] = [] if nxt.isdigit() else {}
            node = node[k]
        last = keys[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise MosgymError(f"--set {text}: no list item '{last}'")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise MosgymError(f"--set {text}: '{'.'.join(keys[:-1])}' is not a mapping")
    return data


def load_env_config(
    source: str | Path | Mapping[str, Any] | EnvConfig | None = None,
    overrides: list[str] | None = None,
    **kwargs: Any,
) -> EnvConfig:
    """EnvConfig from a YAML path, a mapping, or nothing (the embedded default), plus overrides.

    Keyword arguments override top-level keys (e.g. `train={"total_steps": 200}` or
    `reward={"type": "diff"}`); nested mappings are merged into the file's.
    """
    if isinstance(source, EnvConfig):
        data: dict[str, Any] = to_dict(source)
        where, base = "env config", None
    elif isinstance(source, str | Path):
        # A name ('sim-skills-tiny') finds ./envs/NAME.yaml or the repo's, as --env NAME does.
        path = find_config("envs", source, label="config")
        data = read_yaml(path)
        where, base = str(path), path.resolve().parent
    else:
        data = dict(source or {})
        where, base = "env config", None
    for key, value in kwargs.items():
        if isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(EnvConfig, data, where)
    if base is not None:
        _resolve_paths(cfg, base)
    if cfg.reward.probe_size is not None:  # the reward's own probe size wins (see its doc)
        cfg.train.probe_size = cfg.reward.probe_size
    return cfg


def _resolve_paths(cfg: EnvConfig, base: Path) -> None:
    """Make relative data paths relative to the config file, so configs work from any folder.

    A path that exists relative to the working directory is kept as it is.
    """
    for skill in cfg.skills:
        for attr in ("path", "dev_path"):
            value = getattr(skill, attr)
            if value and not Path(value).is_absolute() and not Path(value).exists():
                candidate = base / value
                if candidate.exists():  # normalised: no 'envs/../data' in records
                    setattr(skill, attr, os.path.normpath(candidate))
