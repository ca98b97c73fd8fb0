"""The run archive: export -> the readers give the same numbers as MLflow; export -> import ->
export gives the same bytes; a damaged or foreign archive is one error line."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from mosgym.analysis import compare
from mosgym.records.archive import ARCHIVED_ID_TAG, export, export_main, import_archive
from mosgym.records.archive import import_main as import_cli
from mosgym.records.archive_reader import ArchiveReader
from mosgym.sim import fidelity
from mosgym.sim.calibrate import main as calibrate_main
from mosgym.sim.calibrate import read_runs
from tests.test_calibrate import MIXES, NAMES
from tests.test_calibrate import _log_run as log_calibration_run
from tests.test_compare import CURVES, WEIGHTS, log_run

REPO = Path(__file__).resolve().parents[1]
CONFIG = b"name: skills\ntrain:\n  total_steps: 40  # the resolved config, byte for byte\n"
CALIB_CONFIG = "env:\n  train: {total_steps: 999, probe_size: 24}\nagent: {name: mix}\n"


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root by relative path (what `git add` would see)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _new_store(path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{path}")


def _experiment(client: MlflowClient, name: str, root: Path) -> str:
    # An explicit artifact folder: the default (./mlruns) would land in the working directory.
    return client.create_experiment(name, artifact_location=str(root / "artifacts" / name))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """'skills' as mosgym.compare's tests log it (a parent with children, a failed run), plus
    a comparison run, a config artifact, a run whose steps restart (two episodes) and a NaN;
    'real' and 'sim' for fidelity; 'calib' for calibrate. Then exported."""
    root = tmp_path_factory.mktemp("archive")
    client = _new_store(root / "mlflow.db")
    exp = _experiment(client, "skills", root)
    parent = log_run(client, exp, "mos", -1, CURVES["mos"][0], kind="parent", total_steps=999)
    for agent, curves in CURVES.items():
        for seed, curve in enumerate(curves):
            rid = log_run(
                client, exp, agent, seed, curve, weights=WEIGHTS[agent],
                parent=parent if agent == "mos" else None,
            )  # fmt: skip
            time.sleep(0.002)  # distinct start times: MLflow orders runs by them
    client.log_text(rid, CONFIG.decode(), "config.yaml")
    log_run(client, exp, "static-temp", 9, [9.0] * 5, status="FAILED")
    log_run(client, exp, "cmp", 0, [1.0] * 5, kind="comparison")
    episodes = log_run(client, exp, "odd", 0, [5.0] * 5, kind="odd")
    client.log_batch(episodes, metrics=[Metric("odd", v, 10**12 + i, i % 3) for i, v in
                                        enumerate([1.0, 2.0, 3.0, 0.5, math.nan])])  # fmt: skip
    for name, offset in (("real", 0.0), ("sim", 10.0)):
        e = _experiment(client, name, root)
        for k, agent in enumerate(("a", "b", "c", "d")):
            for seed in range(2):
                rid = log_run(client, e, agent, seed, [5, 4, 3, 2, offset + k + 0.1 * seed])
                client.log_metric(rid, "wall_time_s", 50.0 + 10 * seed + k / 3)
    calib = _experiment(client, "calib", root)
    for i, mix in enumerate(MIXES[:3]):
        rid = log_calibration_run(client, calib, NAMES, mix, seed=i, agent=f"mix{i}")
        # A static run logs no probe_size param: calibrate reads it from here (the params win
        # where both say something: total_steps stays the param's 600).
        client.log_text(rid, CALIB_CONFIG, "config.yaml")
    archive = root / "archive"
    export(client, ["skills", "real", "sim", "calib"], archive)
    return {"client": client, "root": root, "archive": archive, "parent": parent}


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # anything MLflow writes by default stays out of the repo


# -------------------------------------------------------------------------------- same numbers


@pytest.mark.parametrize(
    "select",
    [{}, {"agents": ["static-temp", "mos"]}, {"run_ids": "parent"}],
    ids=["all", "agents", "parent-run"],
)
def test_compare_reads_an_archive_to_the_last_digit(store, tmp_path: Path, select) -> None:
    if select.get("run_ids") == "parent":
        select = {"run_ids": [store["parent"]]}
    kw = {"n_boot": 200, **select}
    mlflow_side = compare.compare(store["client"], "skills", out=tmp_path / "m", **kw)
    archive_side = compare.compare(
        ArchiveReader(store["archive"]), "skills", out=tmp_path / "a", **kw
    )
    assert archive_side.markdown == mlflow_side.markdown
    for name in (compare.CSV_NAME, compare.MD_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "m" / name).read_bytes()
    if not select:  # the failed run is archived, and noted as compare notes it
        assert "status FAILED" in archive_side.markdown
    assert archive_side.run_id == ""  # read-only: no comparison run is logged anywhere


def test_compare_cli_prints_the_same_table(store, capsys) -> None:
    uri = f"sqlite:///{store['root']}/mlflow.db"
    args = ["--experiment", "skills", "--n-boot", "200", "--agents", "mos", "uni", "static-temp"]
    assert compare.main([*args, "--tracking-uri", uri, "--out", "m"]) == 0
    from_mlflow = capsys.readouterr().out
    assert compare.main([*args, "--archive", str(store["archive"]), "--out", "a"]) == 0
    out, err = capsys.readouterr()
    assert out == from_mlflow and "read from an archive" in err
    assert Path("a", compare.CSV_NAME).read_bytes() == Path("m", compare.CSV_NAME).read_bytes()


def test_fidelity_and_calibrate_read_an_archive_to_the_last_digit(store) -> None:
    agents = ["a", "b", "c", "d"]
    got = fidelity.measure(ArchiveReader(store["archive"]), "real", "sim", agents)
    want = fidelity.measure(store["client"], "real", "sim", agents)
    assert fidelity.markdown(got, "real", "sim") == fidelity.markdown(want, "real", "sim")
    assert got.real.tolist() == want.real.tolist() and got.spearman == want.spearman
    got_c = read_runs("calib", archive=str(store["archive"]))
    want_c = read_runs("calib", f"sqlite:///{store['root']}/mlflow.db")
    assert len(got_c.runs) == len(want_c.runs) == 3
    assert (got_c.skill_names, got_c.train, got_c.tokens_per_example) == (
        want_c.skill_names, want_c.train, want_c.tokens_per_example,
    )  # fmt: skip
    assert got_c.train == {"total_steps": 600, "interval": 30, "batch_size": 16, "probe_size": 24}
    np.testing.assert_array_equal(got_c.train_sizes, want_c.train_sizes)
    for g, w in zip(got_c.runs, want_c.runs, strict=True):
        assert (g.run_id, g.group) == (w.run_id, w.group)
        for field in ("steps", "examples", "dev_loss"):
            np.testing.assert_array_equal(getattr(g, field), getattr(w, field))


def test_histories_keep_order_repeats_and_nan(store) -> None:
    """A key whose steps restart keeps its logging order; NaN survives; latest value as MLflow."""
    reader, client = ArchiveReader(store["archive"]), store["client"]
    run = reader.search_runs([reader.get_experiment_by_name("skills").experiment_id],
                             "tags.`mosgym.kind` = 'odd'")[0]  # fmt: skip
    got = [(m.step, m.value) for m in reader.get_metric_history(run.info.run_id, "odd")]
    assert got[:4] == [(0, 1.0), (1, 2.0), (2, 3.0), (0, 0.5)] and math.isnan(got[4][1])
    assert run.data.metrics["odd"] == client.get_run(run.info.run_id).data.metrics["odd"] == 3.0


# -------------------------------------------------------------------------------- the files


def test_archive_layout_and_what_is_left_out(store) -> None:
    archive = store["archive"]
    runs = sorted(p.name for p in (archive / "skills").iterdir() if p.is_dir())
    assert len(runs) == 1 + 8 + 1 + 1  # parent, per-seed runs, failed, odd; no comparison run
    assert not any(r.startswith("cmp") for r in runs)
    configs = list((archive / "skills").rglob("config.yaml"))
    assert [c.read_bytes() for c in configs] == [CONFIG]
    one = next((archive / "skills").glob("mos__s1__*"))
    info = json.loads((one / "run.json").read_text())
    assert info["tags"]["mlflow.parentRunId"] == store["parent"] and info["status"] == "FINISHED"
    assert info["metrics"]["final/dev_loss_mean"] == CURVES["mos"][1][-1]
    text = gzip.decompress((one / "metrics.csv.gz").read_bytes()).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["key", "step", "value"]
    assert [r for r in rows if r[0] == "dev_loss_mean"] == [
        ["dev_loss_mean", str(s), repr(float(v))]
        for s, v in zip((0, 10, 20, 30, 40), CURVES["mos"][1], strict=True)
    ]


def test_export_is_deterministic_and_import_round_trips(store, tmp_path: Path) -> None:
    archive = store["archive"]
    again = tmp_path / "again"
    export(store["client"], ["skills", "real", "sim", "calib"], again)
    assert _tree(again) == _tree(archive)

    target = _new_store(tmp_path / "other.db")
    for name in ("skills", "real", "sim", "calib"):  # artifacts into tmp, not ./mlruns
        _experiment(target, name, tmp_path)
    done = {name: (n, there) for name, n, there in import_archive(target, archive)}
    assert done == {"skills": (11, 0), "real": (8, 0), "sim": (8, 0), "calib": (3, 0)}
    exp = target.get_experiment_by_name("skills").experiment_id
    runs = target.search_runs([exp])
    new_parent = next(r for r in runs if r.data.tags.get("mosgym.kind") == "parent")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == new_parent.info.run_id]
    assert len(children) == 4 and store["parent"] not in {r.info.run_id for r in runs}
    assert new_parent.data.tags[ARCHIVED_ID_TAG] == store["parent"]
    old = store["client"].get_run(store["parent"])
    assert (new_parent.info.run_name, new_parent.info.start_time, new_parent.data.params) == (
        old.info.run_name, old.info.start_time, old.data.params,
    )  # fmt: skip
    assert {r.info.status for r in runs} == {"FINISHED", "FAILED"}
    hist = target.get_metric_history(children[0].info.run_id, "dev_loss_mean")
    assert [m.step for m in hist] == [0, 10, 20, 30, 40]

    exported = tmp_path / "exported"
    export(target, ["skills", "real", "sim", "calib"], exported)
    assert _tree(exported) == _tree(archive)
    # Once more: every run is there already, so nothing is duplicated.
    assert [(n, m) for _, n, m in import_archive(target, archive, ["skills"])] == [(0, 11)]


# -------------------------------------------------------------------------------- bad input


def _damage(archive: Path, how: str) -> str:
    """Break a copy of the archive one way; the words the error line must contain."""
    run = next((archive / "skills").glob("uni__s0__*"))  # a run compare reads in full
    info = json.loads((run / "run.json").read_text())
    if how == "bad-json":
        (run / "run.json").write_text('{"format": "mosgym-run", "version": 1,')
        return "not valid JSON"
    if how == "foreign-file":
        (run / "run.json").write_text(json.dumps({"artifact_uri": "mlruns/0", "run_id": "x"}))
        return "not a mosgym archive file"
    if how == "wrong-version":
        (run / "run.json").write_text(json.dumps({**info, "version": 7}))
        return "format version 7"
    if how == "missing-field":
        del info["params"]
        (run / "run.json").write_text(json.dumps(info))
        return "'params' is missing"
    if how == "missing-columns":
        (run / "metrics.csv.gz").write_bytes(gzip.compress(b"key,value\ndev_loss_mean,1.0\n"))
        return "not 'key,step,value'"
    if how == "bad-row":
        data = b"key,step,value\ndev_loss_mean,zero,1.0\n"
        (run / "metrics.csv.gz").write_bytes(gzip.compress(data))
        return "line 2"
    if how == "not-gzip":
        (run / "metrics.csv.gz").write_bytes(b"key,step,value\n")
        return "not a gzipped CSV"
    if how == "no-archive-file":
        (archive / "archive.json").unlink()
        return "not a mosgym run archive"
    raise ValueError(how)


DAMAGE = [
    "bad-json", "foreign-file", "wrong-version", "missing-field", "missing-columns", "bad-row",
    "not-gzip", "no-archive-file",
]  # fmt: skip


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_or_foreign_archive_is_one_error_line(store, tmp_path, how, capsys) -> None:
    archive = tmp_path / "copy"
    shutil.copytree(store["archive"], archive)
    words = _damage(archive, how)
    args = ["--archive", str(archive), "--experiment", "skills", "--n-boot", "200"]
    assert compare.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mosgym: error: ") and err.count("\n") == 1 and words in err, err
    assert import_cli([str(archive), "--tracking-uri", f"sqlite:///{tmp_path}/t.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mosgym: error: ") and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "t.db").exists()  # every file is read before the store is touched


def test_unknown_experiments_and_wrong_sources_are_one_error_line(store, tmp_path, capsys) -> None:
    uri = f"sqlite:///{store['root']}/mlflow.db"
    archive = str(store["archive"])
    cases = [
        (compare.main, ["--archive", archive, "--experiment", "nope"], "no such MLflow experiment"),
        (
            fidelity.main,
            ["--archive", archive, "--real", "nope", "--sim", "sim", "--agents", "a", "b", "c"],
            "nope",
        ),  # fmt: skip
        (export_main, ["--experiment", "nope", "--out", "x", "--tracking-uri", uri], "nope"),
        (import_cli, [archive, "--experiment", "nope"], "not in archive"),
        (
            calibrate_main,
            ["--archive", archive, "--experiment", "nope", "--out", "x.yaml"],
            "no MLflow experiment 'nope' at archive",
        ),  # fmt: skip
        (
            compare.main,
            ["--archive", str(tmp_path / "none"), "--experiment", "a"],
            "no such folder",
        ),
        (
            compare.main,
            ["--archive", archive, "--tracking-uri", uri, "--experiment", "skills"],
            "one source",
        ),  # fmt: skip
        (
            export_main,
            ["--experiment", "skills", "--out", str(REPO / "mosgym"), "--tracking-uri", uri],
            "not a run archive",
        ),  # fmt: skip
    ]
    for main, args, words in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("mosgym: error: ") and err.count("\n") == 1, err
        assert words in err, (args, err)


@pytest.mark.slow
def test_cli_in_a_subprocess_runs_the_shims(store, tmp_path: Path) -> None:
    """`python -m mosgym.export` and `python -m mosgym.import` (a keyword, run by runpy)."""
    uri = f"sqlite:///{store['root']}/mlflow.db"
    env_out = tmp_path / "arch"
    res = subprocess.run(
        [sys.executable, "-m", "mosgym.export", "--experiment", "real", "--out", str(env_out),
         "--tracking-uri", uri], cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"exported 8 runs of real to {env_out}/real/")
    res = subprocess.run(
        [sys.executable, "-m", "mosgym.import", str(env_out), "--tracking-uri",
         f"sqlite:///{tmp_path}/new.db"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("imported 8 runs into experiment real at sqlite:")


# -------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_simulator_runs_export_compare_import(tmp_path: Path) -> None:
    """Real runs of mosgym.run (simulator, 2 agents x 2 seeds under a parent): the archive gives
    compare's table to the last digit, keeps each run's config, and survives a round trip."""
    from mosgym.experiment.run import main as run_main

    for agent in ("static-temp", "mos-cossim"):
        args = ["--env", "sim-skills-tiny", "--steps", "200", "--agent", agent, "--seeds", "0-1"]
        assert run_main([*args, "--experiment", "e2e", "--no-progress", "-q"]) == 0
    client = MlflowClient()  # conftest's store for this test
    export(client, ["e2e"], tmp_path / "archive")
    kw = {"n_boot": 200}
    want = compare.compare(client, "e2e", out=tmp_path / "m", **kw)
    got = compare.compare(ArchiveReader(tmp_path / "archive"), "e2e", out=tmp_path / "a", **kw)
    assert got.markdown == want.markdown and len(got.rows) > 0
    assert (tmp_path / "a/comparison.csv").read_bytes() == (
        tmp_path / "m/comparison.csv"
    ).read_bytes()
    runs = [p for p in (tmp_path / "archive/e2e").iterdir() if p.is_dir()]
    assert len(runs) == 2 + 4  # a parent per agent, a run per seed
    child = next(p for p in runs if "_s1_" in p.name)  # run "static-temp s1 @ sim-skills-tiny"
    info = json.loads((child / "run.json").read_text())
    artifact = client.download_artifacts(info["run_id"], "config.yaml", str(tmp_path))
    assert (child / "config.yaml").read_bytes() == Path(artifact).read_bytes()
    assert info["tags"]["mosgym.kind"] == "run" and "mlflow.parentRunId" in info["tags"]

    target = _new_store(tmp_path / "other.db")
    import_archive(target, tmp_path / "archive")
    export(target, ["e2e"], tmp_path / "again")
    assert _tree(tmp_path / "again") == _tree(tmp_path / "archive")


TABLE_AGENTS = (
    "static-prop static-temp static-uni multidds multiuat mos-cossim mos-cossim-ema mos-diff "
    "mos-diff-ema mos-prior-tau1 mos-prior-tau10 mospec-cossim mospec-diff odm ppo a2c sac "
    "ppo-from-sim"
).split()


def _paper_store(root: Path) -> MlflowClient:
    """Synthetic runs under the experiment names and agents paper/make_report.sh reads."""
    client = _new_store(root / "paper.db")
    rng = np.random.default_rng(0)
    for name, agents in (
        ("paper-skills-tiny", TABLE_AGENTS),
        ("paper-sim-skills-tiny", ["static-prop", "static-temp", "static-uni", "mos-cossim-ema"]),
        ("calib-skills-tiny", ["mix0", "mix1"]),
    ):
        exp = _experiment(client, name, root)
        for agent in agents:
            for seed in range(2):
                curve = list(4.0 - np.cumsum(rng.uniform(0.1, 0.5, 5)) + 0.4)
                rid = log_run(client, exp, agent, seed, curve)
                client.log_metric(rid, "wall_time_s", float(rng.uniform(40, 80)))
    return client


def _fill_readme():
    spec = importlib.util.spec_from_file_location("fill_readme", REPO / "paper" / "fill_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PAPER_EXPERIMENTS = ["paper-skills-tiny", "calib-skills-tiny", "paper-sim-skills-tiny"]


def test_the_report_runs_table_reads_an_archive_to_the_last_digit(store) -> None:
    fill_readme, names = _fill_readme(), ["skills", "real", "sim", "calib", "nope"]
    got = fill_readme.runs_table(names, ArchiveReader(store["archive"]))
    assert got == fill_readme.runs_table(names, store["client"])
    assert "| real | a | 2 | 0,1 | 55 | 1.8 |" in got and got.count("\n") == 2 + 3 + 4 + 4 + 3


@pytest.mark.slow
def test_make_report_runs_from_an_archive_alone(tmp_path: Path) -> None:
    """`ARCHIVE=DIR bash paper/make_report.sh` with no usable MLflow store fills every generated
    block of the README from the archive (compare, fidelity, calibration, the runs table)."""
    export(_paper_store(tmp_path), PAPER_EXPERIMENTS, tmp_path / "archive")
    readme = (REPO / "paper" / "README.md").read_text(encoding="utf-8")
    (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    env = {
        **os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), "N_BOOT": "200",
        "ARCHIVE": str(tmp_path / "archive"), "RESULTS": str(tmp_path / "results"),
        "README": str(tmp_path / "README.md"),
        # A store that cannot be opened: the archive must be all the script reads.
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/no/such/dir/x.db",
    }  # fmt: skip
    res = subprocess.run(
        ["bash", str(REPO / "paper" / "make_report.sh")], env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "runs from archive" in res.stdout and not (tmp_path / "no").exists()
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"<!-- BEGIN (\S+) -->\n(.*?)<!-- END \1 -->", text, re.S))
    assert set(blocks) == {
        "runs", "table2", "table3", "table5", "rl", "calibration", "fidelity",
        "benchmark-skills-tiny", "smollm2", "calibration-smollm2", "fidelity-smollm2",
        "calibration-variants-smollm2", "decisions", "benchmark-skills-tiny-ppo-tuned5",
        "benchmark-skills-tiny-a2c-tuned5", "benchmark-skills-tiny-tuned-all",
    }  # fmt: skip
    before = dict(re.findall(r"<!-- BEGIN (\S+) -->\n(.*?)<!-- END \1 -->", readme, re.S))
    # No benchmark or SmolLM2 runs in this archive: their blocks are kept as they were.
    tuned = ("benchmark-skills-tiny-ppo-tuned5", "benchmark-skills-tiny-a2c-tuned5")
    for name in ("benchmark-skills-tiny", *tuned):
        assert blocks[name] == before[name]
    assert blocks["smollm2"] == before["smollm2"] and "smollm2: block kept" in res.stdout
    assert blocks["fidelity-smollm2"] == before["fidelity-smollm2"]
    assert "fidelity-smollm2: block kept" in res.stdout
    assert blocks["calibration-variants-smollm2"] == before["calibration-variants-smollm2"]
    assert "calibration-variants-smollm2: block kept" in res.stdout
    assert blocks["decisions"] == before["decisions"] and "decisions: block kept" in res.stdout
    # The SmolLM2 calibration block is the committed report of envs/sim-skills-smollm2.yaml
    # (when there is one): the README must have been rebuilt since it was last calibrated.
    assert blocks["calibration-smollm2"] == before["calibration-smollm2"]
    assert blocks["runs"] == _fill_readme().runs_table(
        PAPER_EXPERIMENTS, ArchiveReader(tmp_path / "archive")
    )
    for table in ("table2", "table3", "table5", "rl"):
        md = (tmp_path / "results" / table / "comparison.md").read_text(encoding="utf-8")
        assert blocks[table] == re.sub(r"^(#+) ", r"##\1 ", md, flags=re.M)  # two levels down
        assert md.startswith("## mosgym comparison: experiment `paper-skills-tiny`")
    assert "**" in blocks["fidelity"] and "Spearman rank correlation" in blocks["fidelity"]
    assert re.sub(r"<!-- BEGIN.*?END \S+ -->", "", text, flags=re.S) == re.sub(
        r"<!-- BEGIN.*?END \S+ -->", "", readme, flags=re.S
    )  # nothing outside the blocks changed


def test_exported_tags_leave_out_who_ran_and_where() -> None:
    from mosgym.records.archive import portable_tags

    repo = Path(__file__).resolve().parents[1]
    tags = {
        "mlflow.user": "root",
        "mlflow.source.name": str(repo / "mosgym" / "run.py"),
        "mosgym.agent": "static-prop",
    }
    assert portable_tags(tags) == {
        "mlflow.source.name": "mosgym/run.py",
        "mosgym.agent": "static-prop",
    }
    assert portable_tags({"mlflow.source.name": "/elsewhere/ipykernel.py"}) == {
        "mlflow.source.name": "ipykernel.py"
    }
    assert portable_tags({"mlflow.source.name": "run.py"}) == {"mlflow.source.name": "run.py"}


def test_exported_params_name_checkout_files_relative_to_it() -> None:
    from mosgym.records.archive import portable_params

    repo = Path(__file__).resolve().parents[1]
    params = {
        "agent.params.path": str(repo / "agents" / ".." / "policies" / "p.zip"),
        "env.skills.0.path": "/data/elsewhere/a.jsonl",
        "train.lr": "0.001",
    }
    assert portable_params(params) == {
        "agent.params.path": "policies/p.zip",
        "env.skills.0.path": "/data/elsewhere/a.jsonl",
        "train.lr": "0.001",
    }
