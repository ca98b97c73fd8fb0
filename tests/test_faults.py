"""Faults injected into real runs: NaN loss, NaN probes, a full disk, signals."""

from __future__ import annotations

import contextvars
import errno
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import mosgym.learner.hf as hf
from mosgym.errors import MosgymError
from mosgym.experiment import faults
from mosgym.experiment.checkpoint import CheckpointDir, load_state
from mosgym.experiment.run import main
from mosgym.experiment.runner import run_request
from tests.test_checkpoint import _request, write_tiny_env


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _only_run(experiment: str = "tiny3") -> Any:
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def _args(env: Path, folder: Path) -> list[str]:
    return ["--env", str(env), "--checkpoint-dir", str(folder), "--no-progress"]


@pytest.mark.slow
def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real_train = hf.HFLearner.train

    def poisoned(self: hf.HFLearner, mixture: np.ndarray, n_steps: int) -> Any:
        if self.step == 4:  # the 3rd env step: a weight turns NaN, so the real loss does
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return real_train(self, mixture, n_steps)

    monkeypatch.setattr(hf.HFLearner, "train", poisoned)
    env, folder = write_tiny_env(tmp_path), tmp_path / "ck"
    assert main(_args(env, folder)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("mosgym: error: training loss became nan")
    assert "optimizer step 6" in err and f"{folder / 'step-000002'}, is kept" in err
    run = _only_run()
    assert run.info.status == "FAILED"
    ckpt = CheckpointDir(folder)
    assert ckpt.latest().name == "step-000002" and not (folder / "step-000003").exists()
    state = load_state(ckpt.latest())
    assert state["current"]["episode"]["steps"] == [0, 2, 4]
    weights = state["current"]["env"]["learner"]["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())  # the good state was kept

    monkeypatch.setattr(hf.HFLearner, "train", real_train)  # the fault was transient
    assert main(["--resume", str(folder), "--no-progress"]) == 0
    run = MlflowClient().get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and "final/dev_loss_mean" in run.data.metrics


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_leaves_the_previous_one_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def disk_fills_up(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # checkpoints 0 and 1 fit; the 3rd write runs out of space
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    env, folder = write_tiny_env(tmp_path), tmp_path / "ck"
    assert main(_args(env, folder)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "No space left on device" in err and "step-000001, is intact" in err
    assert _only_run().info.status == "FAILED"
    assert CheckpointDir(folder).latest().name == "step-000001"
    listing = sorted(p.name for p in folder.iterdir())
    assert listing == ["latest", "request.json", "step-000000", "step-000001"]
    assert not list(folder.rglob("*.tmp"))
    assert load_state(folder / "step-000001")["current"]["episode"]["steps"] == [0, 2]

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    assert main(["--resume", str(folder), "--no-progress"]) == 0
    assert _only_run().info.status == "FINISHED"


_SKILL = contextvars.ContextVar("skill", default=-1)


@pytest.mark.slow
def test_nan_probes_are_skipped_counted_and_never_reach_the_mixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 0 of every probe batch gets a NaN embedding; skill 1 gets NaN everywhere, so its
    COSSIM reward cannot be computed at all."""
    real_probe, real_forward = hf.HFLearner.probe, hf.probe_forward

    def probe(self: hf.HFLearner, skill: int, n: int, **kwargs: Any) -> Any:
        token = _SKILL.set(skill)
        try:
            return real_probe(self, skill, n, **kwargs)
        finally:
            _SKILL.reset(token)

    def forward(model: Any, batch: Any) -> Any:
        out = real_forward(model, batch)
        rows = slice(None) if _SKILL.get() == 1 else slice(0, 1)
        out.embeddings[rows] = float("nan")
        return out

    monkeypatch.setattr(hf.HFLearner, "probe", probe)
    monkeypatch.setattr(hf, "probe_forward", forward)
    env = write_tiny_env(tmp_path)  # 3 skills, probe_size 2 (one batch), 4 env steps
    (result,) = run_request(_request(env, tmp_path / "ck"))
    ep = result.episode
    # per env step: 1 (skill 0) + 2 (skill 1) + 1 (skill 2) examples dropped
    assert ep.probe_skipped == 4 * 4 and result.metrics["probe_skipped"] == 16
    assert ep.reward_fallback == 4 and result.metrics["reward_fallback"] == 4
    rewards, mixtures = np.array(ep.skill_rewards[1:]), np.array(ep.mixture[1:])
    assert np.isfinite(rewards).all() and np.isfinite(mixtures).all()
    np.testing.assert_allclose(mixtures.sum(axis=1), 1.0)
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"


def test_a_finite_loss_passes_and_nan_or_inf_is_one_clear_error() -> None:
    faults.check_train_loss(2.5, 10, None)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(MosgymError, match="training diverged") as e:
            faults.check_train_loss(bad, 10, "ck/step-000004")
        assert "ck/step-000004, is kept" in str(e.value) and "\n" not in str(e.value)


def test_first_signal_waits_for_the_step_a_second_one_stops_at_once() -> None:
    with faults.signal_handlers() as stop:
        with pytest.raises(faults.Interrupted) as e:  # outside the step loop: at once
            os.kill(os.getpid(), signal.SIGTERM)
        assert e.value.signum == signal.SIGTERM
        with stop.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested and stop.signum == signal.SIGINT  # noted, not raised
            with pytest.raises(faults.Interrupted):
                os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(faults.Interrupted) as e:
            stop.raise_if_requested()
        assert e.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is not faults.STOP.handler
    assert not faults.STOP.requested
