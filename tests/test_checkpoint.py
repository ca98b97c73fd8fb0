"""Checkpoints: safe format, atomic folder, exact resume (in-process and after SIGKILL/SIGTERM)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from mosgym.errors import MosgymError
from mosgym.experiment.checkpoint import (
    CheckpointDir,
    from_safe,
    load_state,
    to_safe,
)
from mosgym.experiment.request import resolve_request, resolve_resume
from mosgym.experiment.run import build_parser, main
from mosgym.experiment.runner import SeedResult, run_request

# Three skills (COSSIM rewards differ, so the mixture moves), a 1-layer model, 4 env steps.
TINY_ENV: dict[str, Any] = {
    "name": "tiny3",
    "skills": [
        {"name": "copy", "n_train": 60, "n_dev": 4, "n_probe": 4},
        {"name": "reverse", "n_train": 40, "n_dev": 4, "n_probe": 4},
        {"name": "add", "n_train": 30, "n_dev": 4, "n_probe": 4},
    ],
    "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
    "train": {
        "total_steps": 8,
        "interval": 2,
        "batch_size": 2,
        "probe_size": 2,
        "eval_batch_size": 8,
        "n_eval_generate": 2,
        "eval_max_new_tokens": 4,
        "max_length": 48,
    },
}


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs write ./checkpoints by default: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def write_tiny_env(folder: Path, **train: int) -> Path:
    cfg = {**TINY_ENV, "train": {**TINY_ENV["train"], **train}}
    path = folder / "tiny3.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


TIMES = ("wall_time_s", "time/", "time_share/")
"""Metrics that measure the clock, not the run: they differ between identical runs."""


def assert_same_result(a: SeedResult, b: SeedResult) -> None:
    """Bit-identical episodes and final metrics (wall time aside)."""
    ea, eb = a.episode, b.episode
    assert ea.steps == eb.steps
    for key in ("mixture", "skill_rewards", "dev_loss", "examples", "tokens"):
        np.testing.assert_array_equal(np.array(getattr(ea, key)), np.array(getattr(eb, key)))
    np.testing.assert_array_equal(ea.reward, eb.reward)
    np.testing.assert_array_equal(ea.train_loss, eb.train_loss)
    assert ea.final_eval is not None and eb.final_eval is not None
    for key in ea.final_eval:
        np.testing.assert_array_equal(ea.final_eval[key], eb.final_eval[key])
    assert ea.probe_skipped == eb.probe_skipped
    ma = {k: v for k, v in a.metrics.items() if not k.startswith(TIMES)}
    mb = {k: v for k, v in b.metrics.items() if not k.startswith(TIMES)}
    assert ma == mb


# --------------------------------------------------------------------------------------------
# The file format


def test_numpy_state_round_trips_through_weights_only_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    state = {
        "f64": rng.normal(size=(3, 2)),
        "i64": np.arange(5, dtype=np.int64),
        "f32": np.float32([1.5, np.nan]),
        "u32": np.arange(3, dtype=np.uint32),
        "bool": np.array([True, False]),
        "scalar": np.float64(0.1),
        "int_scalar": np.int64(3),
        "rng": rng.bit_generator.state,  # 128-bit Python ints
        "nested": [{"a": np.zeros((0, 4))}, (1, "x", None)],
        "tensor": torch.arange(3),
    }
    torch.save(to_safe(state), tmp_path / "s.pt")
    back = from_safe(torch.load(tmp_path / "s.pt", weights_only=True))
    for key in ("f64", "i64", "f32", "u32", "bool"):
        assert back[key].dtype == state[key].dtype
        np.testing.assert_array_equal(back[key], state[key])
    assert type(back["scalar"]) is np.float64 and back["scalar"] == 0.1
    assert type(back["int_scalar"]) is np.int64 and back["int_scalar"] == 3
    assert back["rng"] == state["rng"]
    assert back["nested"][0]["a"].shape == (0, 4) and back["nested"][1] == (1, "x", None)
    assert torch.equal(back["tensor"], state["tensor"])
    again = np.random.default_rng()
    again.bit_generator.state = back["rng"]
    assert again.random() == rng.random()


class _Hostile:
    """Unpickling this would create a file: a checkpoint must never run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_hostile_checkpoint_is_refused_without_running_code(tmp_path: Path) -> None:
    folder = tmp_path / "step-000001"
    folder.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "state": _Hostile(marker)}, folder / "state.pt")
    with pytest.raises(MosgymError, match="not a readable mosgym checkpoint"):
        load_state(folder)
    assert not marker.exists()
    (folder / "state.pt").write_bytes(b"garbage")
    with pytest.raises(MosgymError, match="not a readable"):
        load_state(folder)
    torch.save({"format": 99, "state": {}}, folder / "state.pt")
    with pytest.raises(MosgymError, match="format 99"):
        load_state(folder)


def test_folder_keeps_the_last_k_and_points_at_the_newest(tmp_path: Path) -> None:
    ckpt = CheckpointDir(tmp_path / "c", keep=2)
    assert ckpt.latest() is None
    for i in range(1, 5):
        ckpt.save(i, {"i": i, "a": np.full(2, i)})
    assert [p.name for p in ckpt.complete()] == ["step-000003", "step-000004"]
    assert (tmp_path / "c" / "latest").read_text() == "step-000004"
    assert load_state(ckpt.latest())["i"] == 4
    assert not list((tmp_path / "c").rglob("*.tmp"))
    (tmp_path / "c" / "latest").unlink()  # a lost pointer: the highest complete one is used
    assert ckpt.latest().name == "step-000004"
    ckpt.drop_newer(tmp_path / "c" / "step-000003")
    assert [p.name for p in ckpt.complete()] == ["step-000003"]


# --------------------------------------------------------------------------------------------
# CLI rules


def test_resume_refuses_other_configs_and_missing_checkpoints(tmp_path: Path, capsys) -> None:
    assert main(["--resume", str(tmp_path), "--agent", "static-uni"]) == 2
    assert "drop --agent" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path)]) == 2
    assert "no checkpoint in it" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nope")]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err
    assert main(["--keep", "0", "--steps", "100"]) == 2
    assert "--keep" in capsys.readouterr().err


def test_sb3_runs_refuse_to_resume() -> None:
    args = build_parser().parse_args(["--agent", "ppo", "--steps", "100"])
    req = resolve_request(args)
    with pytest.raises(MosgymError, match="cannot be resumed exactly"):
        run_request(req, {"tracking_uri": mlflow.get_tracking_uri()})


def test_an_unfinished_run_is_never_overwritten(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "ck"
    CheckpointDir(folder).save(3, {"x": 1})
    env = write_tiny_env(tmp_path)
    assert main(["--env", str(env), "--checkpoint-dir", str(folder), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unfinished run" in err and f"--resume {folder}" in err
    assert load_state(folder / "step-000003") == {"x": 1}


# --------------------------------------------------------------------------------------------
# Exact resume, in-process (fast) and across processes (slow)


def _request(env: Path, folder: Path, *extra: str) -> Any:
    args = build_parser().parse_args(
        ["--env", str(env), "--checkpoint-dir", str(folder), "--keep", "100", "--no-progress"]
        + ["--keep-checkpoints"]  # the tests resume finished runs from their middle
        + list(extra)
    )
    return resolve_request(args)


def _resume(folder: Path) -> list[SeedResult]:
    req, state = resolve_resume(build_parser().parse_args(["--resume", str(folder)]))
    return run_request(req, state)


@pytest.mark.slow
def test_multi_seed_run_resumes_bit_exactly_in_the_same_runs(tmp_path: Path) -> None:
    env = write_tiny_env(tmp_path)
    folder = tmp_path / "ck"
    first = run_request(_request(env, folder, "--seeds", "0-1"))
    # 4 env steps per seed: checkpoints 0..4 for seed 0, 4..8 for seed 1 (8 = both done)
    assert [p.name for p in CheckpointDir(folder).complete()][-1] == "step-000008"
    assert (folder / "finished").is_file()
    client = MlflowClient()
    parent = client.get_run(first[0].run_id).data.tags["mlflow.parentRunId"]

    mid_seed1 = _resume(folder / "step-000006")  # seed 0 done, seed 1 at its 2nd env step
    assert [r.run_id for r in mid_seed1] == [r.run_id for r in first]
    for a, b in zip(first, mid_seed1, strict=True):
        assert_same_result(a, b)
    assert client.get_run(parent).info.status == "FINISHED"
    for r in first:  # every step logged once, though seed 1 ran steps 6..8 twice
        history = client.get_metric_history(r.run_id, "dev_loss_mean")
        assert sorted(m.step for m in history) == [0, 2, 4, 6, 8]

    assert (folder / "finished").is_file()


@pytest.mark.slow
def test_discrete_agent_with_its_own_rng_resumes_exactly(tmp_path: Path) -> None:
    env = write_tiny_env(tmp_path)
    folder = tmp_path / "ck"
    (first,) = run_request(_request(env, folder, "--agent", "odm-discrete"))
    (again,) = _resume(folder / "step-000001")
    assert_same_result(first, again)
    assert len({tuple(m) for m in first.episode.mixture[1:]}) > 1  # arms actually varied


def _popen(args: list[str], uri: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "mosgym.run", "--no-progress", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"run ended before {path} appeared: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear in {timeout} s")
        time.sleep(0.02)


def _the_run(uri: str, experiment: str = "tiny3") -> Any:
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def _histories(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(uri)
    keys = client.get_run(run_id).data.metrics
    history = client.get_metric_history
    return {k: sorted((m.step, m.value) for m in history(run_id, k)) for k in keys}


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    env = write_tiny_env(tmp_path)  # 4 env steps
    ref_uri, uri = f"sqlite:///{tmp_path}/ref.db", f"sqlite:///{tmp_path}/killed.db"
    folder = tmp_path / "ck"
    ref = _popen(["--env", str(env), "--checkpoint-every", "0"], ref_uri, tmp_path)
    victim = _popen(["--env", str(env), "--checkpoint-dir", str(folder)], uri, tmp_path)
    _wait_for(folder / "step-000002" / "state.pt", victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert not (folder / "finished").exists()
    killed = _the_run(uri)
    assert killed.info.status == "RUNNING"  # SIGKILL leaves no chance to mark it
    resumed = _popen(["--resume", str(folder)], uri, tmp_path)
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-2000:]
    ref_out, ref_err = ref.communicate(timeout=240)
    assert ref.returncode == 0, ref_err[-2000:]

    run, ref_run = _the_run(uri), _the_run(ref_uri)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    finals = {k: v for k, v in run.data.metrics.items() if not k.startswith(TIMES)}
    ref_finals = {k: v for k, v in ref_run.data.metrics.items() if not k.startswith(TIMES)}
    assert finals == ref_finals and "final/dev_loss_mean" in finals
    got, want = _histories(uri, run.info.run_id), _histories(ref_uri, ref_run.info.run_id)
    assert {k: v for k, v in got.items() if not k.startswith(TIMES)} == {
        k: v for k, v in want.items() if not k.startswith(TIMES)
    }  # the same values at the same steps, none logged twice
    assert [s for s, _ in got["dev_loss_mean"]] == [0, 2, 4, 6, 8]
    prob = MlflowClient(uri).download_artifacts(run.info.run_id, "prob_log.csv", str(tmp_path))
    ref_dir = tmp_path / "ref_art"
    ref_dir.mkdir()
    ref_prob = MlflowClient(ref_uri).download_artifacts(
        ref_run.info.run_id, "prob_log.csv", str(ref_dir)
    )
    assert Path(prob).read_text() == Path(ref_prob).read_text()
    rows = Path(prob).read_text().strip().splitlines()
    assert len(rows) == 5 and len({r.split(",", 1)[1] for r in rows[1:]}) > 1


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_marks_killed_and_exits_non_zero(tmp_path: Path) -> None:
    env = write_tiny_env(tmp_path, total_steps=400)
    uri = f"sqlite:///{tmp_path}/m.db"
    folder = tmp_path / "ck"
    proc = _popen(["--env", str(env), "--checkpoint-dir", str(folder), "--checkpoint-every", "50"],
                  uri, tmp_path)  # fmt: skip
    _wait_for(folder / "step-000000" / "state.pt", proc)  # the episode has started
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("mosgym: interrupted (SIGTERM)") and f"--resume {folder}" in line
    assert _the_run(uri).info.status == "KILLED"
    # The stop waited for the env step to end and saved it, though 50 steps were not reached.
    latest = CheckpointDir(folder).latest()
    assert latest is not None and latest.name != "step-000000"
    state = load_state(latest)
    steps = state["current"]["episode"]["steps"]
    assert int(latest.name.split("-")[1]) == len(steps) - 1 > 0
    history = MlflowClient(uri).get_metric_history(_the_run(uri).info.run_id, "dev_loss_mean")
    assert max(m.step for m in history) == steps[-1]  # nothing ran past the checkpoint
    assert math.isfinite(state["current"]["wall_time_s"])
