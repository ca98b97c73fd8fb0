"""The real-training route: SB3 trained on the "real" env across episodes, resumed between them.

As in test_benchmark, the "real" env is the simulator itself with 5-decision episodes, so each
training episode and each deployment is an ordinary `mosgym run` run of a second or so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from stable_baselines3 import SAC

from mosgym.agents.policy_file import read_policy_zip
from mosgym.agents.replay_buffer import buffer_path, load_replay_buffer, save_replay_buffer
from mosgym.benchmark import tracking as bt
from mosgym.benchmark.real_train import episode_seed
from mosgym.errors import MosgymError
from tests.test_benchmark import bench_args, finished, run

DECISIONS = 5  # T = 100, S = 20 (test_benchmark.SHORT)


def route_args(tmp: Path, name: str, *extra: str) -> list[str]:
    """PPO and SAC (and MoS, which this route leaves out), one seed, in experiments `name`."""
    return [
        *bench_args(tmp / name, "--algos", "ppo", "sac", "mos", "--seeds", "0",
                    "--real-seeds", "0", "--pairing", "zip", "--baselines", "static-prop"),
        "--experiment", name, "--real-experiment", f"{name}-real", *extra,
    ]  # fmt: skip


def episode_runs(client: MlflowClient, name: str) -> dict[tuple[str, int], Any]:
    runs = finished(client, f"{name}-real", f"tags.`{bt.ROLE}` = '{bt.TRAIN_ROLE}'")
    return {(r.data.tags[bt.ALGO], int(r.data.tags[bt.EPISODE])): r for r in runs}


@pytest.mark.slow
def test_real_training_resumes_between_episodes_as_if_never_stopped(tmp_path: Path) -> None:
    client = MlflowClient()
    for name in ("stopped", "straight"):
        run(route_args(tmp_path, name, "--stage", "sim"))
    # "stopped": one episode, then the same command asking for two goes on from the first.
    one = run(route_args(tmp_path, "stopped", "--stage", "real-train", "--real-episodes", "1"))
    assert len(one["real-train"].done) == 4  # ppo and sac: episode 0 and a deployment each
    two = run(route_args(tmp_path, "stopped", "--stage", "real-train", "--real-episodes", "2"))
    assert sorted(two["real-train"].skipped) == [
        "ppo-real seed 0 episode 0",
        "sac-real seed 0 episode 0",
    ]
    assert len(two["real-train"].done) == 4
    again = run(route_args(tmp_path, "stopped", "--stage", "real-train", "--real-episodes", "2"))
    assert not again["real-train"].done and len(again["real-train"].skipped) == 6
    straight = run(
        route_args(tmp_path, "straight", "--stage", "real-train", "--real-episodes", "2")
    )
    assert len(straight["real-train"].done) == 6

    stopped, fresh = episode_runs(client, "stopped"), episode_runs(client, "straight")
    assert set(stopped) == set(fresh) == {(a, k) for a in ("ppo-real", "sac-real") for k in (0, 1)}
    for key, r in stopped.items():  # every episode: its seed, and the same numbers both ways
        assert r.data.tags[bt.SEED] == str(episode_seed(0, key[1]))
        assert (
            r.data.metrics["final/dev_loss_mean"] == fresh[key].data.metrics["final/dev_loss_mean"]
        )
    # the second episode learnt on from the first: its model counts both episodes' steps,
    # and SAC's replay buffer holds both episodes' transitions
    folder = tmp_path / "stopped" / "out" / "real-train"
    for algo in ("ppo", "sac"):
        data = read_policy_zip(folder / f"{algo}-s0" / "episode001.zip").data
        assert data["num_timesteps"] == 2 * DECISIONS
    with np.load(buffer_path(folder / "sac-s0" / "episode001.zip")) as buf:
        assert buf["pos_full"].tolist() == [2 * DECISIONS, 0]
        assert np.count_nonzero(np.abs(buf["actions"]).sum(axis=-1)) == 2 * DECISIONS

    report = run(route_args(tmp_path, "stopped", "--stage", "report"))["report"]
    table = {r.name: r for r in report.table}
    # The deployments of the 2-episode policies only, beside the simulator route.
    assert table["ppo-real"].kind == "trained on real" and table["ppo-real"].real_n == 1
    assert table["sac-real"].real_n == 1 and table["ppo"].real_n == 0  # no --stage real here
    assert np.isnan(table["ppo-real"].sim_iqm) and table["ppo-real"].train_s > 0
    assert "| ppo-real | " in report.markdown and "ep 2" in report.markdown
    assert "reached by ppo-real" not in report.markdown  # the target is about simulator training
    curves = (report.folder / "real_train_curves.csv").read_text().splitlines()
    assert curves[0].startswith("agent,train_seed,episode") and len(curves) == 5
    final = read_policy_zip(folder / "ppo-s0" / "episode001.zip")
    assert final.path.name == "episode001.zip"


def test_replay_buffer_round_trip_and_mismatch(tmp_path: Path) -> None:
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    model = SAC("MlpPolicy", env, buffer_size=50, learning_starts=10, seed=0)
    model.learn(20)
    path = tmp_path / "m.buffer.npz"
    save_replay_buffer(model.replay_buffer, path)
    other = SAC("MlpPolicy", env, buffer_size=50, seed=1)
    load_replay_buffer(other.replay_buffer, path)
    assert other.replay_buffer.pos == model.replay_buffer.pos == 20
    np.testing.assert_array_equal(other.replay_buffer.actions, model.replay_buffer.actions)
    np.testing.assert_array_equal(other.replay_buffer.rewards, model.replay_buffer.rewards)
    small = SAC("MlpPolicy", env, buffer_size=30, seed=1)
    with pytest.raises(MosgymError, match="replay buffer observations has shape"):
        load_replay_buffer(small.replay_buffer, path)
    with pytest.raises(MosgymError, match="no replay buffer beside the model"):
        load_replay_buffer(small.replay_buffer, tmp_path / "absent.npz")
    assert buffer_path(tmp_path / "episode003.zip").name == "episode003.buffer.npz"
