"""What `mosgym.calibrate` writes: the fitted env config and its report, as files.

Split from mosgym.sim.calibrate (which reads the runs, fits and builds the config): the YAML
with a header saying how it was made, `<stem>.report.json` and `<stem>.report.md` (the
per-skill fit table and how the transfer ridge was set).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml


def _ridge_lines(report: dict[str, Any]) -> list[str]:
    """How the transfer ridge was set, when it was (reports before it have no key)."""
    lam, cv = float(report.get("transfer_ridge", 0.0)), report.get("transfer_ridge_cv")
    if not lam and not cv:
        return []
    line = f"Transfer ridge lambda = {lam:g}"
    if cv:
        scores = ", ".join(f"{float(k):g}: {v:.4f}" for k, v in cv.items())
        line += (
            ", chosen by leave-one-mixture-out CV on the fit runs "
            f"(mean squared log error: {scores})"
        )
        if len(cv) > 1 and np.isfinite(lam) and float(lam) == max(float(k) for k in cv):
            line += "; the largest lambda tried: a larger one may predict better still"
    return [line + ".", ""]


def report_markdown(report: dict[str, Any]) -> str:
    """The per-skill fit table (held-out and fit runs) as markdown."""
    lines = [
        f"# Simulator calibration: {report['experiment']}",
        "",
        f"Fit runs: {len(report['fit_runs'])}; held-out runs: {len(report['holdout_runs'])} "
        f"(groups: {', '.join(report['holdout_groups']) or 'none'}).",
        "",
        *_ridge_lines(report),
        "| skill | held-out R^2 | held-out rel. err | fit R^2 | fit rel. err |",
        "|---|---|---|---|---|",
    ]
    for s in report["skills"]:
        h, f = report["holdout"].get(s, {}), report["fit"].get(s, {})

        def cell(d: dict[str, float], k: str) -> str:
            return f"{d[k]:.3f}" if k in d and np.isfinite(d[k]) else "-"

        row = [cell(h, "r2"), cell(h, "rel_err"), cell(f, "r2"), cell(f, "rel_err")]
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, config: dict[str, Any], report: dict[str, Any]) -> tuple[Path, Path]:
    """Write the YAML and its report (.report.json, .report.md) next to it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    ridge = float(report.get("transfer_ridge", 0.0))
    command, note = f"python -m mosgym.calibrate --experiment {report['experiment']}", ""
    if "transfer_ridge_cv" in report:
        command, note = f"{command} --transfer-ridge cv", f" (CV chose {ridge:g})"
    elif ridge:
        command = f"{command} --transfer-ridge {ridge:g}"
    header = f"# Calibrated by `{command}`{note}\n"
    out.write_text(header + yaml.safe_dump(config, sort_keys=False, width=100), encoding="utf-8")
    stem = out.with_suffix("")
    js, md = Path(f"{stem}.report.json"), Path(f"{stem}.report.md")
    js.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md.write_text(report_markdown(report), encoding="utf-8")
    return js, md
