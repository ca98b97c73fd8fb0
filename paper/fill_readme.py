"""Fill paper/README.md's generated blocks from paper/results and the runs (run by make_report.sh).

A block is `<!-- BEGIN name -->` ... `<!-- END name -->`; its content is replaced by
results/name/comparison.md or results/name.md (headings demoted two levels), or, for `runs`,
a table of the logged runs per experiment and agent: seeds, median and total wall time. The runs
are read from MLflow, or from a run archive with --archive DIR (no MLflow store needed).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from mosgym.errors import MosgymError
from mosgym.records.runs import make_client

BLOCK = re.compile(r"(<!-- BEGIN (\S+) -->\n)(.*?)(<!-- END \2 -->)", re.S)


def runs_table(experiments: list[str], client: Any) -> str:
    """Per experiment and agent: finished per-seed runs, seeds, wall time (MLflow wall_time_s)."""
    lines = [
        "| experiment | agent | finished runs | seeds | median wall s/run | total wall min |",
        "|---|---|---|---|---|---|",
    ]
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            continue
        runs = client.search_runs(
            [exp.experiment_id], "tags.`mosgym.kind` = 'run' and attributes.status = 'FINISHED'",
            max_results=5000,
        )  # fmt: skip
        by_agent: dict[str, list] = {}
        for r in runs:
            by_agent.setdefault(r.data.tags.get("mosgym.agent", "?"), []).append(r)
        for agent in sorted(by_agent):
            rs = by_agent[agent]
            walls = [r.data.metrics["wall_time_s"] for r in rs if "wall_time_s" in r.data.metrics]
            seeds = ",".join(sorted({r.data.tags.get("mosgym.seed", "?") for r in rs}, key=str))
            med = f"{statistics.median(walls):.0f}" if walls else "-"
            lines.append(
                f"| {name} | {agent} | {len(rs)} | {seeds} | {med} | {sum(walls) / 60:.1f} |"
            )
    return "\n".join(lines) + "\n"


def block_text(name: str, results: Path, experiments: list[str], client: Any) -> str | None:
    """The block's new text, or None when nothing made it yet (the block is kept as it is, so
    a report rebuilt without those results changes nothing)."""
    if name == "runs":
        return runs_table(experiments, client)
    for path in (results / name / "comparison.md", results / f"{name}.md"):
        if path.exists():
            text = path.read_text(encoding="utf-8")
            return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.M)
    print(f"{name}: no {name}/comparison.md or {name}.md in {results}: kept", file=sys.stderr)
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("readme", type=Path)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--experiments", nargs="+", required=True)
    p.add_argument("--archive", default=None, help="read the runs from this run archive")
    args = p.parse_args()
    try:
        client = make_client(None, args.archive)
    except MosgymError as e:
        print(f"mosgym: error: {e}", file=sys.stderr)
        return 2
    text = args.readme.read_text(encoding="utf-8")

    def fill(m: re.Match) -> str:
        body = block_text(m.group(2), args.results, args.experiments, client)
        return m.group(0) if body is None else m.group(1) + body + m.group(4)

    filled = BLOCK.sub(fill, text)
    args.readme.write_text(filled, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
