"""The offline route: transitions rebuilt from logged runs, CQL/IQL exported as SAC, deployed.

As in test_benchmark, the "real" env is the simulator itself with 5-decision episodes, so the
logged runs the offline policies learn from, and their deployments, take a second each.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mosgym.benchmark import tracking as bt
from mosgym.benchmark.offline_data import (
    OFFLINE_REWARD,
    Transitions,
    as_action,
    collect,
    run_transitions,
)
from mosgym.config import load_env_config, to_dict
from mosgym.envs.mixing import action_to_mixture, mixture_to_action
from mosgym.envs.sim_env import MoSSimEnv
from tests.test_benchmark import SHORT, SIM, bench_args, finished, run

SKILLS = ["copy", "reverse", "sort", "count", "lookup", "add"]


# ------------------------------------------------------------------------- pure pieces
def test_every_reachable_mixture_is_given_back_by_its_action() -> None:
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, 6) for _ in range(200)]
    actions += [np.array([1.0, -1, -1, -1, -1, -1]), np.array([1.0, 1, 1, 1, 1, -1])]
    for a in actions:
        p = action_to_mixture(a, "continuous", 6, 5.0, 0.0)
        back = action_to_mixture(as_action(p, 5.0), "continuous", 6, 5.0, 0.0)
        assert np.max(np.abs(back - p)) < 1e-7, a  # actions are float32
    # Why not mixture_to_action: centred on the mean, a saturated action does not come back.
    p = action_to_mixture(actions[-2], "continuous", 6, 5.0, 0.0)
    back = action_to_mixture(mixture_to_action(p, 5.0), "continuous", 6, 5.0, 0.0)
    assert np.max(np.abs(back - p)) > 1e-3


class _FakeClient:
    """get_metric_history over a dict key -> {step: value}."""

    def __init__(self, series: dict[str, dict[int, float]]) -> None:
        self.series = series

    def get_metric_history(self, run_id: str, key: str) -> list[Any]:
        return [SimpleNamespace(step=s, value=v, timestamp=0) for s, v in self.series[key].items()]


def _fake_run(weights: np.ndarray, dev: np.ndarray, examples: np.ndarray, interval: int):
    series: dict[str, dict[int, float]] = {}
    for i, s in enumerate(SKILLS):
        series[f"dev_loss/{s}"] = {k * interval: float(v) for k, v in enumerate(dev[:, i])}
        series[f"examples/{s}"] = {k * interval: float(v) for k, v in enumerate(examples[:, i])}
        series[f"weight/{s}"] = {k * interval: float(v) for k, v in enumerate(weights[:, i])}
    tags = {"mosgym.train_sizes": "[100, 200, 300, 400, 500, 600]", bt.SEED: "3"}
    run = SimpleNamespace(info=SimpleNamespace(run_id="r"), data=SimpleNamespace(tags=tags))
    return _FakeClient(series), run


def test_transitions_are_laid_out_as_the_env_observes() -> None:
    cfg = load_env_config(SIM, ["train.total_steps=60", "train.interval=20"])
    rng = np.random.default_rng(1)
    weights = np.stack([action_to_mixture(rng.uniform(-1, 1, 6), "continuous", 6, 5.0, 0.0)
                        for _ in range(3)])  # fmt: skip
    dev = np.array([[5.0] * 6, [4.0] * 6, [3.5] * 6, [3.4] * 6]) + rng.uniform(0, 0.1, (4, 6))
    examples = np.cumsum(np.vstack([np.zeros(6), rng.integers(0, 50, (3, 6))]), axis=0)
    client, run_ = _fake_run(weights, dev, examples, 20)
    obs, actions, rewards = run_transitions(client, run_, cfg)
    assert obs.shape == (3, 25) and obs.dtype == np.float32 and actions.shape == (3, 6)
    np.testing.assert_array_equal(obs[0, :6], np.ones(6, np.float32))
    np.testing.assert_array_equal(obs[0, 6:12], np.full(6, 1 / 6, np.float32))
    np.testing.assert_array_equal(obs[0, 18:24], np.zeros(6, np.float32))
    # decision k sees the mixture of decision k - 1 and the reward it earned
    np.testing.assert_array_equal(obs[2, 6:12], weights[1].astype(np.float32))
    np.testing.assert_array_equal(obs[2, :6], (dev[2] / dev[0]).astype(np.float32))
    sizes = np.array([100, 200, 300, 400, 500, 600])
    np.testing.assert_array_equal(obs[1, 12:18], (examples[1] / sizes).astype(np.float32))
    mean_progress = np.float32(np.mean(dev[0] - dev[1]))
    np.testing.assert_array_equal(obs[1, 18:24], np.full(6, mean_progress))
    assert obs[2, 24] == np.float32(40 / 60)
    np.testing.assert_allclose(rewards, np.mean(dev[:-1] - dev[1:], axis=1))
    for a, w in zip(actions, weights, strict=True):
        np.testing.assert_allclose(action_to_mixture(a, "continuous", 6, 5.0, 0.0), w, atol=1e-7)

    one_hot = np.tile(np.eye(6)[2], (3, 1))  # a discrete agent's mixture: no action gives it
    client, run_ = _fake_run(one_hot, dev, examples, 20)
    assert "no continuous action" in run_transitions(client, run_, cfg)
    client, run_ = _fake_run(weights, dev, examples, 20)
    del client.series["dev_loss/sort"][60]
    assert "missing" in run_transitions(client, run_, cfg)


def test_held_out_seeds_drop_whole_runs() -> None:
    k = 3  # decisions per run
    data = Transitions(
        np.arange(4 * k * 25, dtype=np.float32).reshape(4 * k, 25),
        np.zeros((4 * k, 6), np.float32),
        np.arange(4 * k, dtype=float), np.tile([0.0, 0.0, 1.0], 4),
        np.repeat([0, 1, 0, 7], k), ["a", "b", "c", "d"],
    )  # fmt: skip
    part = data.without_seeds([0])
    assert part.run_ids == ["b", "d"] and set(part.seeds) == {1, 7}
    np.testing.assert_array_equal(part.rewards, [3.0, 4, 5, 9, 10, 11])
    assert part.digest() != data.digest() and data.without_seeds([]).digest() == data.digest()


# ---------------------------------------------------------------- from MLflow, end to end
def _offline_args(tmp: Path, *extra: str) -> list[str]:
    return bench_args(
        tmp, "--algos", "ppo", "mos", "--seeds", "0-1", "--real-seeds", "0-1", "--pairing", "zip",
        "--baselines", "static-prop", *extra,
    )  # fmt: skip


@pytest.mark.slow
def test_logged_runs_replay_to_exactly_the_rebuilt_observations(tmp_path: Path) -> None:
    """A run of another reward (MoS: COSSIM; static: none) replayed on a mean_progress env
    with its logged actions and seed shows exactly the rebuilt observations and rewards."""
    run(_offline_args(tmp_path))  # sim stage and deployments: the logged runs
    client = MlflowClient()
    cfg = load_env_config(SIM, [s for s in SHORT if s != "--set"])
    data = collect(client, cfg)
    runs = {r.info.run_id: r for r in finished(client, "bench-skills-tiny-real", "")}
    assert sorted(data.run_ids) == sorted(runs) and len(runs) == 6
    for run_id in data.run_ids:
        logged = runs[run_id]
        obs, actions, rewards = run_transitions(client, logged, cfg)
        env = MoSSimEnv(SIM, [s for s in SHORT if s != "--set"], reward=to_dict(OFFLINE_REWARD))
        seen, _ = env.reset(seed=int(logged.data.tags[bt.SEED]))
        init = float(np.mean(env.learner.dev_loss()))
        for k, a in enumerate(actions):
            # Exact, but the mixture part: the replay's mixture comes from the rebuilt float32
            # action, a float32 rounding away from the logged one (which `obs` holds)
            same = np.r_[0:6, 12:25]
            np.testing.assert_array_equal(seen[same], obs[k, same], err_msg=f"{run_id} at {k}")
            np.testing.assert_allclose(seen[6:12], obs[k, 6:12], rtol=3e-7)
            before = float(np.mean(env.learner.dev_loss()))
            seen, _, done, _, _ = env.step(a)
            assert rewards[k] == pytest.approx(before - float(np.mean(env.learner.dev_loss())))
        assert done
        final = logged.data.metrics["final/dev_loss_mean"]
        assert init - final == pytest.approx(float(np.sum(rewards)), abs=1e-9)


@pytest.mark.slow
def test_offline_stage_trains_exports_deploys_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("d3rlpy")  # CI installs it (.ci/run): the `offline` extra + --no-deps
    from stable_baselines3 import SAC

    from mosgym.agents.policy_file import load_policy
    from mosgym.benchmark.offline import policy_file

    run(_offline_args(tmp_path))
    offline = ["--stage", "offline", "--offline-algos", "iql", "cql", "--offline-steps", "4"]
    first = run(_offline_args(tmp_path, *offline))["offline"]
    # 2 algorithms x 2 seeds trained, each deployed on its own real seed (zip)
    assert len(first.done) == 8 and not first.skipped
    data = Transitions.load(tmp_path / "out" / "offline" / "dataset.npz")
    assert len(data.run_ids) == 6  # the logged runs before this stage; its own left out
    client = MlflowClient()
    deployed = finished(client, "bench-skills-tiny-real", f"tags.`{bt.ALGO}` = 'iql-offline'")
    assert sorted((r.data.tags[bt.TRAIN_SEED], r.data.tags[bt.SEED]) for r in deployed) == [
        ("0", "0"),
        ("1", "1"),
    ]
    # the exported policy, read by mosgym's pickle-free loader, acts
    pol = load_policy(policy_file(_settings(tmp_path), "iql", 0), SAC)
    assert pol.predict(data.observations[:3], deterministic=True)[0].shape == (3, 6)

    again = run(_offline_args(tmp_path, *offline))["offline"]
    assert not again.done and len(again.skipped) == 8
    table = {r.name: r for r in run(_offline_args(tmp_path, "--stage", "report"))["report"].table}
    assert table["iql-offline"].kind == "offline" and table["iql-offline"].real_n == 2
    assert table["cql-offline"].train_s > 0


def _settings(tmp: Path) -> Any:
    from mosgym.benchmark.cli import build_parser, settings_from_args

    return settings_from_args(build_parser().parse_args(_offline_args(tmp)))


def test_same_seed_same_offline_policy_and_the_export_acts_alike(tmp_path: Path) -> None:
    pytest.importorskip("d3rlpy")  # CI installs it (.ci/run)
    from stable_baselines3 import SAC

    from mosgym.agents.policy_file import load_policy
    from mosgym.benchmark.offline import export_sac, train

    rng = np.random.default_rng(0)
    m = 40  # two runs of 20 decisions
    data = Transitions(
        rng.uniform(0, 1, (m, 25)).astype(np.float32),
        rng.uniform(-1, 1, (m, 6)).astype(np.float32),
        rng.normal(size=m),
        np.tile(np.r_[np.zeros(19), 1.0], 2),
        np.repeat([5, 6], 20),
        ["a", "b"],
    )
    a, b, c = (train("iql", data, 3, seed) for seed in (0, 0, 1))
    obs = data.observations
    np.testing.assert_array_equal(a.predict(obs), b.predict(obs))
    assert not np.array_equal(a.predict(obs), c.predict(obs))
    export_sac(a, 6, tmp_path / "iql.zip", obs)
    pol = load_policy(tmp_path / "iql.zip", SAC)  # mosgym's pickle-free loader
    np.testing.assert_allclose(pol.predict(obs, deterministic=True)[0], a.predict(obs), atol=1e-6)
