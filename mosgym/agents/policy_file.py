"""Saved SB3 policies (.zip from `model.save`), read without running anything the file carries.

SB3's own `load` unpickles (cloudpickle) every ':serialized:' entry of the zip's `data` JSON,
so a tampered file runs its code the moment it is loaded. Here nothing is unpickled: `data` is
read as JSON, the algorithm is rebuilt from what mosgym knows (the algorithm the agent YAML
names, the env's spaces, the network settings the file states as plain data) and the weights
are read with `torch.load(weights_only=True)` (tensors and plain containers only). SB3's `load`
stays available behind `trust=True` (the agent YAML's `trust_policy: true`), with a warning.
The archive is checked in memory first (nothing is extracted): size, flat unique member names,
each member's declared uncompressed size (a zip bomb is refused unread), the members needed.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from mosgym.errors import MosgymError

log = logging.getLogger(__name__)

MiB = 1 << 20
# Caps far above what SB3 writes for an MLP (a 180 KB zip here: 16 KB of data, 6-8 members)
MAX_FILE_BYTES, MAX_DATA_BYTES, MAX_WEIGHTS_BYTES = 256 * MiB, 4 * MiB, 64 * MiB
MAX_MEMBERS, MAX_SKILLS = 32, 4096
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}
"""Activation names an agent YAML may use; the classes a saved policy may name."""
_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.SGD)
# SB3 stores a class in `data` as str(cls), e.g. "<class 'torch.nn.modules.activation.Tanh'>":
# these strings, and only these, are turned back into classes.
_KNOWN_CLASSES: dict[str, type] = {
    str(c): c for c in (*ACTIVATIONS.values(), *_OPTIMIZERS, FlattenExtractor)
}
_REBUILD_ARGS = ("use_sde", "sde_sample_freq")
"""Constructor arguments, stored as plain data, that shape how a rebuilt policy acts."""


@dataclass
class PolicyZip:
    """A saved policy's contents, read and checked; nothing in it has been unpickled."""

    path: Path
    data: dict[str, Any]
    """The `data` JSON as plain data (':serialized:' entries are left as base64 text)."""
    weights: dict[str, bytes]
    """Raw bytes of the .pth members, by name without '.pth' ('policy', 'policy.optimizer')."""


def zip_path(path: str | Path) -> Path:
    """The saved model's file (SB3 adds '.zip' when saving), or a MosgymError if missing."""
    p = Path(path)
    if not p.is_file() and Path(f"{p}.zip").is_file():
        p = Path(f"{p}.zip")
    if not p.is_file():
        raise MosgymError(f"{path}: saved SB3 policy not found (a .zip written by model.save)")
    return p


def _refuse(p: Path, what: str) -> MosgymError:
    return MosgymError(f"{p}: {what}")


def _first_line(e: BaseException, n: int = 160) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:n]


def _check_members(p: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Flat, unique member names; declared sizes under the caps (before anything is read)."""
    if infos and min(i.header_offset for i in infos) != 0:
        # zipfile also accepts bytes before an archive; in a cut file the archive it finds is
        # one of the .pth members (each a zip itself)
        raise _refuse(p, "not a readable .zip (truncated, or other bytes before the archive)")
    if len(infos) > MAX_MEMBERS:
        raise _refuse(p, f"{len(infos)} members, a saved SB3 policy has fewer than {MAX_MEMBERS}")
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if not _PLAIN_NAME.fullmatch(name) or ".." in name:
            raise _refuse(
                p,
                f"member name {name[:80]!r} is not a plain file name (a policy .zip holds only "
                "names like 'data' and 'policy.pth'); refusing a possibly crafted archive",
            )
        if name in seen:
            raise _refuse(p, f"member {name!r} appears twice; refusing an ambiguous archive")
        seen.add(name)
        cap = MAX_DATA_BYTES if name == "data" else MAX_WEIGHTS_BYTES
        if info.file_size > cap:
            raise _refuse(
                p,
                f"member {name!r} declares {info.file_size / MiB:.1f} MiB uncompressed, over the "
                f"{cap // MiB} MiB limit; refusing a possible zip bomb",
            )
    for needed in ("data", "policy.pth"):
        if needed not in seen:
            raise _refuse(p, f"no {needed!r} member: not a policy written by SB3's model.save")


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, never more than it declared (zipfile stops there; the extra byte
    asked for makes a lying header visible)."""
    with zf.open(info) as f:
        raw = f.read(info.file_size + 1)
    if len(raw) != info.file_size:
        raise zipfile.BadZipFile(f"member {info.filename!r} is not the size it declares")
    return raw


def read_policy_zip(path: str | Path, weights: bool = True) -> PolicyZip:
    """Check and read a saved policy in memory: `data` as JSON, .pth members as bytes."""
    p = zip_path(path)
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _refuse(p, f"{size / MiB:.0f} MiB, over the {MAX_FILE_BYTES // MiB} MiB limit")
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            _check_members(p, infos)
            by_name = {i.filename: i for i in infos}
            raw = _read(zf, by_name["data"])
            pths = {
                name[: -len(".pth")]: _read(zf, info)
                for name, info in by_name.items()
                if weights and name.endswith(".pth")
            }
    except MosgymError:
        raise
    except Exception as e:  # only zipfile runs here: BadZipFile, CRC, zlib, encryption, ...
        raise _refuse(p, f"not a readable .zip ({type(e).__name__}: {_first_line(e)})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise _refuse(p, f"its 'data' member is not JSON ({str(e)[:120]})") from None
    if not isinstance(data, dict):
        raise _refuse(p, "its 'data' member is not a JSON object")
    return PolicyZip(p, data, pths)


def _space_entry(pz: PolicyZip, key: str) -> tuple[str, Any]:
    """('box', shape) or ('discrete', n) from the plain fields SB3 writes next to a space."""
    entry = pz.data.get(key)
    kind = str(entry.get(":type:", "")) if isinstance(entry, dict) else ""
    try:
        if kind.endswith(".Box'>"):
            shape = entry.get("_shape", entry.get("shape"))
            return "box", tuple(int(s) for s in shape)
        if kind.endswith(".Discrete'>"):
            if int(str(entry.get("start", "0"))) != 0:
                raise ValueError("start != 0")
            return "discrete", int(str(entry["n"]))
    except (TypeError, ValueError, KeyError):
        pass
    raise _refuse(pz.path, f"{key} {kind or 'missing'}: not a Box or Discrete space mosgym reads")


def saved_action_kind(path: str | Path) -> str:
    """'continuous' or 'discrete' from a saved SB3 .zip, read without unpickling anything."""
    kind, _ = _space_entry(read_policy_zip(path, weights=False), "action_space")
    return "discrete" if kind == "discrete" else "continuous"


def policy_action_kind(path: str | Path, cls: type[BaseAlgorithm], trust: bool = False) -> str:
    """'continuous' or 'discrete', with the whole file checked unless it is trusted (then it
    is unpickled once, later): configs call this, so a bad file is reported before an env or
    an MLflow run is made."""
    if trust:
        return saved_action_kind(path)
    discrete = isinstance(load_policy(path, cls).action_space, gym.spaces.Discrete)
    return "discrete" if discrete else "continuous"


def mosgym_spaces(n: int, action_kind: str) -> tuple[gym.spaces.Box, gym.spaces.Space]:
    """The spaces of a mosgym env with `n` skills: observations (dev loss ratio, weight, epochs,
    last reward per skill, progress) with the widest bounds any config gives (an env's own
    bounds can be narrower, depending on its budget and reward; bounds do not change what an
    MlpPolicy computes), actions Box(-1, 1, (n,)) or Discrete(n). A test checks the envs fit."""
    low = np.concatenate([np.zeros(3 * n), np.full(n, -np.inf), [0.0]]).astype(np.float32)
    high = np.concatenate([np.full(n, np.inf), np.ones(n), np.full(2 * n, np.inf), [1.0]])
    obs = gym.spaces.Box(low, high.astype(np.float32), dtype=np.float32)
    if action_kind == "discrete":
        return obs, gym.spaces.Discrete(n)
    return obs, gym.spaces.Box(-1.0, 1.0, (n,), np.float32)


def _plain_array(text: Any) -> np.ndarray | None:
    """An array from its str() as SB3 stores it ('[-1. -1.]'); None if summarised or absent."""
    if not isinstance(text, str) or "..." in text:
        return None
    try:
        return np.array([float(x) for x in text.strip("[] \n").split()])
    except ValueError:
        return None


def saved_spaces(pz: PolicyZip) -> tuple[gym.spaces.Box, gym.spaces.Space]:
    """mosgym's spaces for the skills and action kind the file was trained on; MosgymError if
    the file's spaces are not a mosgym env's."""
    act_kind, act = _space_entry(pz, "action_space")
    obs_kind, obs_shape = _space_entry(pz, "observation_space")
    n = act if act_kind == "discrete" else (act[0] if len(act) == 1 else -1)
    if not 1 <= n <= MAX_SKILLS or obs_kind != "box" or obs_shape != (4 * n + 1,):
        raise _refuse(
            pz.path,
            f"trained on observations {obs_shape} and actions {act}, not a mosgym env's "
            f"(4N+1 observations and N actions for N <= {MAX_SKILLS} skills)",
        )
    kind = "discrete" if act_kind == "discrete" else "continuous"
    spaces = mosgym_spaces(n, kind)
    if kind == "continuous":
        entry = pz.data["action_space"]
        for bound, want in (("low", -1.0), ("high", 1.0)):
            got = _plain_array(entry.get(bound))
            if got is not None and not np.array_equal(got, np.full(n, want)):
                raise _refuse(
                    pz.path,
                    f"actions bounded by {bound} {entry.get(bound)}, mosgym envs act in [-1, 1]",
                )
    return spaces


def _check_policy_class(pz: PolicyZip, cls: type[BaseAlgorithm]) -> None:
    """The file's policy class must be the MlpPolicy of `cls` (read from its plain __module__)."""
    entry = pz.data.get("policy_class")
    module = entry.get("__module__") if isinstance(entry, dict) else None
    want = cls.policy_aliases["MlpPolicy"]
    if module != want.__module__:
        raise _refuse(
            pz.path,
            f"its policy class comes from {module or 'an unknown module'}, a {cls.__name__} "
            f"MlpPolicy from {want.__module__}: set params.algo to the algorithm that saved it",
        )


def _plain_value(pz: PolicyZip, key: str, value: Any) -> Any:
    """A policy_kwargs value as SB3 stored it -> the value (known classes rebuilt by name)."""
    if isinstance(value, str) and value in _KNOWN_CLASSES:
        return _KNOWN_CLASSES[value]
    if isinstance(value, str) and value.startswith(("<", "{", "(", "[")):
        raise _refuse(
            pz.path,
            f"policy_kwargs.{key} is a Python object ({value[:80]}) only unpickling rebuilds; "
            "set trust_policy: true in the agent YAML only if you trust the file's author",
        )
    return value


def saved_policy_kwargs(pz: PolicyZip) -> dict[str, Any]:
    """The network settings the file states as plain data, with known classes rebuilt."""
    entry = pz.data.get("policy_kwargs") or {}
    if not isinstance(entry, dict):
        raise _refuse(pz.path, "policy_kwargs is not a mapping")
    # SB3's load drops a stored device too (older versions saved one)
    skip = (":type:", ":serialized:", "device")
    kwargs = {k: _plain_value(pz, k, v) for k, v in entry.items() if k not in skip}
    arch = kwargs.get("net_arch")
    if isinstance(arch, list) and arch and isinstance(arch[0], dict):
        kwargs["net_arch"] = arch[0]  # SB3 < 1.8 format, converted as SB3's load does
    return kwargs


def _merge_kwargs(pz: PolicyZip, saved: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The agent YAML's policy_kwargs may add settings, never contradict the file's."""
    for key, value in given.items():
        mine = list(value) if isinstance(value, tuple) else value
        if key in saved and saved[key] != mine:
            raise _refuse(
                pz.path,
                f"saved with policy_kwargs.{key}={saved[key]!r}, the agent YAML says {value!r}",
            )
    return {**saved, **given}


class _SpacesOnly(gym.Env):
    """SB3 builds an algorithm from an env; this one has the spaces and is never stepped."""

    def __init__(self, obs: gym.Space, act: gym.Space) -> None:
        self.observation_space, self.action_space = obs, act


def _state(pz: PolicyZip, name: str) -> Any:
    if name not in pz.weights:
        raise _refuse(pz.path, f"no {name + '.pth'!r} member (written by model.save)")
    buffer = io.BytesIO(pz.weights[name])
    try:
        return torch.load(buffer, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or hostile files
        msg = f"{name}.pth is not a weights-only state dict ({_first_line(e)})"
        raise _refuse(pz.path, msg) from None


def _build(
    cls: type[BaseAlgorithm], spaces: tuple, device: str, kwargs: dict[str, Any]
) -> BaseAlgorithm:
    env = DummyVecEnv([lambda: _SpacesOnly(*spaces)])
    # SB3 initialises weights before they are overwritten: keep the caller's torch RNG as it was
    with torch.random.fork_rng(devices=[]):
        return cls("MlpPolicy", env, device=device, verbose=0, **kwargs)


def _rebuild(
    pz: PolicyZip,
    cls: type[BaseAlgorithm],
    spaces: tuple,
    device: str,
    train_kwargs: dict[str, Any] | None,
) -> BaseAlgorithm:
    """The algorithm rebuilt from plain settings, with the file's weights (see load_policy)."""
    _check_policy_class(pz, cls)
    accepted = set(inspect.signature(cls.__init__).parameters)
    kwargs: dict[str, Any] = {
        k: pz.data[k] for k in _REBUILD_ARGS if k in pz.data and k in accepted
    }
    if train_kwargs is None and "buffer_size" in accepted:
        kwargs["buffer_size"] = 1  # a frozen policy never stores a transition
    kwargs.update(train_kwargs or {})
    saved = saved_policy_kwargs(pz)
    kwargs["policy_kwargs"] = _merge_kwargs(pz, saved, dict(kwargs.get("policy_kwargs") or {}))
    policy = _state(pz, "policy")
    try:
        model = _build(cls, spaces, device, kwargs)
        if train_kwargs is None:
            model.policy.load_state_dict(policy, strict=True)
        else:  # to learn on: optimizer states and counters too, as SB3's load restores them
            names, extra = model._get_torch_save_params()
            states = {name: _state(pz, name) for name in names}
            model.set_parameters(states, exact_match=True, device=device)
            _set_variables(pz, model, extra)
            for counter in ("num_timesteps", "_n_updates"):  # _n_updates: TD3's policy delay
                if isinstance(pz.data.get(counter), int):
                    setattr(model, counter, pz.data[counter])
    except MosgymError:
        raise
    except Exception as e:  # shapes, names and settings that do not fit: SB3 and torch vary
        msg = f"does not rebuild as a {cls.__name__} MlpPolicy ({_first_line(e, 200)})"
        raise _refuse(pz.path, msg) from None
    rate = pz.data.get("exploration_rate")
    if hasattr(model, "exploration_rate") and isinstance(rate, int | float):
        model.exploration_rate = float(rate)  # DQN: epsilon when acting stochastically
    if getattr(model, "use_sde", False):
        model.policy.reset_noise()
    return model


def _set_variables(pz: PolicyZip, model: BaseAlgorithm, names: list[str]) -> None:
    """Tensors the algorithm saves outside state dicts (SAC's log_ent_coef), by the names the
    algorithm declares, never by names from the file."""
    if not names:
        return
    found = _state(pz, "pytorch_variables")
    for name in names:
        value = found.get(name) if isinstance(found, dict) else None
        target = getattr(model, name, None)
        if isinstance(value, torch.Tensor) and isinstance(target, torch.Tensor):
            target.data = value.data.to(target.device).reshape(target.shape)


def load_policy(
    path: str | Path,
    cls: type[BaseAlgorithm],
    *,
    spaces: tuple[gym.Space, gym.Space] | None = None,
    device: str = "cpu",
    trust: bool = False,
    train_kwargs: dict[str, Any] | None = None,
) -> BaseAlgorithm:
    """A saved `cls` policy, acting (predict) exactly as SB3's `cls.load` would make it act.

    spaces: the env's (observation, action) spaces; default: mosgym's for the skills and action
    kind the file was trained on. train_kwargs: constructor kwargs of an agent that goes on
    learning (its optimizer states are restored too); None for a frozen policy. trust: use SB3's
    own `load`, which unpickles the file's `data` (it can run code), for files that cannot be
    rebuilt from plain settings. Every failure is a one-line MosgymError.
    """
    pz = read_policy_zip(path)
    if trust:
        # A logger that `-q` leaves on: unpickling a file must never pass unsaid.
        logging.getLogger("mosgym.security").warning(
            "trust_policy is on: %s is loaded with Stable-Baselines3's load, which unpickles "
            "the file's data entries, so code hidden in the file runs with your permissions; "
            "use it only for files you made or whose author you trust",
            pz.path,
        )
        try:
            return cls.load(pz.path, device=device)
        except Exception as e:  # SB3 raises many types for foreign or corrupt files
            msg = f"cannot load as a {cls.__name__} policy ({_first_line(e, 200)})"
            raise _refuse(pz.path, msg) from None
    return _rebuild(pz, cls, spaces or saved_spaces(pz), device, train_kwargs)
