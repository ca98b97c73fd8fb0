"""`python -m mosgym.fidelity`: rank agreement of agents between real and simulated runs."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mosgym.errors import MosgymError
from mosgym.sim import fidelity
from tests.test_compare import log_run

# Final mean dev loss per seed; real ranks a<b<c<d, simulator ranks a<c<b<d.
REAL = {"a": [1.0, 1.2], "b": [2.0, 2.2], "c": [3.0, 3.2], "d": [4.0, 4.2]}
SIM = {"a": [10.0, 10.0], "b": [30.0, 30.0], "c": [20.0, 20.0], "d": [40.0, 40.0]}


def uri_of(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture()
def client(tmp_path) -> MlflowClient:
    c = MlflowClient(uri_of(tmp_path))
    for name, table in (("real", REAL), ("sim", SIM)):
        exp = c.create_experiment(name)
        for agent, finals in table.items():
            for seed, v in enumerate(finals):
                log_run(c, exp, agent, seed, [5.0, 4.0, 3.0, 2.0, v])
    other = c.create_experiment("sim-other-skills")
    for agent in REAL:
        log_run(c, other, agent, 0, [5.0, 4.0, 3.0, 2.0, 1.0], skills=("code", "chat"))
    return c


def test_spearman_matches_the_hand_computed_value(client) -> None:
    got = fidelity.measure(client, "real", "sim", ["a", "b", "c", "d"])
    # Ranks 1,2,3,4 vs 1,3,2,4: sum d^2 = 2, rho = 1 - 6 * 2 / (4 * 15) = 0.8.
    assert got.spearman == pytest.approx(0.8)
    assert got.real.tolist() == pytest.approx([1.1, 2.1, 3.1, 4.1])
    assert got.seeds_real == [2, 2, 2, 2]
    table = fidelity.markdown(got, "real", "sim")
    assert "| c | 3.1000 (2) | 3 | 20.0000 (2) | 2 |" in table
    assert "**0.800**" in table


def test_tied_agents_share_their_average_rank() -> None:
    """Three agents with the same losses (as UNI, ODM and MoS when they sample alike) get one
    rank in the table, the one Spearman's rho counts with; no arbitrary order among them."""
    f = fidelity.Fidelity(
        ["u", "o", "m", "p"], np.array([0.8, 0.8, 0.8, 0.9]), np.array([1.0, 2.0, 3.0, 4.0]),
        [3] * 4, [3] * 4, 0.775,
    )  # fmt: skip
    table = fidelity.markdown(f, "real", "sim")
    assert "| u | 0.8000 (3) | 2 | 1.0000 (3) | 1 |" in table
    assert "| m | 0.8000 (3) | 2 | 3.0000 (3) | 3 |" in table
    assert "| p | 0.9000 (3) | 4 | 4.0000 (3) | 4 |" in table


def test_identical_rankings_give_one(client) -> None:
    assert fidelity.measure(client, "real", "real", ["a", "b", "c"]).spearman == pytest.approx(1)


def test_bad_inputs_are_refused_with_a_clear_message(client) -> None:
    with pytest.raises(MosgymError, match="skills"):
        fidelity.measure(client, "real", "sim-other-skills", ["a", "b", "c"])
    with pytest.raises(MosgymError, match="at least 3 agents"):
        fidelity.measure(client, "real", "sim", ["a", "b"])
    with pytest.raises(MosgymError, match="zzz"):
        fidelity.measure(client, "real", "sim", ["a", "b", "zzz"])


def test_cli_prints_the_table_and_exits_2_on_bad_input(client, tmp_path, capsys) -> None:
    uri = uri_of(tmp_path)
    assert fidelity.main(["--real", "real", "--sim", "sim", "--agents", "a", "b", "c",
                          "--tracking-uri", uri]) == 0  # fmt: skip
    assert "Spearman" in capsys.readouterr().out
    assert fidelity.main(["--real", "real", "--sim", "nope", "--agents", "a", "b", "c",
                          "--tracking-uri", uri]) == 2  # fmt: skip
    assert "mosgym: error:" in capsys.readouterr().err
