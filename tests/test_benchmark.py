"""The benchmark: end to end on the simulator, resumed, rebuilt from MLflow, tuned, randomised.

Everything runs on the calibrated simulator with 5-decision episodes (T = 100, S = 20) and tiny
budgets; the "real" env of these tests is the simulator itself (--real-env), so deployments are
ordinary `mosgym run` runs that take a second.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mosgym.analysis.stats import performance_profile
from mosgym.benchmark import cli
from mosgym.benchmark import tracking as bt
from mosgym.benchmark.leaderboard import Scores, best_static, rows
from mosgym.benchmark.randomize import RandomizedSimVecEnv, randomized_config
from mosgym.benchmark.suite import parse_entry
from mosgym.config import load_env_config, read_yaml, to_dict
from mosgym.sim.params import parse_sim_params

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "envs" / "sim-skills-tiny.yaml"
SHORT = ["--set", "train.total_steps=100", "--set", "train.interval=20"]


def bench_args(tmp: Path, *extra: str) -> list[str]:
    """A tiny benchmark whose real env is the simulator itself."""
    return [
        "--real-env", str(SIM), *SHORT, "--budget", "1024", "--eval-every", "512",
        "--eval-episodes", "4", "--n-boot", "200", "--out", str(tmp / "out"), "-q", *extra,
    ]  # fmt: skip


def run(argv: list[str]) -> dict[str, Any]:
    args = cli.build_parser().parse_args(argv)
    args.command = "mosgym benchmark " + " ".join(argv)
    return cli.run(args)


def finished(client: MlflowClient, experiment: str, query: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], query, max_results=1000)
    return [r for r in runs if r.info.status == "FINISHED"]


# ------------------------------------------------------------------------ end to end, resume
def test_benchmark_runs_end_to_end_resumes_and_rebuilds_from_mlflow(tmp_path: Path) -> None:
    argv = bench_args(
        tmp_path, "--algos", "ppo", "mos", "--seeds", "0-1", "--real-seeds", "0-1",
        "--pairing", "zip", "--baselines", "static-prop", "static-uni",
    )  # fmt: skip
    first = run(argv)
    # 2 PPO trainings, MoS and two baselines scored on the simulator; 2 + 2 + 2 x 2 real runs.
    assert len(first["sim"].done) == 5 and not first["sim"].skipped
    assert len(first["real"].done) == 8 and not first["real"].skipped
    policies = sorted((tmp_path / "out" / "policies").glob("*.zip"))
    assert [p.name.split("-")[:2] for p in policies] == [["ppo", "s0"], ["ppo", "s1"]]

    client = MlflowClient()
    (parent,) = finished(client, "bench-skills-tiny", "tags.`mosgym.kind` = 'benchmark'")
    kids = finished(
        client, "bench-skills-tiny", f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(kids) == 5
    real = finished(client, "bench-skills-tiny-real", "tags.`mosgym.kind` = 'run'")
    assert len(real) == 8 and {r.data.tags[bt.BENCH] for r in real} == {parent.data.tags[bt.BENCH]}
    ppo_child = next(k for k in kids if k.data.tags[bt.ALGO] == "ppo")
    curve = client.get_metric_history(ppo_child.info.run_id, "eval/final_dev_loss_mean")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [0, 512, 1024]

    md = first["report"].markdown
    table = {r.name: r for r in first["report"].table}
    assert set(table) == {"ppo", "mos", "static-prop", "static-uni"}
    assert table["ppo"].real_n == 2 and table["ppo"].sim_n == 2 and table["mos"].sim_n == 1
    assert np.isfinite(table["ppo"].poi_static) and "P(beats `static-" in md
    report = tmp_path / "out" / "report"
    for name in ("leaderboard.md", "leaderboard.csv", "learning_curves.csv",
                 "learning_curves.png", "performance_profiles.png", "sim_vs_real.png"):  # fmt: skip
        assert (report / name).stat().st_size > 0, name
    curves_before = (report / "learning_curves.csv").read_text()
    assert "ppo,0,512," in curves_before

    again = run(argv)  # the same command: everything is found finished
    assert not again["sim"].done and len(again["sim"].skipped) == 5
    assert not again["real"].done and len(again["real"].skipped) == 8
    assert len(finished(client, "bench-skills-tiny-real", "tags.`mosgym.kind` = 'run'")) == 8
    assert again["report"].markdown == md

    # The leaderboard from MLflow alone: no policy, deployment YAML or report on disk.
    import shutil

    shutil.rmtree(tmp_path / "out")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n<!-- BEGIN benchmark-skills-tiny -->\nold\n<!-- END benchmark-skills-tiny -->\n"
    )
    rebuilt = run([*argv, "--stage", "report", "--readme", str(readme)])["report"]
    assert rebuilt.markdown == md
    text = readme.read_text()
    assert "old" not in text and "#### Benchmark `skills-tiny`" in text
    assert (tmp_path / "results" / "benchmark-skills-tiny.md").is_file()
    assert (tmp_path / "results" / "benchmark-skills-tiny" / "learning_curves.png").is_file()
    exported = tmp_path / "results" / "benchmark-skills-tiny"  # the numbers, beside the block
    assert (exported / "learning_curves.csv").read_text() == (report_csv := curves_before)
    assert "ppo," in (exported / "leaderboard.csv").read_text() and "ppo,0,512," in report_csv


def test_interrupted_simulator_stage_resumes_without_redoing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mosgym.benchmark import train

    real_train = train.train_sb3
    calls: list[int] = []

    def interrupting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])  # the seed
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second training run
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train, "train_sb3", interrupting)
    argv = bench_args(tmp_path, "--algos", "a2c", "--seeds", "0-2", "--baselines", "--stage", "sim")
    assert cli.main(argv) == 130
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("bench-skills-tiny").experiment_id])
    status = sorted((r.data.tags[bt.KIND], r.info.status) for r in runs)
    assert status == [
        ("bench-train", "FINISHED"),
        ("bench-train", "KILLED"),
        ("benchmark", "KILLED"),
    ]
    assert len(list((tmp_path / "out" / "policies").glob("*.zip"))) == 1

    calls.clear()
    monkeypatch.setattr(
        train, "train_sb3", lambda *a, **k: (calls.append(a[2]), real_train(*a, **k))[1]
    )
    again = run(argv)
    assert calls == [1, 2]  # seed 0 was finished: not trained again
    assert again["sim"].skipped == ["a2c seed 0"]
    assert len(list((tmp_path / "out" / "policies").glob("*.zip"))) == 3
    (parent,) = finished(client, "bench-skills-tiny", "tags.`mosgym.kind` = 'benchmark'")
    kids = finished(
        client, "bench-skills-tiny", f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(k.data.tags[bt.TRAIN_SEED] for k in kids) == ["0", "1", "2"]


# --------------------------------------------------------------------------------- tuning
def test_optuna_tunes_three_trials_and_writes_a_loadable_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    monkeypatch.chdir(tmp_path)  # ./agents comes first: tuned entries land in ./agents/bench
    (tmp_path / "agents").mkdir()
    storage = f"sqlite:///{tmp_path}/optuna.db"
    argv = bench_args(
        tmp_path, "--stage", "tune", "--algos", "a2c", "odm", "--trials", "3",
        "--tune-budget", "160", "--tune-episodes", "2", "--tune-storage", storage,
    )  # fmt: skip
    paths = run(argv)["tune"]
    assert paths == [tmp_path / "agents" / "bench" / "skills-tiny" / f"{a}.yaml"
                     for a in ("a2c", "odm")]  # fmt: skip
    for algo, path in zip(("a2c", "odm"), paths, strict=True):
        text = path.read_text()
        assert text.startswith("# Tuned by: mosgym benchmark ") and "--stage tune" in text
        assert "# Budget: 3 Optuna trials" in text
        parse_entry(algo, read_yaml(path), path)  # a valid entry for the benchmark
    assert "160 simulated env steps" in paths[0].read_text()
    assert 0.5 <= read_yaml(paths[1])["agent"]["params"]["alpha"] <= 0.99
    args = cli.build_parser().parse_args(bench_args(tmp_path, "--algos", "odm"))
    assert cli.settings_from_args(args).entries["odm"].path == paths[1]  # the suite's entry now
    assert sorted(s.n_trials for s in optuna.get_all_study_summaries(storage)) == [3, 3]
    # Rerun: the same studies (the search starts from the default entry, not from its own
    # output), complete: no trial is added.
    run(argv)
    assert sorted(s.n_trials for s in optuna.get_all_study_summaries(storage)) == [3, 3]


def test_mos_search_space_gives_valid_entries_with_an_interval(tmp_path: Path) -> None:
    """MoS's knobs (lr, update steps, prior, interval) map onto a valid entry."""
    import optuna

    from mosgym.benchmark.tune import Tuning

    args = cli.build_parser().parse_args(bench_args(tmp_path, "--algos", "mos"))
    tuning = Tuning(cli.settings_from_args(args), "mos", 1, [0], 2)
    params = {"lr": 3e-3, "update_steps": 50, "prior_tau": "10", "interval": 25}
    data, entry = tuning.candidate(optuna.trial.FixedTrial(params))
    assert data["interval"] == 25 and entry.env_sets() == ["train.interval=25"]
    assert entry.agent.params.prior_tau == 10.0 and entry.agent.params.update_steps == 50
    assert entry.sim_config(tuning.settings.suite).train.interval == 25


# ---------------------------------------------------------------- domain randomisation
def test_randomised_simulators_are_seeded() -> None:
    cfg = load_env_config(SIM)
    a, b = randomized_config(cfg, 3, 0.2), randomized_config(cfg, 3, 0.2)
    c = randomized_config(cfg, 4, 0.2)
    assert to_dict(a) == to_dict(b)
    assert a.sim["rate"] != c.sim["rate"] and a.sim["transfer"] != c.sim["transfer"]
    assert a.sim["rate"] != cfg.sim["rate"] and a.sim["init_loss"] == cfg.sim["init_loss"]
    assert np.allclose(np.diag(a.sim["transfer"]), 1.0)  # own data counts fully, by definition
    assert randomized_config(cfg, 3, 0.0).sim == cfg.sim
    for seed in range(20):  # every draw is a valid simulator, even with a wide spread
        parse_sim_params(randomized_config(cfg, seed, 1.0).sim, 6)


def test_randomised_vec_env_is_deterministic_and_redraws_per_episode() -> None:
    cfg = load_env_config(SIM, ["train.total_steps=100", "train.interval=20"])
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(12, 8, 6)).astype(np.float32)

    def rollout(seed: int) -> tuple[np.ndarray, list]:
        venv = RandomizedSimVecEnv(cfg, n_envs=8, seed=seed, spread=0.2, groups=2)
        venv.seed(seed)
        venv.reset()
        rewards, params = [], []
        for a in actions:
            _, r, _, _ = venv.step(a)
            rewards.append(r)
            params.append(venv.parts[0].batch.sim.params.rate)
        return np.array(rewards), params

    r1, p1 = rollout(0)
    r2, p2 = rollout(0)
    r3, _ = rollout(1)
    assert np.array_equal(r1, r2) and p1 == p2
    assert not np.allclose(r1, r3)
    assert p1[3] == p1[0] and p1[5] != p1[3]  # a new simulator after the 5-step episode


# --------------------------------------------------------------------------- input mistakes
def _mismatched_sim(tmp_path: Path) -> Path:
    data = yaml.safe_load(SIM.read_text())
    data["skills"][0], data["skills"][1] = data["skills"][1], data["skills"][0]
    path = tmp_path / "sim-swapped.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algos", "ppo", "nope"], "--algos nope: unknown algorithm"),
        (["--budget", "0"], "--budget 0: must be >= 1"),
        (["--sim-env", "SWAPPED"], "has skills ['reverse', 'copy'"),
        (["--suite", "nosuch", "--real-env", str(SIM)], "suite nosuch: no calibrated simulator"),
        (["--sim-env", str(ROOT / "envs" / "skills-tiny.yaml")], "not a simulator"),
        (["--pairing", "zip", "--seeds", "0-2", "--real-seeds", "0-1"], "--pairing zip pairs"),
        (["--baselines", "static-nope"], "--baselines static-nope: no such agent config"),
        (["--stage", "report", "--experiment", "never-run"], "run the simulator stage first"),
        # no real run before the settings (baselines included) have a simulator stage
        (["--stage", "real", "--experiment", "never-run"], "--seeds, --budget, --baselines"),
        (["--eval-every", "5000"], "--eval-every 5000: must be between 1 and --budget"),
        (["--stage", "tune", "--trials", "0"], "--trials 0: must be >= 1"),
        (["--shard", "2/2"], "--shard 2/2: expected I/N"),
        (["--stage", "real-train", "--algos", "mos", "odm"], "has none"),
        (["--stage", "real-train", "--real-episodes", "0"], "--real-episodes 0: must be >= 1"),
        (["--stage", "real-train", "--algos", "ppo", "--real-train-algos", "sac"], "sac: not one"),
        (["--stage", "real-train", "--experiment", "never-run"], "run the simulator stage first"),
        (["--stage", "offline", "--offline-algos", "bcq"], "--offline-algos bcq: name each of"),
        (["--stage", "offline", "--offline-steps", "0"], "--offline-steps 0: must be >= 1"),
        (["--readme", "NOBLOCK"], "no block for this suite"),
    ],
)  # fmt: skip
def test_input_mistakes_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "README.md").write_text("# no block here\n")
    files = {"SWAPPED": str(_mismatched_sim(tmp_path)), "NOBLOCK": str(tmp_path / "README.md")}
    extra = [files.get(e, e) for e in extra]
    code = cli.main(bench_args(tmp_path, *extra))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("mosgym: error: ") and message in err, err


def test_simulator_with_another_interval_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = yaml.safe_load(SIM.read_text())
    sim["train"]["interval"] = 25
    (tmp_path / "sim-s25.yaml").write_text(yaml.safe_dump(sim))
    real = str(ROOT / "envs" / "skills-tiny.yaml")
    assert cli.main(["--real-env", real, "--sim-env", str(tmp_path / "sim-s25.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.interval is 25 in the simulator" in err, err


def test_cli_error_in_a_subprocess_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mosgym.benchmark", "--algos", "ppo", "nope"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "unknown algorithm" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------- pure pieces
def test_every_benchmark_entry_loads() -> None:
    paths = sorted((ROOT / "agents" / "bench").rglob("*.yaml"))
    assert {p.stem for p in paths} >= {"ppo", "a2c", "sac", "td3", "dqn", "mos", "odm"}
    for path in paths:
        entry = parse_entry(path.stem, read_yaml(path), path)
        assert entry.trains == (path.stem not in ("mos", "odm"))


def test_performance_profile_by_hand() -> None:
    scores = np.array([0.5, 1.0, 1.5, 2.0])
    taus = np.array([1.0, 1.75])
    assert performance_profile(scores, taus, higher_is_better=False).tolist() == [0.25, 0.75]
    assert performance_profile(scores, taus).tolist() == [0.5, 0.25]


def test_real_runs_kept_follow_seeds_and_pairing() -> None:
    from types import SimpleNamespace

    from mosgym.benchmark.leaderboard import _wanted

    def tags(seed: int, train: int | None = None) -> dict[str, str]:
        return {bt.SEED: str(seed)} | ({} if train is None else {bt.TRAIN_SEED: str(train)})

    zipped = SimpleNamespace(seeds=[0, 1], real_seeds=[5, 6], pairing="zip")
    crossed = SimpleNamespace(seeds=[0, 1], real_seeds=[5, 6], pairing="cross")
    assert _wanted(zipped, tags(5, 0)) and _wanted(zipped, tags(6, 1))
    assert not _wanted(zipped, tags(6, 0)) and _wanted(crossed, tags(6, 0))
    assert not _wanted(crossed, tags(7, 0)) and not _wanted(crossed, tags(5, 2))
    assert _wanted(crossed, tags(6)) and not _wanted(crossed, tags(4))  # baselines: real seed


def test_leaderboard_rows_by_hand() -> None:
    s = Scores(
        kinds={"ppo": "trained", "static-prop": "baseline", "static-temp": "baseline",
               "mos-prior-tau1": "baseline"},
        real={"ppo": [0.5, 0.6, 0.55], "static-prop": [0.7, 0.8, 0.75],
              "static-temp": [0.9, 1.0, 0.95], "mos-prior-tau1": [0.6, 0.65, 0.7]},
        sim={"ppo": [0.4, 0.45]},
    )  # fmt: skip
    assert best_static(s) == "static-prop"
    table = rows(s, n_boot=200)
    assert [r.name for r in table] == ["ppo", "mos-prior-tau1", "static-prop", "static-temp"]
    ppo = table[0]
    assert ppo.poi_static == 1.0
    assert ppo.poi_mos == pytest.approx(8.5 / 9)  # one tie at 0.6 counts a half
    assert ppo.gap == pytest.approx(0.55 - 0.425) and ppo.target_reached
    assert not table[1].target_reached  # a baseline is never "trained in the simulator"
    del s.real["mos-prior-tau1"]
    assert not rows(s, n_boot=200)[0].target_reached  # not judged without MoS-PROP's runs
    assert re.fullmatch(r"0\.\d+", f"{table[2].poi_mos:.3f}")
