"""Write the leaderboard: a folder, the parent run's artifacts, and a README block.

The folder (`<out>/report`: leaderboard.md, leaderboard.csv, learning_curves.csv, the three
PNGs, and real_train_curves.csv when an algorithm was trained on the real env) is built in a
temporary sibling and swapped in, never half-written. With a README, the markdown also goes to
`<readme folder>/results/benchmark-<suite>.md` (PNGs and the CSVs beside it in a folder of that
name) and between the README's `<!-- BEGIN benchmark-<suite> -->` and `<!-- END ... -->`
markers, headings demoted two levels: exactly what paper/fill_readme.py writes from that file,
so `paper/make_report.sh` keeps the block as it is.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosgym.analysis.compare import write_atomically
from mosgym.benchmark import tracking as bt
from mosgym.benchmark.exports import curves_csv, leaderboard_csv, real_train_csv
from mosgym.benchmark.figures import FIGURES, write_figures
from mosgym.benchmark.leaderboard import Row, load_scores, markdown, rows
from mosgym.benchmark.protocol import Settings
from mosgym.errors import MosgymError

BLOCK = r"(<!-- BEGIN {name} -->\n)(.*?)(<!-- END {name} -->)"


@dataclass
class Report:
    """What the report stage wrote."""

    markdown: str
    table: list[Row]
    folder: Path
    readme: Path | None


def run_report_stage(
    client: Any, settings: Settings, readme: Path | None = None, n_boot: int = 2000
) -> Report:
    """Read MLflow, write the folder, attach it to the parent run, fill the README block."""
    if readme is not None:
        check_block(readme, block_name(settings))
    s = load_scores(client, settings)
    table = rows(s, n_boot)
    md = markdown(settings, s, table, figures=".")
    folder = settings.out / "report"

    def fill(tmp: Path) -> None:
        (tmp / "leaderboard.md").write_text(md, encoding="utf-8")
        (tmp / "leaderboard.csv").write_text(leaderboard_csv(table), encoding="utf-8")
        (tmp / "learning_curves.csv").write_text(curves_csv(s), encoding="utf-8")
        if s.real_train:
            (tmp / "real_train_curves.csv").write_text(real_train_csv(s), encoding="utf-8")
        write_figures(str(tmp), s, table)

    write_atomically(folder, fill)
    exp_id = bt.experiment_id(client, settings.experiment, create=False)
    parent = bt.find_parent(client, exp_id, settings.bench_id)
    assert parent is not None  # load_scores found it
    client.log_artifacts(parent.run_id, str(folder), "report")
    metrics = {}
    for r in table:
        for key, value in (
            ("real_iqm", r.real_iqm),
            ("sim_iqm", r.sim_iqm),
            ("poi_best_static", r.poi_static),
        ):
            if value == value:  # not NaN
                metrics[f"{key}/{r.name}"] = value
    bt.log_metrics(client, parent.run_id, metrics)
    if readme is not None:
        fill_readme(readme, settings, s, table)
    return Report(md, table, folder, readme)


def block_name(settings: Settings) -> str:
    return f"benchmark-{settings.suite.name}"


def check_block(readme: Path, name: str) -> None:
    if not readme.is_file():
        raise MosgymError(f"--readme {readme}: file not found")
    if not re.search(BLOCK.format(name=re.escape(name)), readme.read_text(encoding="utf-8"), re.S):
        raise MosgymError(
            f"--readme {readme}: no block for this suite; add the two lines "
            f"'<!-- BEGIN {name} -->' and '<!-- END {name} -->' where the leaderboard goes"
        )


def demote(text: str) -> str:
    """Headings two levels down, as paper/fill_readme.py does."""
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.M)


def fill_readme(readme: Path, settings: Settings, s: Any, table: list[Row]) -> None:
    """results/<block>.md and its PNGs next to the README, and the block between the markers."""
    name = block_name(settings)
    results = readme.parent / "results"
    figures = results / name
    figures.mkdir(parents=True, exist_ok=True)
    write_figures(str(figures), s, table)
    # The numbers behind the block, so a report can be re-read without the MLflow store.
    (figures / "leaderboard.csv").write_text(leaderboard_csv(table), encoding="utf-8")
    (figures / "learning_curves.csv").write_text(curves_csv(s), encoding="utf-8")
    if s.real_train:
        (figures / "real_train_curves.csv").write_text(real_train_csv(s), encoding="utf-8")
    md = markdown(settings, s, table, figures=f"results/{name}")
    (results / f"{name}.md").write_text(md, encoding="utf-8")
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(BLOCK.format(name=re.escape(name)), re.S)
    new = pattern.sub(lambda m: m.group(1) + demote(md) + m.group(3), text)
    with tempfile.NamedTemporaryFile(
        "w", dir=readme.parent, delete=False, encoding="utf-8", suffix=".tmp"
    ) as f:
        f.write(new)
    Path(f.name).replace(readme)


__all__ = ["FIGURES", "Report", "block_name", "check_block", "fill_readme", "run_report_stage"]
