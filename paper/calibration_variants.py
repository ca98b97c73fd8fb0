"""Compare calibrations of one simulator side by side (run by make_report.sh; issue 16).

    python paper/calibration_variants.py [--archive DIR] --real paper-skills-smollm2 \
        --agents static-prop static-uni ... \
        --variant "flat, no ridge=envs/sim-skills-smollm2.yaml:paper-sim-skills-smollm2" ...

A variant is LABEL=YAML:SIM_EXPERIMENT: the calibrated config (its `.report.json` beside it
says which runs were fitted, which held out, and the transfer ridge) and the experiment where
the agents ran on it. One row per variant: the held-out fit per skill, the fitted transfer from
the skill with the largest PROP weight to each other skill at its most negative, and the
fidelity on the agents (mean |sim - real| final mean dev loss, Spearman's rho, and the static
PROP agent's simulated score beside its real one). Read from the runs, nothing typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from mosgym.errors import MosgymError
from mosgym.records.runs import make_client
from mosgym.sim.fidelity import measure


def variant_row(
    client: object, label: str, spec: str, real: str, agents: list[str]
) -> tuple[str, list[str]]:
    """The variant's table row, and its skills in order."""
    path, _, sim_exp = spec.rpartition(":")
    cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    report = json.loads(Path(path).with_suffix(".report.json").read_text(encoding="utf-8"))
    skills = report["skills"]
    held = " / ".join(f"{report['holdout'][s]['r2']:.2f}" for s in skills)
    transfer = np.array(cfg["sim"]["transfer"])
    sizes = np.array([s["n_train"] for s in cfg["skills"]], dtype=float)
    big = int(np.argmax(sizes))  # PROP's heaviest skill: where an undetermined transfer shows
    others = [i for i in range(len(skills)) if i != big]
    worst = min(others, key=lambda i: transfer[i, big])
    f = measure(client, real, sim_exp, agents)
    prop = agents.index("static-prop") if "static-prop" in agents else None
    lam = float(report.get("transfer_ridge", 0.0))  # "inf" is a string in strict JSON
    prop_cell = "-" if prop is None else f"{f.sim[prop]:.3f} (real {f.real[prop]:.3f})"
    row = (
        f"| {label} | {len(report['fit_runs'])} | {lam:g} | {held} | "
        f"{skills[big]} -> {skills[worst]} {transfer[worst, big]:+.2f} | {prop_cell} | "
        f"{np.mean(np.abs(f.sim - f.real)):.3f} | {f.spearman:.3f} |"
    )
    return row, skills


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", default=None, help="read the runs from this run archive")
    p.add_argument("--real", required=True, help="experiment of the real runs")
    p.add_argument("--agents", nargs="+", required=True)
    p.add_argument("--variant", action="append", required=True, help="LABEL=YAML:SIM_EXPERIMENT")
    args = p.parse_args(argv)
    try:
        client = make_client(None, args.archive)
        rows, skills = [], []
        for v in args.variant:
            label, _, spec = v.partition("=")
            row, skills = variant_row(client, label, spec, args.real, args.agents)
            rows.append(row)
    except (MosgymError, OSError, KeyError, ValueError) as e:
        print(f"mosgym: error: calibration variants: {e}", file=sys.stderr)
        return 2
    print(
        f"Calibrations of the simulator for `{args.real}`: the held-out fit (R^2 per skill: "
        f"{', '.join(skills)}), the most negative transfer from the largest skill, and "
        f"fidelity over {len(args.agents)} agents ({', '.join(args.agents)}), same seeds.\n"
    )
    print(
        "| calibration | fit runs | transfer ridge | held-out R^2 | most negative transfer "
        "| sim PROP | mean abs sim-real | Spearman |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
