"""Calibration: the fit recovers the simulator's own parameters; MLflow reading and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import mosgym  # noqa: F401  (registers the envs)
from mosgym.config import TrainConfig
from mosgym.errors import MosgymError
from mosgym.sim.calibrate import main, read_runs
from mosgym.sim.fit import (
    FitResult,
    RunCurves,
    choose_transfer_ridge,
    fit_report,
    fit_sim_params,
    simulate_dev_loss,
    split_holdout,
)
from mosgym.sim.learner import SimLearner, parse_sim_params

NAMES = ["a", "b", "c"]
SIZES = [20000, 20000, 400]
TRUE = {
    "init_loss": [4.0, 5.0, 3.0],
    "floor_loss": [1.0, 0.5, 1.5],
    "rate": [200.0, 500.0, 100.0],
    "exponent": [0.6, 0.9, 0.4],
    "transfer": [[1.0, 0.3, 0.0], [0.2, 1.0, -0.2], [0.1, 0.0, 1.0]],
    "overfit": [0.0, 0.0, 0.05],
    "overfit_epochs": [1.0, 1.0, 1.0],
    "forget": [2e-3, 1e-3, 3e-3],
    "general_share": [0.4, 0.2, 0.5],
    "general_rate": 300.0,
    "general_exponent": 1.2,
}
# Static and alternating mixtures: enough variety to tell transfer from forgetting.
MIXES = [
    [[1 / 3] * 3],
    [[0.6, 0.3, 0.1]],
    [[0.1, 0.3, 0.6]],
    [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]],
    [[0.2, 0.7, 0.1]],
    [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]],
]


def simulate_run(mixes: list[list[float]], seed: int, steps: int = 600, interval: int = 30):
    """A run of the simulator with the TRUE parameters: (steps, examples, dev, tokens)."""
    lr = SimLearner(NAMES, SIZES, parse_sim_params(TRUE, 3), TrainConfig(batch_size=16), seed=seed)
    st, ex, dev, tok = [0], [lr.consumed.copy()], [lr.dev_loss()], [lr.tokens_seen.copy()]
    for k in range(steps // interval):
        lr.train(np.asarray(mixes[k % len(mixes)]), interval)
        st.append(lr.step)
        ex.append(lr.consumed.copy())
        dev.append(lr.dev_loss())
        tok.append(lr.tokens_seen.copy())
    return np.array(st), np.array(ex, float), np.array(dev), np.array(tok, float)


@pytest.fixture(scope="module")
def runs() -> list[RunCurves]:
    out = []
    for i, m in enumerate(MIXES):
        st, ex, dev, _ = simulate_run(m, seed=i)
        out.append(RunCurves(f"r{i}", st, ex, dev, group=f"g{i}"))
    return out


def test_replay_reproduces_the_learner_exactly(runs: list[RunCurves]) -> None:
    t = TRUE
    fit = FitResult(
        *(np.array(t[k], float) for k in list(t)[:5]),
        np.array(t["overfit"]),
        np.array(t["overfit_epochs"]),
        np.array(t["forget"]),
        np.array(t["general_share"]),
        t["general_rate"],
        t["general_exponent"],
    )
    for r in runs:
        pred = simulate_dev_loss(fit, r.steps, r.examples[None], np.array(SIZES, float))[0]
        np.testing.assert_allclose(pred, r.dev_loss, rtol=1e-12)


def _close(fit: FitResult, key: str, rtol: float, skills: list[int]) -> None:
    got, want = getattr(fit, key)[skills], np.array(TRUE[key])[skills]
    np.testing.assert_allclose(got, want, rtol=rtol, err_msg=key)


def test_fit_recovers_known_parameters(runs: list[RunCurves]) -> None:
    fit = fit_sim_params(runs, np.array(SIZES))
    for key in ("floor_loss", "rate", "exponent", "forget", "init_loss", "general_share"):
        _close(fit, key, 1e-3, [0, 1, 2])
    assert fit.general_rate == pytest.approx(TRUE["general_rate"], rel=1e-3)
    assert fit.general_exponent == pytest.approx(TRUE["general_exponent"], rel=1e-3)
    assert fit.overfit[2] == pytest.approx(0.05, rel=1e-3)
    # skills a and b never pass one epoch: their overfitting is unobservable and left at 0
    assert fit.overfit[0] == fit.overfit[1] == 0.0
    np.testing.assert_allclose(fit.transfer, TRUE["transfer"], atol=1e-3)


def test_fit_recovers_parameters_under_noise(runs: list[RunCurves]) -> None:
    """1% multiplicative noise on every logged dev loss: rates and exponents within 15%.

    Stated tolerance: skills without overfitting (a, b); for the tiny repeated skill c the
    floor, exponent and overfitting slope trade off and are only loosely determined. (10% held
    before the general part; its share trades off a little against a skill's own exponent:
    0.537 for 0.6 on skill a.)
    """
    rng = np.random.default_rng(0)
    noisy = []
    for r in runs:
        dev = r.dev_loss * np.exp(0.01 * rng.standard_normal(r.dev_loss.shape))
        dev[0] = r.dev_loss[0]
        noisy.append(RunCurves(r.run_id, r.steps, r.examples, dev, r.group))
    fit = fit_sim_params(noisy, np.array(SIZES))
    _close(fit, "rate", 0.15, [0, 1])
    _close(fit, "exponent", 0.15, [0, 1])
    _close(fit, "floor_loss", 0.1, [0, 1])
    np.testing.assert_allclose(fit.transfer, TRUE["transfer"], atol=0.05)
    assert fit_report(fit, noisy, np.array(SIZES), NAMES)["c"]["rel_err"] < 0.02


def _noisy(runs: list[RunCurves], scale: float, seed: int = 0) -> list[RunCurves]:
    rng, out = np.random.default_rng(seed), []
    for r in runs:
        dev = r.dev_loss * np.exp(scale * rng.standard_normal(r.dev_loss.shape))
        dev[0] = r.dev_loss[0]
        out.append(RunCurves(r.run_id, r.steps, r.examples, dev, r.group))
    return out


def test_transfer_ridge_pulls_transfer_towards_zero(runs: list[RunCurves]) -> None:
    """lambda 0 is the plain fit; a large lambda leaves (almost) no transfer; between, less."""
    noisy, sizes = _noisy(runs[:4], 0.03), np.array(SIZES)
    off = ~np.eye(3, dtype=bool)
    plain = fit_sim_params(noisy, sizes)
    np.testing.assert_array_equal(fit_sim_params(noisy, sizes, transfer_ridge=0.0).transfer,
                                  plain.transfer)  # fmt: skip
    mid = fit_sim_params(noisy, sizes, transfer_ridge=0.1)
    strong = fit_sim_params(noisy, sizes, transfer_ridge=1e4)
    size = [np.abs(f.transfer[off]).sum() for f in (plain, mid, strong)]
    assert size[0] > size[1] > size[2] and size[2] < 0.01, size
    none = fit_sim_params(noisy, sizes, transfer_ridge=float("inf"))  # the limit: no transfer
    np.testing.assert_array_equal(none.transfer, np.eye(3))
    np.testing.assert_allclose(none.rate, strong.rate, rtol=0.05)
    with pytest.raises(MosgymError, match="transfer ridge -1"):
        fit_sim_params(noisy, sizes, transfer_ridge=-1.0)


@pytest.mark.slow
def test_transfer_ridge_cv_keeps_a_transfer_the_runs_show(runs: list[RunCurves]) -> None:
    """On the simulator's own curves (true transfer 0.3, -0.2, ...) leaving a mixture out and
    predicting it is exact without a penalty and worse with one: CV must choose 0."""
    best, scores = choose_transfer_ridge(runs, np.array(SIZES), grid=(0.0, 1.0))
    assert best == 0.0 and set(scores) == {0.0, 1.0}
    assert scores[0.0] < 1e-8 < scores[1.0]
    with pytest.raises(MosgymError, match="at least 2 mixture groups"):
        choose_transfer_ridge(runs[:1], np.array(SIZES))


def test_fit_report_hand_values() -> None:
    fit = FitResult(
        *(np.ones(1) * v for v in (4.0, 1.0, 100.0, 0.5)),
        np.eye(1),
        np.zeros(1),
        np.ones(1),
        np.zeros(1),
    )
    # prediction at 300 examples: 1 + 3 / 2 = 2.5; observed 2.0 and (step 2) 600 ex -> 1 + 3/sqrt(7)
    pred2 = 1 + 3 / np.sqrt(7)
    run = RunCurves(
        "x",
        np.array([0, 10, 20]),
        np.array([[0.0], [300.0], [600.0]]),
        np.array([[4.0], [2.0], [pred2]]),
    )
    rep = fit_report(fit, [run], np.array([1e9]), ["s"])["s"]
    obs = np.array([2.0, pred2])
    r2 = 1 - 0.25 / np.sum((obs - obs.mean()) ** 2)
    assert rep["r2"] == pytest.approx(r2) and rep["rel_err"] == pytest.approx(0.25 / 2)
    assert rep["points"] == 2


def test_split_holdout(runs: list[RunCurves]) -> None:
    fit, held = split_holdout(runs)
    assert [r.run_id for r in held] == ["r5"] and len(fit) == 5
    fit, held = split_holdout(runs, holdout=2)
    assert {r.group for r in held} == {"g4", "g5"}
    fit, held = split_holdout(runs, holdout_runs=["r0", "r3"])
    assert [r.run_id for r in held] == ["r0", "r3"]
    with pytest.raises(MosgymError, match="no such run"):
        split_holdout(runs, holdout_runs=["nope"])
    with pytest.raises(MosgymError, match="--holdout 6"):
        split_holdout(runs, holdout=6)


def test_fit_rejects_bad_input(runs: list[RunCurves]) -> None:
    with pytest.raises(MosgymError, match="no runs"):
        fit_sim_params([], np.array(SIZES))
    bad = RunCurves("z", runs[0].steps[1:], runs[0].examples[1:], runs[0].dev_loss[1:])
    with pytest.raises(MosgymError, match="step 0"):
        fit_sim_params([bad], np.array(SIZES))


# -------------------------------------------------------------------------------- MLflow
def _log_run(client, exp_id: str, names: list[str], mixes, seed: int, agent: str, sizes=True):
    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(exp_id, tags={"mosgym.kind": "run", "mosgym.agent": agent})
    rid = run.info.run_id
    st, ex, dev, tok = simulate_run(mixes, seed)
    params = [
        Param("env.train.total_steps", "600"),
        Param("env.train.interval", "30"),
        Param("env.train.batch_size", "16"),
    ]
    for i, n in enumerate(names):
        params.append(Param(f"env.skills.{i}.name", n))
        params.append(Param(f"env.skills.{i}.n_train", str(SIZES[i]) if sizes else "null"))
    metrics = []
    for k, step in enumerate(st):
        for i, n in enumerate(names):
            ts = 1000 + k
            metrics += [
                Metric(f"dev_loss/{n}", dev[k, i], ts, int(step)),
                Metric(f"examples/{n}", ex[k, i], ts, int(step)),
                Metric(f"tokens/{n}", tok[k, i], ts, int(step)),
            ]
    for i in range(0, len(metrics), 900):
        client.log_batch(
            rid,
            metrics=metrics[i : i + 900],
            params=params if i == 0 else [],
            tags=[RunTag("mosgym.seed", str(seed))] if i == 0 else [],
        )
    client.set_terminated(rid)
    return rid


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    client = MlflowClient(uri)
    good = client.create_experiment("good")
    for i, m in enumerate(MIXES):
        _log_run(client, good, NAMES, m, seed=i, agent=f"agent{i}")
    client.create_run(good, tags={"mosgym.kind": "parent"})  # parents are ignored
    client.create_experiment("empty")
    mixed = client.create_experiment("mixed")
    _log_run(client, mixed, NAMES, MIXES[0], 0, "x")
    _log_run(client, mixed, ["a", "b", "d"], MIXES[1], 1, "y")
    nosize = client.create_experiment("nosize")
    _log_run(client, nosize, NAMES, MIXES[0], 0, "x", sizes=False)
    return uri


def test_read_runs_from_mlflow(tracking: str) -> None:
    data = read_runs("good", tracking)
    assert data.skill_names == NAMES and data.train_sizes.tolist() == SIZES
    assert len(data.runs) == 6 and data.train == {
        "total_steps": 600,
        "interval": 30,
        "batch_size": 16,
    }
    assert data.tokens_per_example == [16, 16, 16]
    st, ex, dev, _ = simulate_run(MIXES[2], seed=2)
    run = next(r for r in data.runs if r.group == "agent2")
    np.testing.assert_array_equal(run.steps, st)
    np.testing.assert_allclose(run.dev_loss, dev)
    np.testing.assert_allclose(run.examples, ex)


def test_cli_writes_loadable_config_and_report(tracking: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sim-good.yaml"
    rc = main(["--experiment", "good", "--tracking-uri", tracking, "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| skill | held-out R^2" in printed and "| a |" in printed
    report = json.loads((tmp_path / "sim-good.report.json").read_text())
    assert report["holdout_groups"] == ["agent5"] and len(report["fit_runs"]) == 5
    for s in NAMES:  # the simulator's own data: the held-out fit is essentially exact
        assert report["holdout"][s]["r2"] > 0.999 and report["holdout"][s]["rel_err"] < 1e-3
    assert (tmp_path / "sim-good.report.md").read_text().startswith("# Simulator calibration")
    env = gym.make("mosgym/MoSSim-v0", config=str(out))
    env.reset(seed=0)
    assert env.unwrapped.learner.skill_names == NAMES
    np.testing.assert_allclose(env.unwrapped.learner.params.rate, TRUE["rate"], rtol=1e-3)


def test_cli_without_transfer_writes_strict_json(tracking: str, tmp_path: Path, capsys) -> None:
    """--transfer-ridge inf: an identity transfer, said in the header and the report, whose
    JSON stays strict (no Infinity token: other languages' parsers refuse it)."""
    out = tmp_path / "sim-inf.yaml"
    argv = ["--experiment", "good", "--tracking-uri", tracking, "--out", str(out)]
    assert main([*argv, "--transfer-ridge", "inf"]) == 0

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    text = (tmp_path / "sim-inf.report.json").read_text()
    assert json.loads(text, parse_constant=refuse)["transfer_ridge"] == "inf"
    assert out.read_text().startswith(
        "# Calibrated by `python -m mosgym.calibrate --experiment good --transfer-ridge inf`\n"
    )
    np.testing.assert_array_equal(yaml.safe_load(out.read_text())["sim"]["transfer"], np.eye(3))
    assert "Transfer ridge lambda = inf." in capsys.readouterr().out


@pytest.mark.slow
def test_cli_chooses_the_transfer_ridge_by_cv(tracking: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sim-cv.yaml"
    argv = ["--experiment", "good", "--tracking-uri", tracking, "--out", str(out)]
    assert main([*argv, "--transfer-ridge", "cv", "--transfer-ridge-grid", "0,1"]) == 0
    report = json.loads((tmp_path / "sim-cv.report.json").read_text())
    assert set(report["transfer_ridge_cv"]) == {"0.0", "1.0"}
    assert report["transfer_ridge"] == 0.0  # noiseless simulator runs: no penalty wins
    assert out.read_text().startswith(  # the YAML says how it was made
        "# Calibrated by `python -m mosgym.calibrate --experiment good --transfer-ridge cv` "
        "(CV chose 0)\n"
    )
    assert "chosen by leave-one-mixture-out CV" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--transfer-ridge", "-1"])
    assert exc.value.code == 2 and "give a number >= 0 (or inf) or 'cv'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--transfer-ridge", "cv", "--transfer-ridge-grid", "0,x"])
    assert exc.value.code == 2 and "comma-separated" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("experiment", "match"),
    [
        ("empty", "has no runs"),
        ("missing", "no MLflow experiment 'missing'"),
        ("mixed", "different skill sets"),
        ("nosize", "train sizes"),
    ],
)
def test_bad_calibration_sources(
    tracking: str, tmp_path: Path, experiment: str, match: str, capsys
) -> None:
    with pytest.raises(MosgymError, match=match):
        read_runs(experiment, tracking)
    out = tmp_path / "x.yaml"
    assert main(["--experiment", experiment, "--tracking-uri", tracking, "--out", str(out)]) == 2
    assert match.split("'")[0] in capsys.readouterr().err and not out.exists()
