"""`python -m mosgym.run`: CLI errors, MLflow records (local store, real server, active run)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mosgym.experiment.request import parse_seeds
from mosgym.experiment.run import main
from tests.conftest import FAST_ENV, REPO

FAST_SETS = [arg for s in FAST_ENV for arg in ("--set", s)]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs write ./checkpoints: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def _cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mosgym.run", "--no-progress", *args],
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_parse_seeds() -> None:
    assert parse_seeds("3") == [3]
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,7") == [0, 2, 7]


def test_help_lists_configs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "skills-tiny" in out and "mos-cossim-ema" in out and "static-temp" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "no-such-env"], "no such config file"),
        (["--agent", "no-such-agent"], "no such config file"),
        (["--seeds", "4-1"], "--seeds"),
        (["--seeds", "a-b"], "--seeds"),
        (["--set", "train.total_stepz=10"], "unknown key 'total_stepz'"),
        (["--set", "train.batch_size=big"], "expected an integer"),
        (["--set", "agent.paramz.x=1"], "unknown key 'paramz'"),
        (["--agent", "dqn", "--set", "action.kind=continuous"], "action"),
        (["--steps", "7"], "multiple of train.interval"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, capsys) -> None:
    code = main(["--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("name: x\nkind: mos\nparams: {lr: fast}\n")
    res = _cli("--agent", str(bad), *FAST_SETS)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "lr" in res.stderr


def _runs(experiment: str) -> list:
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client.search_runs([exp.experiment_id])


def test_run_records_params_metrics_and_artifacts(capsys) -> None:
    code = main(
        [
            "--no-progress",
            "--agent",
            "mos-cossim",
            "--seeds",
            "0-1",
            "--experiment",
            "t1",
            *FAST_SETS,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    runs = _runs("t1")
    parent = [r for r in runs if r.data.tags.get("mosgym.kind") == "parent"]
    children = [r for r in runs if r.data.tags.get("mosgym.kind") == "run"]
    assert len(parent) == 1 and len(children) == 2
    # Agent first; the env joins the name because the experiment is not named after it.
    assert parent[0].info.run_name == "mos-cossim s0-1 @ skills-tiny"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert child.info.status == "FINISHED"
        assert child.info.run_name == f"mos-cossim s{child.data.tags['mosgym.seed']} @ skills-tiny"
        assert child.data.tags["mosgym.env"] == "skills-tiny"
        assert child.data.tags["mosgym.format"] == "2"
        assert child.data.params["env.train.total_steps"] == "6"
        assert child.data.params["agent.kind"] == "mos"
        assert child.data.tags["mosgym.git_commit"]
        # The summary table is the run's description in the UI.
        assert "dev loss (init -> final)" in child.data.tags["mlflow.note.content"]
    child = children[0]
    client = MlflowClient()
    names = [k for k in child.data.metrics if k.startswith("weight/")]
    assert len(names) >= 6
    hist = client.get_metric_history(child.info.run_id, "dev_loss_mean")
    assert [m.step for m in hist] == [0, 2, 4, 6]
    # Weights at the start of their interval, as prob_log.csv: no point at the end, T.
    weight = client.get_metric_history(child.info.run_id, names[0])
    assert sorted(m.step for m in weight) == [0, 2, 4]
    assert "final/dev_loss_mean" in child.data.metrics and "wall_time_s" in child.data.metrics
    assert "probe_skipped" not in child.data.metrics  # all-zero diagnostics are not logged
    # The parent: the same keys, each the mean over the seeds.
    mean = sum(c.data.metrics["final/dev_loss_mean"] for c in children) / 2
    assert parent[0].data.metrics["final/dev_loss_mean"] == pytest.approx(mean)
    assert not any(k.startswith("mean/") for k in parent[0].data.metrics)
    assert "mean" in parent[0].data.tags["mlflow.note.content"]
    arts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"config.yaml", "prob_log.csv", "plots"} <= arts
    plots = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
    assert plots == {"plots/mixture.png", "plots/dev_loss.png"}
    csv_path = client.download_artifacts(child.info.run_id, "prob_log.csv")
    rows = Path(csv_path).read_text().strip().splitlines()
    assert len(rows) == 1 + 3 and rows[0].startswith("step,")
    first = [float(x) for x in rows[1].split(",")[1:]]
    at_zero = [m.value for m in weight if m.step == 0]
    assert at_zero == [pytest.approx(first[0], abs=1e-6)]  # the CSV and the metric agree
    exp_id = child.info.experiment_id
    assert child.info.run_id in out and f"#/experiments/{exp_id}/runs" in out
    exp = client.get_experiment(exp_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_static_agents_log_no_rewards_and_few_params() -> None:
    assert main(["--no-progress", "--agent", "static-uni", "--experiment", "skills-tiny",
                 *FAST_SETS]) == 0  # fmt: skip
    (run,) = _runs("skills-tiny")
    assert run.info.run_name == "static-uni s0"  # the experiment names the env
    assert not [k for k in run.data.metrics if k.startswith("reward")]
    params = run.data.params
    assert params["env.skills"] == "copy,reverse,sort,count,lookup,add"
    assert not [k for k in params if k.startswith(("env.skills.", "env.sim"))]
    assert "null" not in params.values() and "{}" not in params.values()
    assert "env.train.probe_size" not in params  # no reward: no probes
    assert params["env.model.hidden_size"] == "32"  # set by --set: logged
    assert "env.model.arch" not in params  # the default, not set: not logged
    assert len(params) < 30


def test_run_nests_under_an_already_active_run(capsys) -> None:
    mlflow.set_experiment("t2")
    with mlflow.start_run(run_name="outer") as outer:
        code = main(["--no-progress", "--agent", "static-uni", "--experiment", "t2", *FAST_SETS])
        assert code == 0
        assert mlflow.active_run().info.run_id == outer.info.run_id
    runs = _runs("t2")
    inner = [r for r in runs if r.info.run_id != outer.info.run_id]
    assert len(inner) == 1
    assert inner[0].data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert inner[0].info.status == "FINISHED"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_against_a_real_mlflow_server(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                MlflowClient(uri).search_experiments(max_results=1)
                break
            except Exception:
                time.sleep(1)
        else:
            pytest.fail("mlflow server did not come up in 90 s")
        res = _cli(
            "--agent",
            "static-prop",
            "--experiment",
            "srv",
            *FAST_SETS,
            env={"MLFLOW_TRACKING_URI": uri},
        )
        assert res.returncode == 0, res.stderr
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("srv")
        (run,) = client.search_runs([exp.experiment_id])
        assert run.info.status == "FINISHED"
        assert "final/dev_loss_mean" in run.data.metrics
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"prob_log.csv"}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_unreachable_tracking_server_fails_before_training() -> None:
    port = _free_port()  # nothing listens there
    t0 = time.time()
    res = _cli(*FAST_SETS, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, timeout=120)
    assert res.returncode == 2
    assert "not reachable" in res.stderr and "Traceback" not in res.stderr
    assert time.time() - t0 < 60


@pytest.mark.slow
def test_ctrl_c_marks_the_run_killed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    model_sets = [a for s in FAST_ENV if s.startswith("model.") for a in ("--set", s)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mosgym.run",
            "--no-progress",
            "--agent",
            "static-uni",
            "--experiment",
            "kill",
            *model_sets,
            "--set",
            "train.total_steps=4000",
            "--set",
            "train.interval=2",
            "--set",
            "train.batch_size=4",
        ],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(uri)
    deadline = time.time() + 120
    run_id = None
    while time.time() < deadline and run_id is None:
        time.sleep(1)
        try:
            exp = client.get_experiment_by_name("kill")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if runs and client.get_metric_history(runs[0].info.run_id, "dev_loss_mean"):
                run_id = runs[0].info.run_id
        except Exception:
            continue
    assert run_id is not None, "the run never logged a step"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert client.get_run(run_id).info.status == "KILLED"


AGENT_YAMLS = sorted((REPO / "agents").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", AGENT_YAMLS, ids=lambda p: p.stem)
def test_every_agent_yaml_runs_end_to_end(path: Path, tmp_path: Path) -> None:
    res = _cli(
        "--agent",
        str(path),
        "--experiment",
        "smoke",
        *FAST_SETS,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "dev loss" in res.stdout and "run " in res.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert run.info.status == "FINISHED" and "final/dev_loss_mean" in run.data.metrics
