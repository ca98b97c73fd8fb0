"""Where a run's time goes (mosgym.timing), and the replay that times MoS on the same data.

- phases are exclusive: a nested phase's time is not counted twice;
- with timing off nothing synchronises; with it on, only at phase boundaries;
- a run's phase times add up to its wall time and reach MLflow and the summary;
- a static agent replaying a MoS run's actions trains on exactly that run's examples.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from mosgym import timing
from mosgym.agents import load_agent_config, make_agent
from mosgym.agents.static import RecordActions
from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
from mosgym.envs.spec import EnvSpec
from mosgym.errors import MosgymError
from mosgym.experiment.episode import EpisodeLog, RecordEpisode, run_episode
from mosgym.experiment.run import main
from tests.test_checkpoint import TINY_ENV

# test_checkpoint's three small skills and 1-layer model, with 4 env steps of 25 optimizer steps:
# seconds, with probes, dev loss and the final decoding all running.
TIMED_ENV: dict[str, Any] = {**copy.deepcopy(TINY_ENV), "name": "timed"}
TIMED_ENV["train"].update(total_steps=100, interval=25, batch_size=4, probe_size=4)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_phases_are_exclusive_and_add_up_to_the_total() -> None:
    clock = Clock()
    timer = timing.PhaseTimer(clock=clock)
    timer.start()
    with timing.active(timer):
        clock.now = 1.0  # 1 s outside any phase
        with timing.phase(timing.REWARD):
            clock.now = 3.0  # 2 s of reward math
            with timing.phase(timing.PROBE):
                clock.now = 7.0  # 4 s of probes, inside the reward
                with timing.phase(timing.INITIAL_NLL):
                    clock.now = 7.5  # 0.5 s of initial NLL, inside the probe
            clock.now = 8.0  # 0.5 s more reward math
        clock.now = 10.0  # 2 s outside again
    timer.stop()
    s = timer.seconds
    assert (s[timing.OTHER], s[timing.REWARD], s[timing.PROBE]) == (3.0, 2.5, 4.0)
    assert s[timing.INITIAL_NLL] == 0.5
    assert timer.total == 10.0
    clock.now = 20.0  # stopped: nothing more is charged
    with timer.phase(timing.TRAIN):
        clock.now = 30.0
    assert timer.total == 10.0 and s[timing.TRAIN] == 0.0


def test_a_timed_function_is_charged_and_a_resumed_timer_goes_on() -> None:
    clock = Clock()

    @timing.timed(timing.EVAL_DEV)
    def evaluate() -> str:
        clock.now += 2.0
        return "done"

    assert evaluate() == "done"  # no current timer: just the call
    timer = timing.PhaseTimer(clock=clock)
    timer.load_state_dict({timing.EVAL_DEV: 1.0, timing.OTHER: 0.5})
    timer.start()
    with timing.active(timer):
        assert evaluate() == "done"
    timer.stop()
    assert timer.seconds[timing.EVAL_DEV] == 3.0 and timer.total == 3.5


def test_synchronises_only_at_phase_boundaries_and_never_when_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    assert timing.device_sync(torch.device("cpu")) is None
    sync = timing.device_sync(torch.device("cuda", 0))  # built without touching a GPU
    assert sync is not None

    env = MixtureOfSkillsEnv(TIMED_ENV, overrides=["train.total_steps=50"])
    agent = make_agent(load_agent_config({"name": "m", "kind": "mos"}))
    agent.setup(env.spec_info, 0)
    run_episode(RecordEpisode(env), agent, seed=0)  # timing off: no current timer
    assert calls == []

    boundaries = []

    class CountingTimer(timing.PhaseTimer):
        def _switch(self) -> None:
            boundaries.append(1)
            super()._switch()

    timer = CountingTimer(sync=sync)
    timer.start()
    with timing.active(timer):
        run_episode(RecordEpisode(env), agent, seed=0)
    timer.stop()
    assert len(calls) == len(boundaries) > 0  # one sync per boundary, nowhere else
    assert set(calls) == {torch.device("cuda", 0)}


def test_phase_times_add_up_to_the_wall_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # checkpoints go to ./checkpoints
    env = tmp_path / "timed.yaml"
    env.write_text(yaml.safe_dump(TIMED_ENV))
    args = ["--env", str(env), "--agent", "mos-diff", "--experiment", "timing", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    client = MlflowClient()
    exp = client.get_experiment_by_name("timing")
    (run,) = client.search_runs([exp.experiment_id])
    m = run.data.metrics
    seconds = {p: m[f"time/{p}"] for p in timing.PHASES}
    wall = m["wall_time_s"]
    assert sum(seconds.values()) == pytest.approx(wall, rel=0.05)
    assert sum(m[f"time_share/{p}"] for p in timing.PHASES) == pytest.approx(1.0)
    # Every phase this run has took time (DIFF computes the initial-model NLL; the run logs
    # to MLflow and checkpoints every env step; the final evaluation decodes).
    assert all(s > 0 for s in seconds.values()), seconds
    # The named phases cover the run: what is left is glue.
    assert seconds[timing.OTHER] < 0.25 * wall, seconds
    assert "where the time went" in out
    for p in timing.PHASES:
        assert f"  {p} " in out


def _episode(env: MixtureOfSkillsEnv, agent_cfg: dict[str, Any], seed: int) -> EpisodeLog:
    cfg = load_agent_config(agent_cfg)
    run_env = MixtureOfSkillsEnv(env.config, learner=env.learner, reward=cfg.reward)
    agent = make_agent(cfg)
    agent.setup(run_env.spec_info, seed)
    return run_episode(RecordEpisode(run_env), agent, seed)


def test_static_replay_of_a_mos_run_trains_on_exactly_its_examples() -> None:
    env = MixtureOfSkillsEnv(TIMED_ENV)
    mos = make_agent(load_agent_config({"name": "mos", "kind": "mos", "params": {"lr": 0.05}}))
    mos.setup(env.spec_info, 0)
    recorder = RecordActions(mos)
    run_env = MixtureOfSkillsEnv(env.config, learner=env.learner, reward={"type": "cossim"})
    ran = run_episode(RecordEpisode(run_env), recorder, seed=3)
    assert len({tuple(p) for p in ran.mixture[1:]}) == env.n_env_steps  # the path moved

    replay = {"name": "replay", "kind": "static", "reward": {"type": "none"}}
    replay["params"] = {"replay": recorder.actions}
    again = _episode(env, replay, seed=3)
    for key in ("mixture", "examples", "tokens", "dev_loss"):
        np.testing.assert_array_equal(getattr(again, key), getattr(ran, key), err_msg=key)
    assert again.skill_rewards[-1].tolist() == [0.0] * len(env.skill_names)  # no probes

    other_seed = _episode(env, replay, seed=4)  # the check can fail: other data, other counts
    assert not np.array_equal(other_seed.tokens, ran.tokens)


def _replay_agent(actions: list[Any], spec: EnvSpec) -> Any:
    agent = make_agent(
        load_agent_config({"name": "r", "kind": "static", "params": {"replay": actions}})
    )
    agent.setup(spec, 0)
    agent.reset(np.zeros(1), {})
    return agent


def test_replay_is_checked_against_the_env() -> None:
    spec = EnvSpec(["a", "b", "c"], np.array([10, 20, 30]), "continuous", 2, 10)
    with pytest.raises(MosgymError, match="1 actions but an episode of this env has 2"):
        _replay_agent([[0, 1, 0]], spec)
    with pytest.raises(MosgymError, match=r"shape \(3,\)"):
        _replay_agent([[0, 1], [1, 0]], spec)
    agent = _replay_agent([[0, 1, 0], [1, 0, 0]], spec)
    assert [list(agent.act(None)), list(agent.act(None))] == [[0, 1, 0], [1, 0, 0]]
    with pytest.raises(MosgymError, match="all were used"):
        agent.act(None)
    agent.reset(np.zeros(1), {})  # every episode replays from the start
    assert list(agent.act(None)) == [0, 1, 0]
    discrete = EnvSpec(["a", "b", "c"], np.array([10, 20, 30]), "discrete", 2, 10)
    assert _replay_agent([2, 0], discrete).act(None) == 2
    with pytest.raises(MosgymError, match="out of range"):
        _replay_agent([2, 3], discrete)
    with pytest.raises(MosgymError, match="exactly one of"):
        make_agent(
            load_agent_config(
                {"name": "r", "kind": "static", "params": {"tau": 1, "replay": [[0, 1, 0]]}}
            )
        )
