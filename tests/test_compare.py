"""`python -m mosgym.compare` on synthetic MLflow runs whose statistics are known by hand.

One sqlite store per module (creating it is the slow part); each run is one log_batch.
Steps 0..40 every 10; skills code and math; reference static-temp, whose mean curve ends at 2.0.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from mosgym.analysis import compare, dashboard, report
from mosgym.analysis import plots as compare_plots
from mosgym.analysis.stats import TOO_FEW_RUNS_NOTE, stratified_bootstrap_ci
from mosgym.errors import MosgymError
from mosgym.records.runs import (
    duplicate_seed_notes,
    mixture_paths,
    skill_names,
    stack_curves,
    to_run_data,
)

STEPS = [0, 10, 20, 30, 40]
SKILLS = ("code", "math")
N_BOOT = "200"
CURVES = {
    "static-temp": [
        [4, 3.5, 3.0, 2.5, 2.0],  # reaches 2.0 at 40 -> speed-up 1
        [4, 3.6, 3.2, 2.8, 2.4],  # never -> 0
        [4, 3.4, 2.8, 2.2, 1.6],  # 30 + 0.2/0.6*10 = 33.33 -> 1.2
    ],
    "mos": [
        [4, 3.0, 2.0, 1.5, 1.0],  # 20 -> 2
        [4, 3.0, 2.5, 2.0, 1.5],  # 30 -> 4/3
        [4, 2.5, 1.5, 1.2, 1.0],  # 10 + 0.5/1*10 = 15 -> 8/3
        [4, 3.8, 3.6, 3.4, 3.2],  # never -> 0
    ],
    "uni": [[4, 3.7, 3.4, 3.1, 2.8]],
}
ACCURACY = {"static-temp": [0.2, 0.3, 0.4], "mos": [0.5, 0.1, 0.6, 0.7], "uni": [0.3]}
WEIGHTS = {"static-temp": [0.6, 0.4], "mos": [0.5, 0.5], "uni": [0.5, 0.5]}


def log_run(
    client: MlflowClient,
    exp_id: str,
    agent: str,
    seed: int,
    curve: list[float],
    skills: tuple[str, ...] = SKILLS,
    total_steps: int | None = 40,
    kind: str = "run",
    status: str = "FINISHED",
    accuracy: float = 0.5,
    weights: list[float] | None = None,
    parent: str | None = None,
    env: str | None = None,
) -> str:
    """A run as mosgym.run logs it: tags, params, per-step and final metrics, in one batch."""
    tags = {"mosgym.agent": agent, "mosgym.seed": str(seed), "mosgym.kind": kind}
    if env:
        tags["mosgym.env"] = env
    if parent:
        tags["mlflow.parentRunId"] = parent
    rid = client.create_run(exp_id, tags=tags, run_name=f"{agent}__s{seed}").info.run_id
    ts = int(time.time() * 1000)
    metrics = []
    for k, (step, v) in enumerate(zip(STEPS, curve, strict=True)):
        metrics.append(Metric("dev_loss_mean", v, ts, step))
        for j, s in enumerate(skills):  # code is 0.5 above the mean, math 0.5 below
            metrics.append(Metric(f"dev_loss/{s}", v + (0.5 if j == 0 else -0.5), ts, step))
            if k > 0:
                w = (weights or [1 / len(skills)] * len(skills))[j]
                metrics.append(Metric(f"weight/{s}", w, ts, step))
    finals = {"final/dev_loss_mean": curve[-1], "final/dev_loss_worst": curve[-1] + 0.5}
    finals |= {"final/accuracy_mean": accuracy, f"final/dev_loss/{skills[0]}": curve[-1] + 0.5}
    metrics += [Metric(k, v, ts, 0) for k, v in finals.items()]
    params = [Param(f"env.skills.{i}.name", s) for i, s in enumerate(skills)]
    if total_steps is not None:
        params.append(Param("env.train.total_steps", str(total_steps)))
    client.log_batch(rid, metrics=metrics, params=params)
    if status != "RUNNING":
        client.set_terminated(rid, status)
    return rid


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A sqlite store with the main experiment 'skills' and the ones compare must refuse."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)  # explicit URI: conftest gives every test its own default store
    exp = client.create_experiment("skills")
    parent = log_run(client, exp, "mos", -1, CURVES["mos"][0], kind="parent", total_steps=999)
    ids: dict[str, list[str]] = {}
    for agent, curves in CURVES.items():
        for seed, curve in enumerate(curves):
            rid = log_run(
                client, exp, agent, seed, curve, accuracy=ACCURACY[agent][seed],
                weights=WEIGHTS[agent], parent=parent if agent == "mos" else None,
            )  # fmt: skip
            ids.setdefault(agent, []).append(rid)
    log_run(client, exp, "static-temp", 9, [9.0] * 5, status="FAILED")
    skills_exp = client.create_experiment("other-skills")
    log_run(client, skills_exp, "static-temp", 0, CURVES["static-temp"][0])
    log_run(client, skills_exp, "mos", 0, CURVES["mos"][0], skills=("code", "chat"))
    budget_exp = client.create_experiment("other-budget")
    log_run(client, budget_exp, "static-temp", 0, CURVES["static-temp"][0])
    log_run(client, budget_exp, "mos", 0, CURVES["mos"][0], total_steps=80)
    empty = client.create_experiment("empty")
    log_run(client, empty, "mos", 0, CURVES["mos"][0], kind="parent")
    return {"uri": uri, "client": client, "root": root, "ids": ids, "parent": parent, "exp": exp}


@pytest.fixture(scope="module")
def result(store) -> tuple[compare.Comparison, dict[tuple[str, str], dict[str, str]]]:
    out = store["root"] / "out"
    res = compare.compare(store["client"], "skills", out=out, n_boot=int(N_BOOT))
    with open(out / compare.CSV_NAME, newline="") as f:
        table = {(r["agent"], r["metric"]): r for r in csv.DictReader(f)}
    return res, table


def test_csv_matches_hand_computed_iqms_and_speedups(result) -> None:
    _, table = result

    def value(agent: str, metric: str, col: str = "iqm") -> float:
        return float(table[(agent, metric)][col])

    # IQM of 4 seeds = mean of the middle two; of 3 seeds = their mean (nothing trimmed).
    assert value("mos", "final_dev_loss_mean") == pytest.approx((1.0 + 1.5) / 2)
    assert value("static-temp", "final_dev_loss_mean") == pytest.approx(2.0)
    assert value("mos", "final_dev_loss_worst") == pytest.approx(1.75)
    assert value("mos", "final_accuracy_mean") == pytest.approx((0.5 + 0.6) / 2)
    assert value("uni", "final_dev_loss_mean") == pytest.approx(2.8)
    # Normalised trapezoid areas: temp 3.0, 3.2, 2.8; mos 2.25, 2.5625, 1.925, 3.6.
    assert value("static-temp", "auc_dev_loss_mean") == pytest.approx(3.0)
    assert value("mos", "auc_dev_loss_mean") == pytest.approx((2.25 + 2.5625) / 2)
    # Speed-ups to 2.0 (temp's mean curve hits it at 40): temp 1, 0, 1.2; mos 2, 4/3, 8/3, 0.
    assert value("static-temp", "speedup") == pytest.approx((1 + 0 + 1.2) / 3)
    assert value("mos", "speedup") == pytest.approx((4 / 3 + 2) / 2)
    assert value("uni", "speedup") == 0.0
    assert value("mos", "final_dev_loss/code") == pytest.approx(1.75)
    # P(mos run has lower loss than a temp run): 1.0 and 1.0 beat all 3, 1.5 all 3, 3.2 none.
    assert value("mos", "final_dev_loss_mean", "poi_vs_reference") == pytest.approx(9 / 12)
    assert table[("static-temp", "speedup")]["poi_vs_reference"] == ""
    assert table[("mos", "speedup")]["reference"] == "static-temp"


def test_intervals_are_the_stratified_bootstrap_of_the_per_run_scores(result) -> None:
    _, table = result
    row = table[("mos", "final_dev_loss_mean")]
    ci = stratified_bootstrap_ci(np.array([1.0, 1.5, 1.0, 3.2]), n_boot=int(N_BOOT))
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((ci.lo, ci.hi))
    assert float(row["ci_low"]) <= float(row["iqm"]) <= float(row["ci_high"])
    assert row["n_seeds"] == "4" and row["higher_is_better"] == "0"
    assert 0 <= float(row["poi_ci_low"]) <= 0.75 <= float(row["poi_ci_high"]) <= 1


def test_one_seed_gets_the_too_few_note_not_an_interval(result) -> None:
    res, table = result
    row = table[("uni", "final_dev_loss_mean")]
    assert row["ci_low"] == row["ci_high"] == "" and row["note"] == TOO_FEW_RUNS_NOTE
    # uni's 2.8 is above all of temp's 2.0, 2.4, 1.6: it never improves on them.
    assert row["poi_ci_low"] == "" and row["poi_vs_reference"] == "0.0"
    uni_line = next(line for line in res.markdown.splitlines() if line.startswith("| uni |"))
    assert uni_line.rstrip(" |").endswith(TOO_FEW_RUNS_NOTE) and "2.800*" in uni_line


def test_markdown_has_a_row_per_agent_and_notes_the_skipped_run(result) -> None:
    res, _ = result
    lines = res.markdown.splitlines()
    first_table = lines[lines.index(next(x for x in lines if x.startswith("| agent"))) :]
    first_table = first_table[: first_table.index("")]
    assert [x.split("|")[1].strip() for x in first_table[2:]] == ["mos", "static-temp", "uni"]
    assert "| mos | 4 | 1.250 [" in res.markdown
    assert "status FAILED, not FINISHED" in res.markdown  # the seed-9 run, skipped
    assert (res.out / compare.MD_NAME).read_text() == res.markdown


def test_plots_are_png_files(result) -> None:
    res, _ = result
    for name in compare.PLOT_NAMES:
        data = (res.out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_comparison_run_is_logged_with_its_files(store, result) -> None:
    res, _ = result
    client = store["client"]
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.info.experiment_id == store["exp"]
    assert run.data.tags["mosgym.kind"] == "comparison"
    assert run.data.params["reference"] == "static-temp" and run.data.params["n_runs"] == "8"
    names = {a.path for a in client.list_artifacts(res.run_id)}
    page = {dashboard.NAME} if dashboard.available() else set()  # an optional extra
    assert names == {compare.CSV_NAME, compare.MD_NAME, *compare.PLOT_NAMES, *page}
    assert mlflow.active_run() is None


def test_dashboard_leaderboard_and_curves(store, result) -> None:
    pytest.importorskip("plotly")
    res, _ = result
    page = (res.out / dashboard.NAME).read_text()
    board = page[page.index('<table class="leaderboard">') : page.index("</table>")]
    rows = board.split("<tr>")[2:]  # after the header
    assert [r.split("<b>")[1].split("</b>")[0] for r in rows] == ["mos", "static-temp", "uni"]
    assert "1.250<small> [" in rows[0] and "<td>0.7500</td>" in rows[0]  # IQM, P(better)
    assert "<td>reference</td>" in rows[1]
    assert page.count("plotly-graph-div") >= 1 and "dev loss code" in page
    colors = compare_plots.agent_colors(["uni", "mos", "static-temp"])
    assert f'"color":"{colors["mos"]}"' in page  # the PNGs' colour for the agent


def test_agent_colours_are_one_per_agent_whatever_the_order() -> None:
    a = compare_plots.agent_colors(["uni", "mos", "static-temp"])
    assert a == compare_plots.agent_colors(["static-temp", "uni", "mos"])
    assert len(set(a.values())) == 3
    many = compare_plots.agent_colors([f"agent{i:02d}" for i in range(20)])
    assert len(set(many.values())) == 20


def test_comparison_run_logs_its_headline_numbers_as_metrics(store, result) -> None:
    res, table = result
    run = store["client"].get_run(res.run_id)
    m = run.data.metrics
    assert m["final_dev_loss_mean/mos/iqm"] == pytest.approx((1.0 + 1.5) / 2)
    row = table[("mos", "final_dev_loss_mean")]
    assert m["final_dev_loss_mean/mos/ci_low"] == pytest.approx(float(row["ci_low"]))
    assert m["final_dev_loss_mean/mos/ci_high"] == pytest.approx(float(row["ci_high"]))
    assert m["final_dev_loss_mean/mos/p_improvement"] == pytest.approx(9 / 12)
    assert "final_dev_loss_mean/static-temp/p_improvement" not in m  # the reference itself
    assert "final_dev_loss_mean/uni/ci_low" not in m  # one seed: no interval (NaN)
    assert m["speedup/mos/iqm"] == pytest.approx((4 / 3 + 2) / 2)
    assert not [k for k in m if "/code" in k or "/math" in k]  # per-skill rows stay in files
    assert run.data.tags["mlflow.note.content"].startswith(res.markdown[:200])


def test_weights_read_alike_from_old_and_new_records(store) -> None:
    """Format 1 logged a uniform point at step 0 and each interval's mixture at its end;
    format 2 (tag mosgym.format=2) logs it at the interval's start: one mixture path."""
    client = store["client"]
    exp = client.create_experiment("formats")
    path = [[0.9, 0.1], [0.7, 0.3], [0.5, 0.5], [0.2, 0.8]]  # intervals starting 0, 10, 20, 30
    ts = int(time.time() * 1000)
    read = []
    for tags, params, steps, rows in (
        ({}, {"env.skills.0.name": "code", "env.skills.1.name": "math"}, STEPS, [[0.5] * 2, *path]),
        ({"mosgym.format": "2"}, {"env.skills": "code,math"}, STEPS[:-1], path),
    ):
        tags = {"mosgym.agent": "mos", "mosgym.seed": "0", "mosgym.kind": "run", **tags}
        rid = client.create_run(exp, tags=tags).info.run_id
        metrics = [Metric("dev_loss_mean", 1.0, ts, step) for step in STEPS]
        metrics += [
            Metric(f"weight/{s}", w[j], ts, step)
            for step, w in zip(steps, rows, strict=True)
            for j, s in enumerate(SKILLS)
        ]
        client.log_batch(rid, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
        read.append(to_run_data(client, client.get_run(rid)))
    a, b = read
    assert a.skills == b.skills == SKILLS
    assert a.weight_steps.tolist() == b.weight_steps.tolist() == STEPS[:-1]
    assert a.weights.tolist() == b.weights.tolist() == path


def test_main_prints_the_table_and_leaves_a_callers_active_run_alone(
    store, tmp_path, capsys
) -> None:
    mlflow.set_tracking_uri(store["uri"])  # conftest resets it after the test
    mlflow.set_experiment("caller")
    with mlflow.start_run() as mine:
        argv = ["--experiment", "skills", "--out", str(tmp_path / "c"), "--n-boot", N_BOOT]
        argv += ["--agents", "mos", "uni", "--tracking-uri", store["uri"]]
        assert compare.main(argv) == 0
        assert mlflow.active_run().info.run_id == mine.info.run_id
    out = capsys.readouterr().out
    # Without a *temp* agent the reference is the first by name; earlier comparison runs skipped.
    assert out == (tmp_path / "c" / compare.MD_NAME).read_text()
    assert "Reference agent: `mos`" in out and "static-temp" not in out
    assert mlflow.active_run() is None


def test_runs_option_expands_a_parent_run_and_honours_reference(store, tmp_path) -> None:
    ids = [store["parent"], store["ids"]["uni"][0]]
    res = compare.compare(
        store["client"], "skills", run_ids=ids, reference="uni", out=tmp_path / "r", n_boot=200
    )
    agents = {(r.agent, r.n) for r in res.rows if r.metric.key == "final_dev_loss_mean"}
    assert agents == {("mos", 4), ("uni", 1)}
    speed = {r.agent: r.iqm for r in res.rows if r.metric.key == "speedup"}
    # Target 2.8, reached by uni at 40; mos at 12, 14, 8 and never: middle two are 40/14, 40/12.
    assert speed["uni"] == 1.0 and speed["mos"] == pytest.approx((40 / 14 + 40 / 12) / 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--experiment", "other-skills"], "different skill sets"),
        (["--experiment", "other-budget"], "different budgets (env.train.total_steps)"),
        (["--experiment", "empty"], "no finished runs with tag mosgym.kind=run"),
        (["--experiment", "nope"], "no such MLflow experiment"),
        (["--experiment", "skills", "--reference", "ppo"], "--reference ppo"),
        (["--experiment", "skills", "--agents", "ppo"], "--agents ppo"),
        (["--experiment", "skills", "--runs", "0" * 32], "no such MLflow run"),
    ],
)
def test_refusals_are_one_line_errors(store, tmp_path, capsys, argv, message) -> None:
    out = tmp_path / "refused"
    assert compare.main([*argv, "--out", str(out), "--tracking-uri", store["uri"]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mosgym: error: ") and message in err and "Traceback" not in err
    assert err.count("\n") == 1 and not out.exists()


def test_refusal_raises_mosgym_error(store) -> None:
    with pytest.raises(MosgymError, match="different skill sets.*code, math.*code, chat"):
        compare.compare(store["client"], "other-skills")


def test_write_atomically_replaces_whole_or_not_at_all(tmp_path) -> None:
    out = tmp_path / "o"
    compare.write_atomically(out, lambda d: (d / "a.txt").write_text("1"))
    compare.write_atomically(out, lambda d: (d / "b.txt").write_text("2"))
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]

    def broken(d: Path) -> None:
        (d / "half.txt").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        compare.write_atomically(out, broken)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no temp folder left


def test_choose_reference() -> None:
    assert compare.choose_reference(["mos", "static-temp", "uni"], None) == "static-temp"
    assert compare.choose_reference(["uni", "mos"], None) == "mos"
    assert compare.choose_reference(["uni", "mos"], "uni") == "uni"


def test_skill_names_from_params_in_index_order_else_metric_keys() -> None:
    params = {"env.skills.1.name": "math", "env.skills.0.name": "code", "env.train.lr": "1"}
    assert skill_names(params, {}) == ("code", "math")
    assert skill_names({"env.skills": "math,code"}, {}) == ("math", "code")  # format 2
    metrics = {"dev_loss/b": 1.0, "dev_loss/a": 1.0, "final/dev_loss/c": 1.0, "dev_loss_mean": 1}
    assert skill_names({}, metrics) == ("a", "b")


def test_stack_curves_and_mixture_paths_by_hand() -> None:
    grid, v = stack_curves(
        [(np.array([0.0, 10.0]), np.array([1.0, 3.0])), (np.array([5.0]), np.array([7.0]))]
    )
    assert grid.tolist() == [0, 5, 10] and v.tolist() == [[1, 2, 3], [7, 7, 7]]

    class R:  # the fields mixture_paths reads
        def __init__(self, w: list[list[float]], skills: tuple[str, ...]) -> None:
            self.agent, self.skills = "a", skills
            self.weight_steps, self.weights = np.array([10.0, 20.0]), np.array(w)

    runs = [R([[0.2, 0.8], [0.4, 0.6]], ("x", "y")), R([[0.6, 0.4], [0.2, 0.8]], ("y", "x"))]
    steps, mean = mixture_paths(runs, ["a"])["a"]  # type: ignore[arg-type]
    assert steps.tolist() == [10, 20] and mean == pytest.approx(np.array([[0.3, 0.7], [0.6, 0.4]]))


def test_curve_band_is_the_iqm_with_a_band_around_it() -> None:
    v = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0], [100.0, 2.0]])
    line, lo, hi = compare_plots.curve_band(v, n_boot=300)
    assert line.tolist() == [4.0, 2.0]  # middle two of 1, 3, 5, 100
    assert lo[0] < 4.0 < hi[0] and lo[1] == hi[1] == 2.0
    one = compare_plots.curve_band(v[:1])
    assert all(x.tolist() == [1.0, 2.0] for x in one)
    assert not math.isnan(float(lo[0]))


def test_duplicate_seeds_are_noted() -> None:
    class R:
        def __init__(self, agent: str, seed: str) -> None:
            self.agent, self.seed = agent, seed

    runs = [R("mos", "0"), R("mos", "0"), R("mos", "1"), R("uni", "0")]
    assert duplicate_seed_notes(runs) == ["mos has 2 runs with seed 0; each counts"]  # type: ignore[arg-type]


def test_mean_curve_speedups_give_the_reference_exactly_one(store, result) -> None:
    res, _ = result
    # Mean curves: temp [4, 3.5, 3, 2.5, 2] reaches 2.0 at 40; mos [4, 3.075, 2.4, 2.025, 1.675]
    # at 30 + 0.025 / 0.35 * 10; uni never does.
    runs = compare.load_runs(store["client"], "skills", None, None).runs
    target = compare.find_target(runs, "static-temp")
    got = compare.mean_curve_speedups(runs, ["static-temp", "mos", "uni"], target)
    assert got["static-temp"] == (pytest.approx(40.0), pytest.approx(1.0))
    mos_steps = 30 + 0.025 / 0.35 * 10
    assert got["mos"] == (pytest.approx(mos_steps), pytest.approx(40 / mos_steps))
    assert got["uni"] == (math.inf, 0.0)
    assert "| static-temp | 40.00 | 1.000 |" in res.markdown
    assert "Speed-up of the mean curves" in res.markdown


def test_numbers_in_the_report_have_no_bare_trailing_point() -> None:
    assert report._num(1000.0) == "1000"
    assert report._num(0.628) == "0.6280"
    assert report._num(math.nan) == "-"


def test_env_filter_separates_the_envs_of_one_sweep(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("sweep")
    for seed in range(2):
        for agent in ("static-temp", "mos"):
            log_run(client, exp, agent, seed, CURVES[agent][seed], env="real")
            log_run(client, exp, agent, seed, CURVES[agent][seed], env="sim", total_steps=80)
    with pytest.raises(MosgymError, match="budget|total_steps"):
        compare.compare(client, "sweep", out=tmp_path / "all", n_boot=200)
    res = compare.compare(client, "sweep", out=tmp_path / "real", n_boot=200, env="real")
    assert {r.n for r in res.rows} == {2}
    with pytest.raises(MosgymError, match="env nope"):
        compare.compare(client, "sweep", out=tmp_path / "x", n_boot=200, env="nope")
