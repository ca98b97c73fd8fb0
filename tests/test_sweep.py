"""`python -m mosgym.sweep`: trials as mosgym.run's runs under one parent, resume, Ray."""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mosgym.analysis import compare
from mosgym.experiment import sweep_trials as sweep_runs
from mosgym.experiment import tracking
from mosgym.experiment.request import RunRequest
from mosgym.experiment.run import main as run_main
from mosgym.experiment.sweep import SweepResult, _absolute_uri, format_summary, main

SIM = ["--envs", "sim-skills-tiny", "--set", "train.total_steps=200", "--no-progress"]
GRID = [*SIM, "--agents", "mos-cossim", "static-uni", "--seeds", "0-1"]


def _name(agent: str, seed: int) -> str:
    """A run's name: agent first; the env too, as these experiments are not named after it."""
    return f"{agent} s{seed} @ sim-skills-tiny"


NAMES = {_name(a, s) for a in ("mos-cossim", "static-uni") for s in (0, 1)}


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _runs(experiment: str) -> list:
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _split(experiment: str) -> tuple[list, list]:
    runs = [r for r in _runs(experiment) if r.data.tags.get("mosgym.kind") != "comparison"]
    parents = [r for r in runs if r.data.tags.get("mosgym.kind") == "parent"]
    children = [r for r in runs if r.data.tags.get("mosgym.kind") == "run"]
    assert len(parents) + len(children) == len(runs)
    return parents, children


def _check_sweep(experiment: str) -> dict[str, object]:
    """One FINISHED parent listing the grid, four FINISHED children under it; name -> child."""
    parents, children = _split(experiment)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["mosgym.sweep.agents"] == "mos-cossim,static-uni"
    assert tags["mosgym.sweep.envs"] == "sim-skills-tiny"
    assert tags["mosgym.sweep.seeds"] == "0-1" and tags["mosgym.sweep.n_trials"] == "4"
    assert parent.data.metrics["sweep/n_failed"] == 0
    by_name = {c.info.run_name: c for c in children}
    assert set(by_name) == NAMES
    for c in children:
        assert c.info.status == "FINISHED"
        assert c.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert c.data.tags["mosgym.sweep"] == parent.info.run_id
        assert c.data.params["env.train.total_steps"] == "200"
        assert "final/dev_loss_mean" in c.data.metrics
    return by_name


def test_sequential_sweep_is_mosgym_run_under_one_parent_and_compare_reads_it(
    capsys, caplog
) -> None:
    assert main([*GRID, "--backend", "sequential", "--experiment", "sw"]) == 0
    captured = capsys.readouterr()
    assert "backend: sequential" in caplog.text
    by_name = _check_sweep("sw")
    for name in NAMES:
        assert f"| {name} | FINISHED |" in captured.out

    # The same trial through mosgym.run: same tags (but the sweep's), params, final metrics.
    argv = ["--env", "sim-skills-tiny", "--agent", "static-uni", "--seeds", "1"]
    assert run_main([*argv, "--set", "train.total_steps=200", "--no-progress", "-q"]) == 0
    (alone,) = _runs("sim-skills-tiny")
    child = by_name[_name("static-uni", 1)]
    # The same name, but the env: the sweep's experiment is not named after it.
    assert alone.info.run_name == "static-uni s1"
    assert child.info.run_name == f"{alone.info.run_name} @ sim-skills-tiny"
    sweep_only = {"mosgym.sweep", "mosgym.trial", "mosgym.attempt", "mlflow.parentRunId"}
    assert set(child.data.tags) - set(alone.data.tags) == sweep_only
    for key in ("mosgym.env", "mosgym.agent", "mosgym.seed", "mosgym.kind"):
        assert child.data.tags[key] == alone.data.tags[key]
    assert child.data.params == alone.data.params
    finals = {k: v for k, v in alone.data.metrics.items() if k.startswith("final/")}
    assert finals == {k: child.data.metrics[k] for k in finals}
    client = MlflowClient()
    for rid in (alone.info.run_id, child.info.run_id):
        hist = client.get_metric_history(rid, "dev_loss_mean")
        assert [m.step for m in hist] == [0, 50, 100, 150, 200]

    result = compare.compare(client, "sw", out=Path("cmp"), n_boot=200)
    seeds = {r.agent: r.n for r in result.rows if r.metric.key == "final_dev_loss_mean"}
    assert seeds == {"mos-cossim": 2, "static-uni": 2}
    iqm = {r.agent: r.iqm for r in result.rows if r.metric.key == "final_dev_loss_mean"}
    uni = [by_name[_name("static-uni", s)] for s in (0, 1)]
    # IQM of two values is their mean.
    assert iqm["static-uni"] == pytest.approx(
        sum(c.data.metrics["final/dev_loss_mean"] for c in uni) / 2
    )
    # --runs PARENT stands for the sweep's trials.
    parent_id = next(iter(by_name.values())).data.tags["mosgym.sweep"]
    via_parent = compare.compare(client, "sw", run_ids=[parent_id], out=Path("c2"), n_boot=200)
    assert {r.agent for r in via_parent.rows} == {"mos-cossim", "static-uni"}

    # Rerun, then --resume: every trial is skipped, nothing new is logged.
    caplog.clear()
    assert main([*GRID, "--backend", "sequential", "--experiment", "sw"]) == 0
    captured = capsys.readouterr()
    assert caplog.text.count("skipping finished trial") == 4
    assert captured.out.count("| SKIPPED |") == 4
    assert main(["--resume", parent_id, "--backend", "sequential", "-q"]) == 0
    assert capsys.readouterr().out.count("| SKIPPED |") == 4
    after = _check_sweep("sw")
    assert {n: r.info.run_id for n, r in after.items()} == {
        n: r.info.run_id for n, r in by_name.items()
    }


def test_failed_trial_is_marked_and_a_rerun_runs_only_it(monkeypatch, capsys, caplog) -> None:
    real = tracking.final_metrics
    calls = []

    def fail_second(ep, wall):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected fault")
        return real(ep, wall)

    monkeypatch.setattr(tracking, "final_metrics", fail_second)
    assert main([*GRID, "--backend", "sequential", "--experiment", "sf"]) == 1
    out = capsys.readouterr().out
    assert f"| {_name('mos-cossim', 1)} | FAILED (RuntimeError: injected fault) |" in out
    assert out.count("| FINISHED |") == 3
    parents, children = _split("sf")
    assert parents[0].info.status == "FAILED"
    failed = [c for c in children if c.info.status == "FAILED"]
    assert [c.info.run_name for c in failed] == [_name("mos-cossim", 1)]
    assert failed[0].data.tags["mosgym.error"] == "RuntimeError: injected fault"
    assert failed[0].data.tags["mlflow.parentRunId"] == parents[0].info.run_id

    # A finished trial whose run is left RUNNING (a sweep killed hard) counts as unfinished.
    stale = next(c for c in children if c.info.run_name == _name("static-uni", 0))
    MlflowClient().update_run(stale.info.run_id, status="RUNNING")
    monkeypatch.setattr(tracking, "final_metrics", real)
    caplog.clear()
    assert main([*GRID, "--backend", "sequential", "--experiment", "sf"]) == 0
    assert caplog.text.count("skipping finished trial") == 2
    assert f"trial 1/2 {_name('mos-cossim', 1)}: FINISHED" in caplog.text
    assert f"trial 2/2 {_name('static-uni', 0)}: FINISHED" in caplog.text
    parents, children = _split("sf")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.info.status for c in children) == ["FAILED"] * 2 + ["FINISHED"] * 4
    was_stale = MlflowClient().get_run(stale.info.run_id)
    assert was_stale.info.status == "FAILED"
    assert "left running by a sweep that stopped" in was_stale.data.tags["mosgym.error"]
    # compare uses the four finished runs and notes the failed ones.
    result = compare.compare(MlflowClient(), "sf", out=Path("cmp"), n_boot=200)
    assert result.markdown.count("status FAILED, not FINISHED") == 2
    assert {r.n for r in result.rows if r.metric.key == "final_dev_loss_mean"} == {2}


def test_trial_failing_before_its_run_starts_gets_a_failed_run(monkeypatch, capsys) -> None:
    """A trial that fails before the runner made its run (env build, lost worker) still
    leaves a FAILED child with the run's name and tags."""
    import mosgym.experiment.runner

    real = mosgym.experiment.runner.run_request

    def fail_uni(req, resume=None):
        if req.agent["name"] == "static-uni":
            raise sweep_runs.MosgymError("no data for skill add")
        return real(req, resume)

    monkeypatch.setattr(mosgym.experiment.runner, "run_request", fail_uni)
    args = [*SIM, "--agents", "static-uni", "mos-cossim", "--backend", "sequential"]
    assert main([*args, "--experiment", "sb"]) == 1
    assert "FAILED (no data for skill add)" in capsys.readouterr().out
    _, children = _split("sb")
    (failed,) = [c for c in children if c.info.status == "FAILED"]
    assert failed.info.run_name == _name("static-uni", 0)
    assert failed.data.tags["mosgym.agent"] == "static-uni"
    assert failed.data.tags["mosgym.seed"] == "0"
    assert failed.data.tags["mosgym.error"] == "no data for skill add"


def _store_has_experiments() -> bool:
    """Whether the test's store holds any experiment but Default (opening it makes the file)."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if not Path(uri.removeprefix("sqlite:///")).exists():
        return False
    return bool(MlflowClient().search_experiments(filter_string="name != 'Default'"))


def test_sweep_inside_an_active_run_nests_under_it() -> None:
    import mlflow

    mlflow.set_experiment("outer")
    with mlflow.start_run(run_name="outer") as outer:
        args = [*SIM, "--agents", "static-uni", "--backend", "sequential", "-q"]
        assert main([*args, "--experiment", "outer"]) == 0
        assert mlflow.active_run().info.run_id == outer.info.run_id
    runs = {r.data.tags.get("mosgym.kind"): r for r in _runs("outer")}
    assert len(runs) == 3
    sweep, child = runs["parent"], runs["run"]
    assert sweep.data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert child.data.tags["mlflow.parentRunId"] == sweep.info.run_id
    assert child.info.status == sweep.info.status == "FINISHED"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("mosgym: error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0]


@pytest.mark.parametrize("scheme", ["ray://", ""])
def test_ray_address_that_does_not_answer_is_one_clear_error(scheme, capsys) -> None:
    pytest.importorskip("ray")
    address = f"{scheme}127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    code = main([*GRID, "--backend", "ray", "--ray-address", address, "--experiment", "bad"])
    _one_line_error(code, capsys.readouterr().err, address, "does not answer", "ray start")
    assert time.perf_counter() - t0 < 30
    assert MlflowClient().get_experiment_by_name("bad") is None  # no half-made runs


def test_remote_cluster_with_a_local_store_is_refused(capsys) -> None:
    pytest.importorskip("ray")
    address = "ray://192.0.2.1:10001"  # TEST-NET-1: never this machine
    code = main([*GRID, "--ray-address", address, "--experiment", "remote"])
    _one_line_error(code, capsys.readouterr().err, "local path", "mlflow server", address)
    assert MlflowClient().get_experiment_by_name("remote") is None


def test_backend_ray_without_ray_says_how_to_install(monkeypatch, capsys, caplog) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    code = main([*GRID, "--backend", "ray", "--experiment", "noray"])
    _one_line_error(code, capsys.readouterr().err, "--backend ray", 'pip install "mosgym[ray]"')
    assert MlflowClient().get_experiment_by_name("noray") is None
    # auto falls back to running the trials in this process
    args = [*SIM, "--agents", "static-uni", "--experiment", "noray"]
    assert main(args) == 0
    assert "Ray is not installed" in caplog.text and "backend: sequential" in caplog.text


@pytest.mark.parametrize(
    "args, message",
    [
        ([*SIM, "--agents", "no-such-agent"], "agent no-such-agent: --agent no-such-agent"),
        ([*SIM, "--agents", "static-uni", "--seeds", "3-1"], "--seeds"),
        ([*SIM, "--agents", "static-uni", "--backend", "dask"], "--backend dask"),
        (["--agents", "static-uni"], "--envs and --agents are required"),
        (["--resume", "abc", "--agents", "x"], "drop --agents"),
        ([*SIM, "--agents", "static-uni", "--backend", "sequential", "--ray-address", "auto"],
         "--ray-address auto"),
        (["--resume", "0123abcd", "--backend", "sequential"], "--resume 0123abcd: no such"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_makes_no_runs(args, message, capsys) -> None:
    _one_line_error(main(args), capsys.readouterr().err, message)
    assert not _store_has_experiments()


@pytest.mark.slow
def test_local_ray_sweep_runs_the_same_trials(caplog) -> None:
    ray = pytest.importorskip("ray")
    t0 = time.perf_counter()
    assert main([*GRID, "--backend", "ray", "--experiment", "ray"]) == 0
    wall_ray = time.perf_counter() - t0
    assert "backend: ray (a local Ray" in caplog.text
    assert not ray.is_initialized()  # shut down after the sweep
    on_ray = _check_sweep("ray")
    assert main([*GRID, "--backend", "sequential", "--experiment", "seq"]) == 0
    in_process = _check_sweep("seq")
    for name in NAMES:  # same seeds, same numbers: Ray ran the same code
        a, b = on_ray[name].data.metrics, in_process[name].data.metrics
        assert a["final/dev_loss_mean"] == b["final/dev_loss_mean"]
    result = compare.compare(MlflowClient(), "ray", out=Path("cmp"), n_boot=200)
    assert {r.agent for r in result.rows} == {"mos-cossim", "static-uni"}
    print(f"local Ray 2x2 sweep: {wall_ray:.1f} s")


def _outcome(name: str, status: str, loss: float = 1.0) -> sweep_runs.TrialOutcome:
    error = "boom" if status == "FAILED" else ""
    return sweep_runs.TrialOutcome(name, "id", status, f"run-{name}", loss, 2.0, error)


def test_summary_table_and_one_compare_command_per_env() -> None:
    outcomes = [
        _outcome("sim-a__mos__s0", "FINISHED", 2.25),
        _outcome("sim-a__uni__s0", "SKIPPED", 2.5),
        _outcome("sim_b__mos__s0", "FAILED", math.nan),
        _outcome("sim_b__uni__s0", "FINISHED", 3.0),
    ]
    text = format_summary(SweepResult("P", "exp", "ray", outcomes))
    assert "| sim-a__mos__s0 | FINISHED | 2.2500 | 2.0 | run-sim-a__mos__s0 |" in text
    assert "| sim_b__mos__s0 | FAILED (boom) | - | 2.0 |" in text
    assert "3 of 4 trials finished" in text and "1 failed: rerun" in text
    assert "--runs run-sim-a__mos__s0 run-sim-a__uni__s0 --out compare/sim-a" in text
    assert "--runs run-sim_b__uni__s0 --out compare/sim_b" in text  # not the failed one


def test_a_trial_takes_a_gpu_when_its_model_runs_on_cuda() -> None:
    from mosgym.experiment.sweep_backends import RayBackend

    def trial(env: dict) -> sweep_runs.Trial:
        req = RunRequest(env=env, env_name="e", agent={"name": "a"}, seeds=[0], experiment="x")
        return sweep_runs.Trial(req, "id")

    backend = RayBackend(None, None)
    cuda, auto = {"model": {"device": "cuda"}}, {"model": {"device": "auto"}}
    sim = {"learner": "sim", "model": {"device": "cuda"}}
    assert [backend.needs_gpu(trial(e)) for e in (cuda, auto, sim)] == [True, False, False]
    backend.cluster_gpus = 8.0
    assert [backend.needs_gpu(trial(e)) for e in (cuda, auto, sim)] == [True, True, False]


def test_relative_store_paths_are_made_absolute_for_workers(tmp_path: Path) -> None:
    assert _absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert _absolute_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert _absolute_uri("mlruns") == f"{tmp_path}/mlruns"
    assert _absolute_uri("http://head:5000") == "http://head:5000"
