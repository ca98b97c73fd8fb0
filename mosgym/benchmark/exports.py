"""The leaderboard's numbers as CSV, full precision, beside the markdown (report stage)."""

from __future__ import annotations

import csv
import io
import math

from mosgym.benchmark.leaderboard import Row, Scores


def _csv_fields(r: Row) -> dict[str, float | int | str]:
    """One leaderboard row as named numbers, in the CSV's column order."""
    return {
        "agent": r.name, "kind": r.kind, "real_runs": r.real_n, "real_iqm": r.real_iqm,
        "real_ci_low": r.real_ci.lo, "real_ci_high": r.real_ci.hi,
        "poi_best_static": r.poi_static, "poi_best_static_low": r.poi_static_ci.lo,
        "poi_best_static_high": r.poi_static_ci.hi, "poi_mos_prop": r.poi_mos,
        "poi_mos_prop_low": r.poi_mos_ci.lo, "poi_mos_prop_high": r.poi_mos_ci.hi,
        "sim_runs": r.sim_n, "sim_iqm": r.sim_iqm, "sim_ci_low": r.sim_ci.lo,
        "sim_ci_high": r.sim_ci.hi, "sim_to_real_gap": r.gap,
        "train_seconds_median": r.train_s, "real_seconds_median": r.real_s,
    }  # fmt: skip


def leaderboard_csv(table: list[Row]) -> str:
    """Full precision; empty cells where there is no number."""

    def f(x: float | int | str) -> str:
        if isinstance(x, float):
            return "" if math.isnan(x) else repr(x)
        return str(x)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for k, r in enumerate(table):
        fields = _csv_fields(r)
        if k == 0:
            w.writerow(fields)
        w.writerow([f(v) for v in fields.values()])
    return buf.getvalue()


def curves_csv(s: Scores) -> str:
    """One line per algorithm x seed x evaluation point."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["agent", "seed", "env_steps", "sim_final_dev_loss_mean"])
    for name, curves in s.curves.items():
        for seed, steps, values in sorted(curves, key=lambda c: int(c[0])):
            for st, v in zip(steps, values, strict=True):
                w.writerow([name, seed, int(st), repr(float(v))])
    return buf.getvalue()


def real_train_csv(s: Scores) -> str:
    """One line per real training episode of an `-real` algorithm."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["agent", "train_seed", "episode", "final_dev_loss_mean", "wall_s"])
    for name in sorted(s.real_train):
        for seed, episode, loss, wall in sorted(s.real_train[name]):
            w.writerow([name, seed, episode, repr(float(loss)), repr(float(wall))])
    return buf.getvalue()
