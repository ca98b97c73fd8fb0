"""The rough edges a new user hits (issue 18, items 8-14): each one a clear line or documented
behaviour, checked end to end where it is cheap."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import mosgym  # noqa: F401  (registers the envs)
from mosgym.agents.static import StaticAgent, StaticParams
from mosgym.config import SkillConfig, load_env_config
from mosgym.data import load_skills
from mosgym.envs.mixing import action_to_mixture, logit_span, mixture_to_action
from mosgym.envs.spec import EnvSpec
from mosgym.errors import MosgymError
from mosgym.experiment.checkpoint import CheckpointDir
from mosgym.experiment.request import resolve_request
from mosgym.experiment.run import build_parser, main
from mosgym.learner.tokenizer import build_byte_tokenizer
from mosgym.records.store import check_writable
from tests.test_checkpoint import TINY_ENV, write_tiny_env


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


def _jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in rows))
    return path


def _one_error_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


# --------------------------------------------------------------------------------------------
# 8. max_length too small


def test_max_length_that_cuts_every_response_is_one_error(tmp_path: Path, capsys) -> None:
    env = write_tiny_env(tmp_path, max_length=4)  # every built-in prompt is longer
    start = time.perf_counter()
    code = main(["--env", str(env), "--no-progress"])
    _one_error_line(code, capsys.readouterr().err, "train.max_length=4", "raise train.max_length")
    assert time.perf_counter() - start < 60  # refused while loading data, before any training
    assert not list(tmp_path.glob("checkpoints/*/step-*"))


def test_many_truncated_examples_warn_and_name_the_share(tok, tmp_path, caplog) -> None:
    rows = [("short?", "yes")] * 6 + [("a much longer prompt " * 4, "no")] * 4
    skill = SkillConfig("s", source="jsonl", path=str(_jsonl(tmp_path / "s.jsonl", rows)), n_dev=2)
    with caplog.at_level(logging.WARNING, logger="mosgym"):
        (loaded,) = load_skills([skill], tok, max_length=40, data_seed=0, cache_dir="")
    warned = [r.getMessage() for r in caplog.records if "train.max_length=40" in r.getMessage()]
    assert warned and "no response token left" in warned[0]
    assert loaded.train.n_truncated > 0


# --------------------------------------------------------------------------------------------
# 9. exact match for the user's own skills


def test_exact_match_default_follows_answer_length_and_can_be_set(tok, tmp_path) -> None:
    short = _jsonl(tmp_path / "short.jsonl", [(f"{i} + {i}?", str(2 * i)) for i in range(20)])
    long = _jsonl(tmp_path / "long.jsonl", [(f"tell {i}", "a long answer " * 5) for i in range(20)])
    cfgs = [
        SkillConfig("short", source="jsonl", path=str(short), n_dev=4),
        SkillConfig("long", source="jsonl", path=str(long), n_dev=4),
        SkillConfig("long_on", source="jsonl", path=str(long), n_dev=4, exact_match=True),
        SkillConfig("copy"),
        SkillConfig("copy_off", task="copy", exact_match=False, n_train=10),
    ]
    skills = load_skills(cfgs, tok, 128, 0, cache_dir="", short_answer_tokens=32)
    assert [s.exact_match for s in skills] == [True, False, True, True, False]


def test_a_jsonl_skill_with_short_answers_reports_accuracy(tmp_path) -> None:
    rows = [(f"what is {i} + 1?", str(i + 1)) for i in range(30)]
    cfg = {**TINY_ENV, "skills": [
        {"name": "inc", "source": "jsonl", "path": str(_jsonl(tmp_path / "i.jsonl", rows)),
         "n_dev": 4},
        {"name": "copy", "n_train": 30, "n_dev": 4, "n_probe": 4},
    ]}  # fmt: skip
    env = gym.make("mosgym/MixtureOfSkills-v0", config=cfg, overrides=["train.total_steps=2"])
    env.reset(seed=0)
    *_, info = env.step(np.zeros(2, dtype=np.float32))
    assert np.isfinite(info["final_eval"]["accuracy"]).all()  # not '-' for the jsonl skill
    env.close()


# --------------------------------------------------------------------------------------------
# 10. gym.make with no config or a config name


def test_sim_env_without_config_is_the_calibrated_default() -> None:
    env = gym.make("mosgym/MoSSim-v0")
    assert env.unwrapped.config.name == "sim-skills-tiny" and env.unwrapped.config.sim
    obs, _ = env.reset(seed=0)
    by_name = gym.make("mosgym/MoSSim-v0", config="sim-skills-tiny")
    np.testing.assert_array_equal(obs, by_name.reset(seed=0)[0])


def test_config_names_work_in_python_as_on_the_command_line() -> None:
    assert load_env_config("skills-tiny").name == "skills-tiny"
    assert load_env_config("sim-skills-tiny.yaml").learner == "sim"
    with pytest.raises(MosgymError, match=r"config nope: no such config file \(known: .*skills"):
        gym.make("mosgym/MoSSim-v0", config="nope")


# --------------------------------------------------------------------------------------------
# 11. observation bounds


def test_observations_stay_within_finite_bounds_where_they_exist() -> None:
    env = gym.make("mosgym/MoSSim-v0", overrides=["train.total_steps=200", "train.interval=50"])
    space = env.observation_space
    n = len(env.unwrapped.skill_names)
    assert env.unwrapped.config.reward.type == "cossim"
    assert np.isfinite(space.high[n : 3 * n]).all() and space.high[-1] == 1.0
    assert (space.low[3 * n : 4 * n] == -1).all() and (space.high[3 * n : 4 * n] == 1).all()
    assert np.isinf(space.high[:n]).all()  # the dev-loss ratio has no ceiling (docstring)
    obs, _ = env.reset(seed=0)
    smallest = int(np.argmin(env.unwrapped.learner.train_sizes))
    action = np.full(n, -1.0, dtype=np.float32)
    action[smallest] = 1.0
    done = False
    while not done:
        assert space.contains(obs)
        obs, _, done, _, _ = env.step(action)
    assert space.contains(obs)
    # Nearly all draws went to the smallest skill: close to its bound T * B / size, not over.
    i = 2 * n + smallest
    assert 0.9 * space.high[i] < obs[i] <= space.high[i]


# --------------------------------------------------------------------------------------------
# 12. unwritable store, --steps, a missing model path


def test_an_unwritable_store_is_refused_at_once(tmp_path: Path) -> None:
    if os.geteuid() != 0:  # permission bits bind everyone but root
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        with pytest.raises(MosgymError, match="cannot write in"):
            check_writable(f"sqlite:///{folder}/mlflow.db")
        (tmp_path / "m.db").write_bytes(b"")
        (tmp_path / "m.db").chmod(0o444)
        with pytest.raises(MosgymError, match="is read-only"):
            check_writable(f"sqlite:///{tmp_path}/m.db")
    sysfs = Path("/sys")  # no one, root included, can create a file there
    if sysfs.is_dir():
        with pytest.raises(MosgymError, match="cannot write in /sys"):
            check_writable("sqlite:////sys/nope/mlflow.db")
    check_writable(f"sqlite:///{tmp_path}/new/mlflow.db")  # a folder that can be made is fine
    check_writable("http://127.0.0.1:1")  # servers are checked by asking them


def test_run_into_an_unwritable_store_fails_in_seconds(tmp_path: Path, capsys, monkeypatch):
    if not Path("/sys").is_dir():
        pytest.skip("needs a folder no one can write in")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////sys/mosgym/mlflow.db")
    start = time.perf_counter()
    code = main(["--env", str(write_tiny_env(tmp_path)), "--no-progress"])
    _one_error_line(code, capsys.readouterr().err, "MLflow tracking store", "cannot write")
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("steps", ["-5", "0", "ten"])
def test_bad_steps_name_the_flag(steps: str, capsys) -> None:
    _one_error_line(main(["--steps", steps]), capsys.readouterr().err, "--steps")
    assert "train.total_steps" not in capsys.readouterr().err


def test_a_missing_local_model_path_says_so(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "models" / "my-llm"
    code = main(["--set", f"model.name={missing}", "--no-progress"])
    err = capsys.readouterr().err
    _one_error_line(code, err, "no such local directory", str(missing))
    assert "Repo id" not in err
    code = main(["--set", "model.name=./my/local/ckpt", "--no-progress"])
    _one_error_line(code, capsys.readouterr().err, "no such local directory")


# --------------------------------------------------------------------------------------------
# 13. checkpoints


def test_checkpoints_are_removed_when_the_run_finishes_unless_kept(tmp_path: Path, capsys):
    env = str(write_tiny_env(tmp_path))
    assert main(["--env", env, "--no-progress", "--checkpoint-dir", "ck"]) == 0
    assert not (tmp_path / "ck").exists()
    assert "checkpoints kept" not in capsys.readouterr().out
    assert (
        main(["--env", env, "--no-progress", "--checkpoint-dir", "ck", "--keep-checkpoints"]) == 0
    )
    assert CheckpointDir(tmp_path / "ck").latest() is not None
    assert f"checkpoints kept in {tmp_path / 'ck'}" in capsys.readouterr().out


def test_a_folder_from_other_settings_is_never_reused_silently(tmp_path: Path, capsys, caplog):
    env = str(write_tiny_env(tmp_path))
    args = ["--env", env, "--no-progress", "--checkpoint-dir", "ck", "--keep-checkpoints"]
    assert main(args) == 0
    with caplog.at_level(logging.WARNING, logger="mosgym"):  # finished, other settings: replaced
        assert main([*args, "--set", "train.lr=0.0003"]) == 0
    assert "made with other settings (env.train.lr 0.001 -> 0.0003)" in caplog.text
    ckpt = CheckpointDir(tmp_path / "ck")
    (ckpt.root / "finished").unlink()  # as if that run had been stopped
    code = main([*args, "--seeds", "1"])
    _one_error_line(
        code, capsys.readouterr().err, "unfinished run made with other settings", "seeds [0] -> [1]"
    )
    assert json.loads((ckpt.root / "request.json").read_text())["seeds"] == [0]


# --------------------------------------------------------------------------------------------
# 14. logit_scale, clipped mixtures, probe sizes


@pytest.mark.parametrize("scale", ["1e30", "inf", "0", "-1"])
def test_absurd_logit_scales_are_refused(scale: str, capsys) -> None:
    code = main(["--set", f"action.logit_scale={scale}", "--no-progress"])
    _one_error_line(code, capsys.readouterr().err, "action.logit_scale", "(0, 50]")


def test_a_clipped_static_mixture_warns_with_the_mixture_the_env_uses(caplog) -> None:
    sizes = np.array([1_000_000, 10])  # PROP gives the small skill 1e-5
    spec = EnvSpec(["big", "small"], sizes, "continuous", 4, 50, logit_scale=5.0)
    agent = StaticAgent("static-prop", StaticParams(tau=1))
    with caplog.at_level(logging.WARNING, logger="mosgym"):
        agent.setup(spec, 0)
    used = action_to_mixture(agent.act(np.zeros(9)), "continuous", 2, 5.0, 0.0)
    assert used[1] == pytest.approx(1 / (1 + np.exp(10)))  # 4.5e-5, not 1e-5: clipped
    assert "small 1e-05" in caplog.text and "trains on 4.54e-05" in caplog.text
    assert logit_span(agent.mixture) == pytest.approx(np.log(1e5) / 2, rel=1e-4)
    wide = EnvSpec(["big", "small"], sizes, "continuous", 4, 50, logit_scale=6.0)
    exact = action_to_mixture(mixture_to_action(agent.mixture, 6.0), "continuous", 2, 6.0, 0.0)
    assert exact == pytest.approx(agent.mixture, rel=1e-5)  # expressible at a wider scale
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mosgym"):
        StaticAgent("static-prop", StaticParams(tau=1)).setup(wide, 0)
    assert not caplog.text


def test_the_reward_can_choose_its_own_probe_size(tmp_path: Path) -> None:
    agent = tmp_path / "mos-diff-16.yaml"
    agent.write_text(yaml.safe_dump({"kind": "mos", "reward": {"type": "diff", "probe_size": 16}}))
    req = resolve_request(build_parser().parse_args(["--agent", str(agent)]))
    assert req.env["train"]["probe_size"] == 16 and req.env["reward"]["type"] == "diff"
    req = resolve_request(build_parser().parse_args(["--agent", "mos-cossim"]))
    assert req.env["train"]["probe_size"] == 64
    cfg = load_env_config("skills-tiny", reward={"type": "diff", "probe_size": 16})
    assert cfg.train.probe_size == 16 and cfg.reward.probe_size == 16
    assert load_env_config("skills-tiny").train.probe_size == 64  # COSSIM keeps the env's


# --------------------------------------------------------------------------------------------
# Params (item 5): what a user set or would filter on


def test_params_leave_out_what_does_nothing_for_the_run(tmp_path: Path) -> None:
    from mosgym.experiment.run_params import run_params

    args = ["--env", "sim-skills-tiny", "--agent", "mos-cossim", "--set", "train.lr=0.5"]
    req = resolve_request(build_parser().parse_args([*args, "--checkpoint-every", "0"]))
    params = run_params(req.env, req.agent)
    assert params["env.learner"] == "sim" and params["env.train.total_steps"] == 1000
    assert params["env.skills"] == "copy,reverse,sort,count,lookup,add"
    # The simulator has no model or optimiser: train.lr does nothing there, even when set.
    assert not [k for k in params if k.startswith(("env.model", "env.sim", "env.train.lr"))]
    assert "agent.params.hidden_size" not in params  # idle with the free-logits scorer
    assert params["agent.params.scorer"] == "logits"
    assert not [v for v in params.values() if v in (None, "", {}, [])]
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "model").mkdir()  # a local checkpoint, named through a detour
    real = resolve_request(build_parser().parse_args(["--set", "model.name=./ckpt/../model"]))
    assert run_params(real.env, real.agent)["env.model.name"] == str(tmp_path / "model")
