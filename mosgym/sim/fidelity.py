"""Simulator fidelity: does MoSSim rank data-scheduling agents the way the real env does?

    python -m mosgym.run --env sim-skills-tiny --agent static-prop --seeds 0-4 --experiment sim-x
    ...                                          (the same agents and seeds on the simulator)
    python -m mosgym.fidelity --real paper-skills-tiny --sim sim-x \\
        --agents static-prop static-temp static-uni mos-cossim-ema

Reads the FINISHED per-seed runs of both MLflow experiments (the compare command's reader; or of
a run archive's, with --archive DIR), takes
each agent's final mean dev loss averaged over its seeds in each, and reports the Spearman rank
correlation between the two (scipy), with the two rankings side by side. Absolute losses differ
between simulator and model by design of the calibration target (curves, not entropies), so only
the ranking is compared.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata, spearmanr

from mosgym.errors import MosgymError
from mosgym.records.runs import load_runs, make_client

FINAL_KEY = "final/dev_loss_mean"


@dataclass
class Fidelity:
    """Per-agent mean final dev loss in each experiment, and their rank agreement."""

    agents: list[str]
    real: np.ndarray
    sim: np.ndarray
    seeds_real: list[int]
    seeds_sim: list[int]
    spearman: float


def agent_means(client: object, experiment: str, agents: list[str]) -> tuple[dict, dict, tuple]:
    """agent -> mean final mean dev loss over seeds, agent -> seed count, and the skill names."""
    runs = load_runs(client, experiment, None, agents).runs
    values: dict[str, list[float]] = {a: [] for a in agents}
    for r in runs:
        v = r.finals.get(FINAL_KEY, math.nan)
        if math.isfinite(v):
            values[r.agent].append(v)
    empty = [a for a, v in values.items() if not v]
    if empty:
        raise MosgymError(
            f"experiment {experiment!r}: no final mean dev loss for {', '.join(empty)}; "
            "run those agents there first"
        )
    means = {a: float(np.mean(v)) for a, v in values.items()}
    return means, {a: len(v) for a, v in values.items()}, runs[0].skills


def rank_agreement(agents: list[str], real: dict, sim: dict) -> float:
    """Spearman's rho between the agents' losses in the two envs (ties get average ranks)."""
    if len(agents) < 3:
        raise MosgymError(f"--agents: need at least 3 agents for a rank correlation, got {agents}")
    rho = spearmanr([real[a] for a in agents], [sim[a] for a in agents]).statistic
    return float(rho)


def measure(client: object, real_exp: str, sim_exp: str, agents: list[str]) -> Fidelity:
    real, n_real, real_skills = agent_means(client, real_exp, agents)
    sim, n_sim, sim_skills = agent_means(client, sim_exp, agents)
    if real_skills != sim_skills:
        raise MosgymError(
            f"--sim {sim_exp}: skills {list(sim_skills)} differ from --real {real_exp}'s "
            f"{list(real_skills)}; calibrate the simulator on this skill set"
        )
    return Fidelity(
        agents,
        np.array([real[a] for a in agents]),
        np.array([sim[a] for a in agents]),
        [n_real[a] for a in agents],
        [n_sim[a] for a in agents],
        rank_agreement(agents, real, sim),
    )


def _ranks(x: np.ndarray) -> list[str]:
    """1 = lowest loss; tied agents share their average rank, as in the Spearman rho."""
    return [f"{r:g}" for r in rankdata(x)]


def markdown(f: Fidelity, real_exp: str, sim_exp: str) -> str:
    rr, rs = _ranks(f.real), _ranks(f.sim)
    lines = [
        f"Final mean dev loss, mean over seeds: real `{real_exp}` vs simulator `{sim_exp}`.",
        "",
        "| agent | real (seeds) | real rank | sim (seeds) | sim rank |",
        "|---|---|---|---|---|",
    ]
    for k, a in enumerate(f.agents):
        lines.append(
            f"| {a} | {f.real[k]:.4f} ({f.seeds_real[k]}) | {rr[k]} | "
            f"{f.sim[k]:.4f} ({f.seeds_sim[k]}) | {rs[k]} |"
        )
    lines += ["", f"Spearman rank correlation (real vs sim): **{f.spearman:.3f}**"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mosgym.fidelity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example:\n"
        "  mosgym fidelity --real paper-skills-tiny --sim paper-sim-skills-tiny \\\n"
        "      --agents static-prop static-temp static-uni mos-cossim-ema",
    )
    p.add_argument("--real", required=True, help="MLflow experiment of real-env runs")
    p.add_argument("--sim", required=True, help="MLflow experiment of simulator runs")
    p.add_argument("--agents", nargs="+", required=True, metavar="A")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLflow's)")
    p.add_argument("--archive", default=None, help="read a run archive (mosgym.export), not MLflow")
    args = p.parse_args(argv)
    try:
        client = make_client(args.tracking_uri, args.archive)
        result = measure(client, args.real, args.sim, args.agents)
    except MosgymError as e:
        print(f"mosgym: error: {e}", file=sys.stderr)
        return 2
    print(markdown(result, args.real, args.sim), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
