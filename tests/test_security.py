"""Security: a shared policy, checkpoint, cache or config file never runs code it carries.

Hostile files carry a pickled call whose unpickling creates a marker file (the classic
`__reduce__` payload); every test asserts the marker does not exist afterwards, and a control
shows the same payload does run where unpickling is allowed, so the payloads are live. Saved
policies are also fuzzed (damaged, foreign, crafted archives) through the Python API and the CLI:
each case is one MosgymError line, exit 2, and nothing is written.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv

from mosgym.agents import load_agent_config, make_agent
from mosgym.agents.policy_file import _SpacesOnly, load_policy, mosgym_spaces
from mosgym.config import load_env_config, to_dict
from mosgym.errors import MosgymError
from mosgym.experiment.run import main

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies" / "ppo-sim-skills-tiny.zip"
SIM_ENV = ROOT / "envs" / "sim-skills-tiny.yaml"
PACKAGE = ROOT / "mosgym"


class Payload:
    """Unpickling this creates `marker`: what a tampered file would do, made visible."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def payload_b64(marker: Path) -> str:
    return base64.b64encode(pickle.dumps(Payload(marker), protocol=5)).decode()


def members(path: Path = POLICY) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def shipped_data() -> dict[str, Any]:
    return json.loads(members()["data"])


def write_zip(path: Path, entries: dict[str, bytes] | list[tuple[str, bytes]]) -> Path:
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a duplicate name is the point of a case
        for name, raw in items:
            zf.writestr(zipfile.ZipInfo(name), raw)
    return path


def with_data(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the shipped policy whose `data` JSON went through `edit`."""
    entries = members()
    data = json.loads(entries["data"])
    edit(data)
    return write_zip(path, {**entries, "data": json.dumps(data).encode()})


def agent_yaml(folder: Path, policy: Path, **params: Any) -> Path:
    path = folder / "agent.yaml"
    doc = {"kind": "sb3-policy", "params": {"algo": "ppo", "path": str(policy), **params}}
    path.write_text(yaml.safe_dump(doc))
    return path


SERIALIZED = sorted(
    k for k, v in shipped_data().items() if isinstance(v, dict) and ":serialized:" in v
)


# --------------------------------------------------------------------------------------------
# The safe loader acts exactly as SB3's own load


def sim_observations(model: Any, runs: int = 5) -> np.ndarray:
    """(runs * 20, 25) observations of the simulator driven by `model`, the policy's own
    reward (the observation carries it), as deployment would see them."""
    from mosgym.sim.batch import BatchSim

    reward = to_dict(load_agent_config(ROOT / "agents" / "ppo-from-sim.yaml").reward)
    batch = BatchSim(load_env_config(SIM_ENV, reward=reward), runs, seed=3)
    obs, seen = batch.reset_all(), []
    for _ in range(batch.total_steps // batch.interval):
        seen.append(obs)
        obs, *_ = batch.step(model.predict(obs, deterministic=True)[0])
    return np.concatenate(seen).astype(np.float32)


def test_shipped_policy_acts_as_sb3_load_makes_it_act() -> None:
    reference = PPO.load(POLICY, device="cpu")  # our own file: unpickling it is safe
    obs = sim_observations(reference)
    assert obs.shape == (100, 25)
    ours = load_policy(POLICY, PPO)
    np.testing.assert_array_equal(
        ours.predict(obs, deterministic=True)[0], reference.predict(obs, deterministic=True)[0]
    )
    agent = make_agent(load_agent_config(ROOT / "agents" / "ppo-from-sim.yaml"))
    for o in obs:  # the deployed agent, one observation at a time as the runner calls it
        np.testing.assert_array_equal(agent.act(o), reference.predict(o, deterministic=True)[0])


@pytest.mark.parametrize(
    ("cls", "kind"),
    [(PPO, "continuous"), (PPO, "discrete"), (A2C, "continuous"), (SAC, "continuous"),
     (TD3, "continuous"), (DQN, "discrete")],
)  # fmt: skip
def test_every_algorithm_rebuilds_as_sb3_loads_it(cls: Any, kind: str, tmp_path: Path) -> None:
    spaces = mosgym_spaces(3, kind)
    extra = {"buffer_size": 100} if cls in (SAC, TD3, DQN) else {}
    policy_kwargs = {"net_arch": [16, 8], "activation_fn": torch.nn.ReLU}
    env = DummyVecEnv([lambda: _SpacesOnly(*spaces)])
    cls("MlpPolicy", env, seed=1, policy_kwargs=policy_kwargs, **extra).save(tmp_path / "p.zip")
    obs = np.random.default_rng(0).uniform(-1, 2, (100, 13)).astype(np.float32)
    reference = cls.load(tmp_path / "p.zip", device="cpu").predict(obs, deterministic=True)[0]
    ours = load_policy(tmp_path / "p.zip", cls).predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(ours, reference)
    assert len(np.unique(reference, axis=0)) > 1  # the comparison is not between constants


def test_mosgym_spaces_are_the_envs_spaces() -> None:
    import gymnasium as gym

    from mosgym.sim.batch import SimVecEnv

    for kind in ("continuous", "discrete"):
        env = gym.make("mosgym/MoSSim-v0", config=str(SIM_ENV), action={"kind": kind}).unwrapped
        vec = SimVecEnv(str(SIM_ENV), n_envs=2, action={"kind": kind})
        want_obs, want_act = mosgym_spaces(6, kind)
        for obs, act in ((env.observation_space, env.action_space),
                         (vec.observation_space, vec.action_space)):  # fmt: skip
            assert act == want_act and obs.shape == want_obs.shape and obs.dtype == want_obs.dtype
            # The env's own bounds may be narrower (they depend on its config): inside these.
            assert np.all(obs.low >= want_obs.low) and np.all(obs.high <= want_obs.high)


def test_a_learning_agent_goes_on_from_a_saved_model(tmp_path: Path) -> None:
    from tests.test_agents import FakeMixEnv

    env = FakeMixEnv()
    env.observation_space = mosgym_spaces(4, "continuous")[0]  # a real env's bounds
    cfg = load_agent_config(ROOT / "agents" / "ppo.yaml")
    first = make_agent(cfg)
    first.setup(env.spec_info, seed=0)
    first.learn(env, 5)
    first.save(tmp_path / "ppo.zip")
    second = make_agent(cfg)
    second.setup(env.spec_info, seed=0)
    second.load(tmp_path / "ppo.zip")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(second.act(obs), first.act(obs))
    assert second.state_dict()["num_timesteps"] == 5
    second.learn(env, 5)  # optimizer state restored: learning goes on
    assert second.state_dict()["num_timesteps"] == 10


# --------------------------------------------------------------------------------------------
# Tampered policies: the payload never runs


@pytest.mark.parametrize("key", SERIALIZED)
def test_a_pickled_payload_in_any_serialized_entry_never_runs(key: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    def plant(data: dict[str, Any]) -> None:
        data[key][":serialized:"] = payload_b64(marker)

    zip_ = with_data(tmp_path / "tampered.zip", plant)
    agent = make_agent(load_agent_config(agent_yaml(tmp_path, zip_)))  # loads: plain fields
    obs = np.random.default_rng(0).uniform(0, 1.5, (20, 25)).astype(np.float32)
    shipped = load_policy(POLICY, PPO)
    for o in obs:
        np.testing.assert_array_equal(agent.act(o), shipped.predict(o, deterministic=True)[0])
    assert not marker.exists()


@pytest.mark.parametrize(
    "key", ["action_space", "observation_space", "policy_class", "policy_kwargs"]
)
def test_an_entry_that_is_only_a_payload_is_refused_or_ignored(key: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    zip_ = with_data(
        tmp_path / "t.zip", lambda d: d.update({key: {":serialized:": payload_b64(marker)}})
    )
    try:
        load_policy(zip_, PPO)
    except MosgymError as e:
        assert "\n" not in str(e)
    assert not marker.exists()


def test_control_trust_policy_unpickles_and_says_so(tmp_path: Path, caplog) -> None:
    """The same payload runs when the YAML trusts the file: the tests above prove something."""
    marker = tmp_path / "pwned"
    zip_ = with_data(
        tmp_path / "t.zip",
        lambda d: d["ep_success_buffer"].update({":serialized:": payload_b64(marker)}),
    )
    make_agent(load_agent_config(agent_yaml(tmp_path, zip_)))
    assert not marker.exists()
    with caplog.at_level("WARNING", logger="mosgym"):
        cfg = load_agent_config(agent_yaml(tmp_path, zip_, trust_policy=True))
        assert not marker.exists()  # the config reads JSON only, even when trusting
        agent = make_agent(cfg)
    assert marker.exists()
    assert "trust_policy is on" in caplog.text and "unpickles" in caplog.text
    shipped = load_policy(POLICY, PPO)
    for o in np.random.default_rng(0).uniform(0, 1.5, (20, 25)).astype(np.float32):
        np.testing.assert_array_equal(agent.act(o), shipped.predict(o, deterministic=True)[0])


def test_quiet_runs_still_say_what_they_trust(tmp_path: Path, caplog, monkeypatch) -> None:
    """`-q` silences mosgym's logging but not the warning that a file's pickles will run."""
    import logging

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    yaml_path = agent_yaml(tmp_path, POLICY, trust_policy=True)
    for name in ("mosgym", "mosgym.security"):  # main() sets them; leave no trace for others
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    rc = main(
        ["-q", "--no-progress", "--env", "sim-skills-tiny", "--agent", str(yaml_path),
         "--steps", "100", "--set", "train.interval=50", "--checkpoint-every", "0"]
    )  # fmt: skip
    assert rc == 0
    assert logging.getLogger("mosgym").level == logging.ERROR  # -q took effect
    assert "trust_policy is on" in caplog.text


def _cli_env(tracking_uri: str) -> dict[str, str]:
    """The subprocess runs this checkout's mosgym (whichever one is installed)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": path}


@pytest.mark.slow
def test_a_tampered_policy_through_the_real_cli(tmp_path: Path) -> None:
    """The issue's case: a pickled call in `action_space`, deployed with python -m mosgym.run."""
    marker = tmp_path / "pwned"
    zip_ = with_data(
        tmp_path / "t.zip",
        lambda d: d["action_space"].update({":serialized:": payload_b64(marker)}),
    )
    argv = ["--env", str(SIM_ENV), "--agent", str(agent_yaml(tmp_path, zip_)), "--steps", "100"]
    res = subprocess.run(
        [sys.executable, "-m", "mosgym.run", "--no-progress", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_cli_env(f"sqlite:///{tmp_path}/m.db"),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "mixture path" in res.stdout and "trust_policy" not in res.stderr
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Fuzzing: damaged, foreign and crafted archives


def _bomb(name: str, mib: int) -> list[tuple[str, bytes]]:
    """The shipped members, with `name` replaced by `mib` MiB that deflate to almost nothing."""
    return [(n, b) for n, b in members().items() if n != name] + [(name, b" " * (mib << 20))]


def _write_deflated(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in entries:
            zf.writestr(name, raw)
    return path


def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]


def _hostile_weights(marker: Path) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


Maker = Callable[[Path, Path], Path]
"""(work folder, marker file) -> the policy file to try."""


def _edit(fn: Callable[[dict[str, Any]], None]) -> Maker:
    return lambda tmp, marker: with_data(tmp / "p.zip", fn)


def _changed(changes: dict[str, bytes | None]) -> Maker:
    """The shipped members with some replaced, added or (None) removed."""

    def make(tmp: Path, marker: Path) -> Path:
        entries = {**members(), **changes}
        return write_zip(tmp / "p.zip", {k: v for k, v in entries.items() if v is not None})

    return make


def _raw(fn: Callable[[bytes], bytes]) -> Maker:
    def make(tmp: Path, marker: Path) -> Path:
        (tmp / "p.zip").write_bytes(fn(POLICY.read_bytes()))
        return tmp / "p.zip"

    return make


def _member_named(name: Callable[[Path], str]) -> Maker:
    return lambda tmp, marker: write_zip(tmp / "p.zip", {**members(), name(tmp): b"x"})


def _bomb_of(name: str, mib: int) -> Maker:
    return lambda tmp, marker: _write_deflated(tmp / "p.zip", _bomb(name, mib))


NOT_ZIP, NOT_PLAIN = r"not a readable \.zip", "not a plain file name"
MULTI_BINARY = "<class 'gymnasium.spaces.multi_binary.MultiBinary'>"
FUZZ: dict[str, tuple[Maker, dict[str, Any], str]] = {
    # case: (make the file, agent params, what the one error line says: a regex)
    "empty_file": (_raw(lambda b: b""), {}, NOT_ZIP),
    "not_a_zip": (_raw(lambda b: b"just text\n" * 10), {}, NOT_ZIP),
    "truncated_half": (_raw(lambda b: b[: len(b) // 2]), {}, NOT_ZIP),
    "truncated_tail": (_raw(lambda b: b[:-30]), {}, NOT_ZIP),
    "corrupt_member": (_raw(lambda b: _flip(b, b.index(b'"policy_class"') + 3)), {}, NOT_ZIP),
    "foreign_zip": (lambda t, m: write_zip(t / "p.zip", {"a.txt": b"hi"}), {}, "no 'data'"),
    "missing_data": (_changed({"data": None}), {}, "no 'data' member"),
    "missing_weights": (_changed({"policy.pth": None}), {}, "no 'policy.pth' member"),
    "bomb_data": (_bomb_of("data", 64), {}, "zip bomb"),
    "bomb_weights": (_bomb_of("policy.pth", 80), {}, "zip bomb"),
    "oversized_data": (_changed({"data": b" " * (5 << 20) + members()["data"]}), {}, "zip bomb"),
    "traversal_dotdot": (_member_named(lambda t: "../../escaped.pth"), {}, NOT_PLAIN),
    "traversal_absolute": (_member_named(lambda t: str(t / "abs.pth")), {}, NOT_PLAIN),
    "traversal_nested": (_member_named(lambda t: "a/../../nested.pth"), {}, NOT_PLAIN),
    "traversal_backslash": (_member_named(lambda t: "..\\back.pth"), {}, NOT_PLAIN),
    "duplicate_data": (
        lambda t, m: write_zip(t / "p.zip", [*members().items(), ("data", b"{}")]),
        {},
        "appears twice",
    ),
    "many_members": (_changed({f"m{i}": b"" for i in range(40)}), {}, "46 members"),
    "data_not_utf8_json": (_changed({"data": b"\x80\x81{"}), {}, "not JSON"),
    "data_not_an_object": (_changed({"data": b"[1, 2]"}), {}, "not a JSON object"),
    "weights_not_torch": (_changed({"policy.pth": b"PK\x03\x04 junk"}), {}, "weights-only"),
    "weights_pickled_payload": (
        lambda t, m: write_zip(t / "p.zip", {**members(), "policy.pth": _hostile_weights(m)}),
        {},
        "weights-only",
    ),
    "wrong_algorithm_sac": (lambda t, m: POLICY, {"algo": "sac"}, "set params.algo"),
    "wrong_algorithm_dqn": (lambda t, m: POLICY, {"algo": "dqn"}, "set params.algo"),
    "obs_shape": (_edit(lambda d: d["observation_space"].update(_shape=[13])), {}, "mosgym env"),
    "huge_spaces": (
        _edit(
            lambda d: (
                d["action_space"].update(_shape=[10**8]),
                d["observation_space"].update(_shape=[4 * 10**8 + 1]),
            )
        ),
        {},
        "not a mosgym env.s .*N <= 4096",
    ),  # fmt: skip
    "not_a_box": (_edit(lambda d: d["action_space"].update({":type:": MULTI_BINARY})), {}, "Box"),
    "action_bounds": (
        _edit(lambda d: d["action_space"].update(low="[-2. -2. -2. -2. -2. -2.]")),
        {},
        r"act in \[-1, 1\]",
    ),
    "net_arch": (
        _edit(lambda d: d["policy_kwargs"].update(net_arch=[32, 32])),
        {},
        "does not rebuild",
    ),
    "unknown_class": (
        _edit(lambda d: d["policy_kwargs"].update(features_extractor_class="<class 'evil.X'>")),
        {},
        "trust_policy",
    ),
}


def _tree(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("case", sorted(FUZZ))
def test_fuzzed_policy_files_are_one_error_line(case: str, tmp_path: Path, capsys) -> None:
    make, params, says = FUZZ[case]
    marker = tmp_path / "pwned"
    work = tmp_path / "a" / "b"  # '../../x' from here still lands inside tmp_path
    work.mkdir(parents=True)
    policy = make(work, marker)
    cfg_path = agent_yaml(work, policy, **params)
    with pytest.raises(MosgymError) as e:  # the Python API
        make_agent(load_agent_config(cfg_path))
    assert "\n" not in str(e.value) and re.search(says, str(e.value)), str(e.value)
    before = _tree(tmp_path)
    argv = ["--no-progress", "--env", str(SIM_ENV), "--agent", str(cfg_path), "--steps", "100"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        code = main(argv)  # the CLI, in this process
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert err.startswith("mosgym: error: ") and err.count("\n") == 1 and re.search(says, err)
    assert _tree(tmp_path) == before  # nothing written, no member extracted anywhere
    assert not marker.exists()


def test_random_damage_is_loaded_or_refused_in_one_line(tmp_path: Path) -> None:
    """Seeded random byte flips, cuts and insertions: never another exception type."""
    rng = np.random.default_rng(0)
    good = POLICY.read_bytes()
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(150):
        raw = bytearray(good)
        how = i % 3
        if how == 0:
            for at in rng.integers(0, len(raw), rng.integers(1, 5)):
                raw[at] = int(rng.integers(0, 256))
        elif how == 1:
            raw = raw[: int(rng.integers(0, len(raw)))]
        else:
            at = int(rng.integers(0, len(raw)))
            raw[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        path = tmp_path / f"m{i}.zip"
        path.write_bytes(bytes(raw))
        try:
            load_policy(path, PPO)
            outcomes["loaded"] += 1
        except MosgymError as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100, outcomes


@pytest.mark.slow
def test_a_zip_bomb_through_the_real_cli(tmp_path: Path) -> None:
    policy = _write_deflated(tmp_path / "bomb.zip", _bomb("policy.pth", 80))
    assert policy.stat().st_size < 2 << 20
    argv = ["--env", str(SIM_ENV), "--agent", str(agent_yaml(tmp_path, policy)), "--steps", "100"]
    before = _tree(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "mosgym.run", "--no-progress", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_cli_env(f"sqlite:///{tmp_path.parent}/bomb-m.db"),
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("mosgym: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "zip bomb" in res.stderr and _tree(tmp_path) == before


# --------------------------------------------------------------------------------------------
# The other load paths


def test_a_hostile_checkpoint_through_resume_never_runs(tmp_path: Path, capsys) -> None:
    """torch.load(weights_only=True) refuses the payload (see also test_checkpoint)."""
    marker = tmp_path / "pwned"
    (tmp_path / "ck" / "step-000001").mkdir(parents=True)
    torch.save({"format": 1, "state": Payload(marker)}, tmp_path / "ck/step-000001/state.pt")
    (tmp_path / "ck" / "latest").write_text("step-000001")
    code = main(["--no-progress", "--resume", str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("mosgym: error: ") and err.count("\n") == 1, err
    assert "not a readable mosgym checkpoint" in err and not marker.exists()
    torch.load(tmp_path / "ck/step-000001/state.pt", weights_only=False)  # control: it is live
    assert marker.exists()


def test_a_pickled_tokenization_cache_is_ignored_without_running(tmp_path: Path, caplog) -> None:
    from mosgym.data import formatting

    marker = tmp_path / "pwned"
    path = tmp_path / "split.npz"
    np.savez(path, key=np.array([Payload(marker)], dtype=object))  # an object array: pickled
    with caplog.at_level("WARNING"):
        assert formatting.load_cached_split(path, "k", 1) is None
    assert "ignoring unreadable tokenization cache" in caplog.text and not marker.exists()
    np.load(path, allow_pickle=True)["key"]  # control: the payload is live
    assert marker.exists()


def test_a_python_tag_in_a_config_yaml_is_refused(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    env = tmp_path / "env.yaml"
    env.write_text(f"name: x\ntrain: !!python/object/apply:builtins.open [{str(marker)!r}, w]\n")
    with pytest.raises(MosgymError, match="invalid YAML"):
        load_env_config(env)
    assert main(["--no-progress", "--env", str(env)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mosgym: error: ") and err.count("\n") == 1 and "invalid YAML" in err
    assert not marker.exists()
    yaml.unsafe_load(env.read_text())  # control: the tag is live
    assert marker.exists()


def test_no_other_code_path_unpickles_a_policy_or_an_artifact() -> None:
    """SB3's load, cloudpickle and MLflow model/artifact loaders appear only where allowed:
    SB3's load in policy_file.py, behind trust_policy."""
    sb3_load = re.compile(
        r"\b(PPO|A2C|SAC|TD3|DQN|cls|self\.cls)\.load\(|load_from_zip_file|json_to_data"
    )
    banned = re.compile(
        r"import cloudpickle|cloudpickle\.load|download_artifacts|mlflow\.artifacts|"
        r"load_dict\(|load_table\(|pyfunc|mlflow\.\w+\.load_model\("
    )
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        # The one artifact mosgym reads back is config.yaml, as bytes (records.runs.run_config:
        # `mosgym export` copies them, calibrate reads them with yaml.safe_load); the archive
        # reader's download_artifacts is a file copy of that config.yaml.
        allowed = {  # file: (mentions, the one call or definition)
            "runs.py": (1, "download_artifacts(run_id, CONFIG_FILE, tmp)).read_bytes()"),
            "archive_reader.py": (2, "def download_artifacts("),  # the class docstring too
        }
        if path.name in allowed:
            mentions, code = allowed[path.name]
            assert text.count("download_artifacts") == mentions and code in text, path
            text = text.replace("download_artifacts", "")
        assert not banned.search(text), f"{path}: {banned.search(text).group(0)}"
        found += [(path.name, m.group(0)) for m in sb3_load.finditer(text)]
    assert found == [("policy_file.py", "cls.load(")]
    source = (PACKAGE / "agents" / "policy_file.py").read_text()
    assert source.index("if trust:") < source.index("cls.load(")
