"""Multi-process fine-tuning (torchrun, DDP and FSDP, gloo on CPU): 2 ranks give the
single-process mixture path and rewards, every rank holds the same mixture, only rank 0 records
and saves, and a checkpoint resumes under either (or in one process).

The ranks run this module as a script (`python -m tests.test_distributed MODE OUT ARGS`), so
the same code drives the single-process reference in the pytest process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO

AGENTS = ("mos-cossim", "mos-diff")
# A 1-layer model, T = 20 steps, S = 5: four scheduler decisions per episode.
OVERRIDES = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=64",
    "train.total_steps=20",
    "train.interval=5",
    "train.batch_size=4",
    "train.grad_accum=2",
    "train.probe_size=5",
    "train.eval_batch_size=2",
    "train.n_eval_generate=3",
    "train.eval_max_new_tokens=4",
]
CLI_SETS = [a for s in OVERRIDES if "grad_accum" not in s for a in ("--set", s)]
RTOL = 1e-5
"""2 ranks vs 1 process: the same examples and updates, summed in another order."""


# --------------------------------------------------------------------------------------------
# What the ranks run


def run_episodes(out: Path, parallel: str = "ddp") -> None:
    """One seed-0 episode per MoS agent; every rank writes what its env saw."""
    from mosgym.agents import load_agent_config, make_agent
    from mosgym.config import to_dict
    from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
    from mosgym.experiment import launch
    from mosgym.experiment.episode import RecordEpisode, run_episode
    from mosgym.learner import distributed

    record: dict[str, Any] = {}
    for name in AGENTS:
        agent_cfg = load_agent_config(REPO / "agents" / f"{name}.yaml")
        env = MixtureOfSkillsEnv(
            REPO / "envs" / "skills-tiny.yaml",
            [*OVERRIDES, f"train.parallel={parallel}"],
            reward=to_dict(agent_cfg.reward),
        )
        if distributed.is_main():
            rec = RecordEpisode(launch.Lead(env) if distributed.active() else env)
            agent = make_agent(agent_cfg)
            agent.setup(env.spec_info, 0)
            run_episode(rec, agent, seed=0)
            launch.lead("end")
        else:
            rec = RecordEpisode(env)
            launch.follow(rec)
        ep = rec.log
        record[name] = {
            "mixture": np.array(ep.mixture).tolist(),
            "skill_rewards": np.array(ep.skill_rewards[1:]).tolist(),
            "dev_loss": np.array(ep.dev_loss).tolist(),
            "train_loss": ep.train_loss[1:],
        }
    # The learned baselines' signals, called on every rank in step: MultiDDS gradients are
    # sharded and summed over ranks, MultiUAT entropies are computed whole on each rank (under
    # FSDP from a sharded model).
    record["multidds"] = env.learner.gradient_alignment(5).tolist()
    record["multiuat"] = env.learner.uncertainty(3, 1).tolist()
    from torch.distributed.tensor import DTensor

    record["sharded"] = isinstance(next(env.learner.model.parameters()), DTensor)
    (out / f"rank{distributed.rank()}.json").write_text(json.dumps(record))
    distributed.teardown()


def run_cli(out: Path, argv: list[str]) -> int:
    """`python -m mosgym.run ARGV`, noting on this rank's file every MLflow run it starts and
    every checkpoint it writes."""
    import mlflow

    from mosgym.experiment import checkpoint, run

    rank = os.environ.get("RANK", "0")
    calls = out / f"calls{rank}.txt"
    save, start_run = checkpoint.CheckpointDir.save, mlflow.start_run

    def noted(kind: str, f: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with open(calls, "a") as fh:
                fh.write(kind + "\n")
            return f(*args, **kwargs)

        return wrapper

    checkpoint.CheckpointDir.save = noted("checkpoint", save)  # type: ignore[method-assign]
    mlflow.start_run = noted("mlflow_run", start_run)
    return run.main(["--no-progress", *argv])


def run_drift() -> None:
    """Equal values pass the cross-rank check (NaN included); rank-dependent ones must not."""
    from mosgym.learner import distributed

    distributed.init()
    distributed.check_same("x", np.array([0.5, np.nan]))
    print("agree", flush=True)
    distributed.check_same("x", np.array([0.5, distributed.rank()]))
    print("drift not caught", flush=True)


# --------------------------------------------------------------------------------------------
# Launching


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
        "XDG_CACHE_HOME": str(tmp / "cache"),
    }


def torchrun(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """2 ranks of this module under torchrun (the launcher users run)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--master-port", str(_free_port()), "-m", "tests.test_distributed", *args]
    return subprocess.run(cmd, cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=300)


def start_ranks(tmp: Path, world: int, *args: str) -> list[subprocess.Popen]:
    """`world` ranks started by hand with torchrun's variables, so that each rank's own
    output can be read (torchrun adds its own failure report) and each can be signalled."""
    port = str(_free_port())
    procs = []
    for r in range(world):
        env = {
            **_env(tmp),
            **{"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world)},
            **{"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port},
        }
        cmd = [sys.executable, "-m", "tests.test_distributed", *args]
        procs.append(
            subprocess.Popen(
                cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    return procs


def launch_ranks(tmp: Path, world: int, *args: str) -> list[subprocess.CompletedProcess]:
    """`start_ranks`, waited for."""
    done = []
    for p in start_ranks(tmp, world, *args):
        stdout, stderr = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


# --------------------------------------------------------------------------------------------
# Tests


def test_one_process_is_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torchrun no process group exists and every helper is the identity."""
    from mosgym.learner import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    distributed.init()
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    np.testing.assert_array_equal(distributed.shard_positions(5), np.arange(5))
    rows = {"nll": np.array([3.0, 1.0])}
    assert distributed.gather_rows(rows, 2) is rows
    assert distributed.broadcast_object(("step", 1)) == ("step", 1)
    assert distributed.all_gather_object(7) == [7]


def test_parallel_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from mosgym.config import TrainConfig
    from mosgym.errors import MosgymError
    from mosgym.learner import distributed

    with pytest.raises(MosgymError, match="train.parallel: unknown value 'zero'"):
        distributed.check_parallel(TrainConfig(parallel="zero"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    distributed.check_parallel(TrainConfig(batch_size=3, parallel="fsdp"))  # one process
    monkeypatch.setenv("WORLD_SIZE", "3")
    distributed.check_parallel(TrainConfig(batch_size=12))
    with pytest.raises(MosgymError) as e:
        distributed.check_parallel(TrainConfig(batch_size=16))
    assert str(e.value) == (
        "train.batch_size=16 is not divisible by the world size 3: set train.batch_size to a "
        "multiple of 3 or launch with --nproc-per-node that divides it"
    )
    distributed.check_parallel(TrainConfig(batch_size=12, parallel="fsdp"))


def test_fsdp_refuses_a_compiled_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from mosgym.config import load_env_config
    from mosgym.envs.mixture_of_skills import check_config
    from mosgym.errors import MosgymError

    sets = ["model.compile=true", "train.parallel=fsdp", "train.batch_size=32"]
    cfg = load_env_config(REPO / "envs" / "skills-tiny.yaml", sets)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    check_config(cfg)  # one process: parallel is ignored
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(MosgymError, match="model.compile with train.parallel=fsdp"):
        check_config(cfg)
    cfg.train.parallel = "ddp"
    check_config(cfg)


def test_sharded_evaluation_runs_in_lockstep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under FSDP every forward is a collective: each rank gets its strided share of the
    examples, padded with not-real chunks to the largest rank's count."""
    from mosgym.learner import distributed
    from mosgym.learner.sharded import lockstep_chunks

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    index = np.arange(10, 15)  # 5 examples over 2 ranks: 3 and 2, in chunks of 2
    for rank, mine in [(0, [[10, 12], [14]]), (1, [[11, 13], [10]])]:
        monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
        chunks = lockstep_chunks(index, 2, sharded=True)
        assert [c.tolist() for c, _ in chunks] == mine
        assert [real for _, real in chunks] == [True, rank == 0]
        unpadded = lockstep_chunks(index, 2, sharded=False)  # DDP: no padding
        assert [c.tolist() for c, _ in unpadded] == mine[: 2 - rank]
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert lockstep_chunks(np.arange(1), 4, sharded=True)[0][1] is False  # nothing of its own


def test_ranks_that_drift_apart_are_stopped(tmp_path: Path) -> None:
    """The per-step cross-rank check compares bitwise and fails every rank on a mismatch."""
    procs = launch_ranks(tmp_path, 2, "drift", str(tmp_path))
    for p in procs:
        assert p.returncode != 0
        assert p.stdout.split() == ["agree"]
        assert "RuntimeError: ranks disagree on x: [[0.5, 0.0], [0.5, 1.0]]" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_match_one_process_and_each_other(tmp_path: Path, parallel: str) -> None:
    """(1) the mixture path, rewards, dev and training losses of 2 DDP or FSDP ranks equal one
    process's within RTOL, and so do the MultiDDS and MultiUAT signals; (2) both ranks hold
    bitwise the same mixtures and rewards at every interval."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    run_episodes(tmp_path / "one")
    _ok(torchrun(tmp_path, "episodes", str(tmp_path / "two"), parallel))
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    rank0 = json.loads((tmp_path / "two" / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "two" / "rank1.json").read_text())
    assert rank0 == rank1  # every rank, every interval, exactly
    assert rank0.pop("sharded") is (parallel == "fsdp") and one.pop("sharded") is False
    for key in ("multidds", "multiuat"):
        assert len(rank0[key]) == 6
        np.testing.assert_allclose(rank0[key], one[key], rtol=RTOL, atol=1e-6, err_msg=key)
    for name in AGENTS:
        mixture = np.array(rank0[name]["mixture"])
        assert mixture.shape == (5, 6)
        assert np.abs(mixture[-1] - 1 / 6).max() > 1e-3  # the agent did move the mixture
        for key in ("mixture", "skill_rewards", "dev_loss", "train_loss"):
            np.testing.assert_allclose(
                rank0[name][key], one[name][key], rtol=RTOL, atol=1e-6, err_msg=f"{name} {key}"
            )


def test_batch_not_divisible_by_world_size(tmp_path: Path) -> None:
    """(3) one error line over both ranks, exit status 2 on each, no traceback."""
    args = ["--env", str(REPO / "envs" / "skills-tiny.yaml"), *CLI_SETS]
    args += ["--set", "train.batch_size=3"]
    procs = launch_ranks(tmp_path, 2, "cli", str(tmp_path), *args)
    assert [p.returncode for p in procs] == [2, 2]
    lines = [line for p in procs for line in p.stderr.splitlines() if line.strip()]
    assert lines == [
        "mosgym: error: train.batch_size=3 is not divisible by the world size 2: set "
        "train.batch_size to a multiple of 2 or launch with --nproc-per-node that divides it"
    ]
    assert not (tmp_path / "mlflow.db").exists() or _n_runs(tmp_path) == 0


def _n_runs(tmp: Path) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    experiments = client.search_experiments()
    return len(client.search_runs([e.experiment_id for e in experiments]))


def _mixtures(folder: Path) -> np.ndarray:
    """The mixture path of the finished seed recorded in checkpoint `folder`."""
    from mosgym.experiment.checkpoint import load_state

    return np.array(load_state(folder)["done"][0]["episode"]["mixture"])


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_only_rank_zero_records_and_resume_continues(tmp_path: Path, parallel: str) -> None:
    """(4) one MLflow run and the checkpoints come from rank 0 only; a 2-rank --resume from
    an earlier checkpoint (every rank reads it) ends with the same mixture path. Under FSDP the
    checkpoint holds the whole model: one process resumes it too, and 2 FSDP ranks resume the
    checkpoint that one process then writes."""
    ckpt = tmp_path / "ck"
    args = ["--env", str(REPO / "envs" / "skills-tiny.yaml"), "--agent", "mos-cossim"]
    args += [*CLI_SETS, "--set", f"train.parallel={parallel}"]
    args += ["--checkpoint-dir", str(ckpt), "--keep", "10", "--keep-checkpoints"]
    proc = torchrun(tmp_path, "cli", str(tmp_path), *args)
    _ok(proc)
    assert "mixture path" in proc.stdout  # rank 0's summary
    assert proc.stdout.count("mixture path") == 1
    assert (tmp_path / "calls0.txt").read_text().split() == ["mlflow_run"] + ["checkpoint"] * 6
    assert not (tmp_path / "calls1.txt").exists()
    assert _n_runs(tmp_path) == 1
    first = _mixtures(ckpt / "step-000004")
    assert first.shape == (5, 6)
    for f in tmp_path.glob("calls*.txt"):
        f.unlink()
    resumed = torchrun(tmp_path, "cli", str(tmp_path), "--resume", str(ckpt / "step-000002"))
    _ok(resumed)
    assert (tmp_path / "calls0.txt").read_text().split() == ["mlflow_run"] + ["checkpoint"] * 3
    assert not (tmp_path / "calls1.txt").exists()
    assert _n_runs(tmp_path) == 1  # the same run, continued
    np.testing.assert_array_equal(_mixtures(ckpt / "step-000004"), first)
    if parallel == "fsdp":  # the gathered checkpoint, resumed by one process, and back
        assert run_cli(tmp_path, ["--resume", str(ckpt / "step-000002")]) == 0
        np.testing.assert_allclose(_mixtures(ckpt / "step-000004"), first, rtol=RTOL)
        _ok(torchrun(tmp_path, "cli", str(tmp_path), "--resume", str(ckpt / "step-000003")))
        np.testing.assert_allclose(_mixtures(ckpt / "step-000004"), first, rtol=RTOL)


@pytest.mark.slow
def test_a_signal_stops_every_rank_after_a_gathered_checkpoint(tmp_path: Path) -> None:
    """SIGTERM to every rank (what torchrun does on a stop) under FSDP: rank 0 finishes the env
    step, gathers the sharded model with rank 1's help into a checkpoint, tells rank 1 to end
    and exits 128 + 15; rank 1 exits 0. The checkpoint holds the whole model."""
    from mosgym.config import load_env_config
    from mosgym.experiment.checkpoint import CheckpointDir, load_state
    from mosgym.learner.model import load_model

    ckpt = tmp_path / "ck"
    sets = [*CLI_SETS, "--set", "train.parallel=fsdp", "--set", "train.total_steps=400"]
    args = ["--env", str(REPO / "envs" / "skills-tiny.yaml"), "--agent", "mos-cossim", *sets]
    args += ["--checkpoint-dir", str(ckpt), "--checkpoint-every", "1000"]
    procs = start_ranks(tmp_path, 2, "cli", str(tmp_path), *args)
    first = ckpt / "step-000000" / "state.pt"
    deadline = time.monotonic() + 180
    while not first.exists():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.2)
    time.sleep(1.0)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [128 + signal.SIGTERM, 0], errs
    assert "Traceback" not in errs[0] + errs[1]
    assert errs[0].strip().splitlines()[-1].startswith("mosgym: interrupted (SIGTERM)")
    latest = CheckpointDir(ckpt).latest()
    assert latest is not None and latest.name != "step-000000"
    current = load_state(latest)["current"]
    assert int(latest.name.split("-")[1]) == len(current["episode"]["steps"]) - 1
    saved = current["env"]["learner"]["model"]
    cfg = load_env_config(REPO / "envs" / "skills-tiny.yaml", OVERRIDES)
    whole = load_model(cfg.model).model.state_dict()
    assert {k: tuple(v.shape) for k, v in saved.items()} == {
        k: tuple(v.shape) for k, v in whole.items()
    }


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "episodes":
        run_episodes(out, *sys.argv[3:])
    elif mode == "drift":
        run_drift()
    else:
        sys.exit(run_cli(out, sys.argv[3:]))
