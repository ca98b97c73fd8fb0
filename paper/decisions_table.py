"""The same agents at two intervals S, side by side (issue 15, item 4; run by make_report.sh).

    python paper/decisions_table.py [--archive DIR] --agents ppo sac odm mos-cossim-ema \
        --interval "50=paper-skills-tiny" --interval "10=paper-skills-tiny-s10" --seeds 0 1 2

Per agent and interval: the final mean dev loss of each seed (only the seeds given, so both
columns hold the same seeds), their mean, and the median wall time per run. Read from the runs
(MLflow or a run archive), nothing typed by hand.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from mosgym.errors import MosgymError
from mosgym.records.runs import load_runs, make_client

FINAL = "final/dev_loss_mean"


def column(client: object, experiment: str, agents: list[str], seeds: list[str]) -> dict:
    """agent -> (per-seed finals in seed order, median wall s); seeds missing -> error."""
    runs = load_runs(client, experiment, None, agents).runs
    out = {}
    for agent in agents:
        mine = {r.seed: r for r in runs if r.agent == agent and r.seed in seeds}
        missing = [s for s in seeds if s not in mine]
        if missing:
            raise MosgymError(f"{experiment}: no finished run of {agent} with seed {missing}")
        finals = [mine[s].finals[FINAL] for s in seeds]
        walls = [
            client.get_run(mine[s].run_id).data.metrics.get("wall_time_s", float("nan"))
            for s in seeds
        ]
        out[agent] = (finals, statistics.median(walls))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", default=None, help="read the runs from this run archive")
    p.add_argument("--agents", nargs="+", required=True)
    p.add_argument("--interval", action="append", required=True, help="S=EXPERIMENT")
    p.add_argument("--seeds", nargs="+", required=True)
    args = p.parse_args(argv)
    try:
        client = make_client(None, args.archive)
        cols = []
        for spec in args.interval:
            s, _, experiment = spec.partition("=")
            cols.append((s, experiment, column(client, experiment, args.agents, args.seeds)))
    except MosgymError as e:
        print(f"mosgym: error: decisions table: {e}", file=sys.stderr)
        return 2
    seeds = ",".join(args.seeds)
    head = "| agent |" + "".join(
        f" S = {s}: final mean dev loss (seeds {seeds}) | mean | wall s/run |" for s, _, _ in cols
    )
    print(
        "Final mean dev loss ↓ at each interval S (1000 steps: S = 50 is 20 scheduler "
        "decisions, S = 10 is 100), same seeds; experiments: "
        + ", ".join(f"S = {s} `{e}`" for s, e, _ in cols)
        + ".\n"
    )
    print(head)
    print("|---|" + "---|---|---|" * len(cols))
    for agent in args.agents:
        cells = []
        for _, _, col in cols:
            finals, wall = col[agent]
            per_seed = " / ".join(f"{v:.3f}" for v in finals)
            cells.append(f" {per_seed} | {statistics.fmean(finals):.3f} | {wall:.0f} |")
        print(f"| {agent} |" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
