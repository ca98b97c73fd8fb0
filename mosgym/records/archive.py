"""The run archive: MLflow runs as plain files in a repository, and back into any MLflow store.

    python -m mosgym.export --experiment paper-skills-tiny [--experiment ...] --out paper/archive
    python -m mosgym.import paper/archive [--experiment NAME ...]      (into MLFLOW_TRACKING_URI)

The files and their format: mosgym.records.archive_format. What is archived, and how ids travel:

- Run ids are kept (labels, notes, `--runs ID` and `--holdout-runs ID` still work); a child
  keeps its parent's id in tag mlflow.parentRunId. `import` makes new ids, rewrites the parent
  tags to them and keeps the archived id in tag mosgym.archive.run_id, which `export` reads back:
  export -> import -> export gives the same bytes.
- Machine noise is left out: tag mlflow.user; mlflow.source.name, and params holding an
  absolute path inside the checkout, become relative to it (a script elsewhere keeps its file
  name). config.yaml is copied byte for byte, its resolved paths included.
- Archived: the active runs, except comparison runs (mosgym.kind=comparison: outputs of
  mosgym.compare, rebuilt from the runs, and one more each time a report is made). Of the
  artifacts only config.yaml: prob_log.csv and the plots are drawn from the metrics.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mosgym.errors import MosgymError
from mosgym.records.archive_format import (
    ARCHIVE_FILE,
    CONFIG_FILE,
    EXPERIMENT_FILE,
    VERSION,
    RunRecord,
    json_bytes,
    open_archive,
    read_run,
    run_folders,
    safe_name,
    write_run,
)
from mosgym.records.runs import KIND_TAG, experiment_id, make_client, run_config, search_all

ARCHIVED_ID_TAG, PARENT_TAG = "mosgym.archive.run_id", "mlflow.parentRunId"


# ---------------------------------------------------------------------------------------------
# Export: MLflow -> files


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    # (timestamp, step) is the order the values were logged in; the sort is stable, so values
    # logged in the same millisecond at the same step keep the store's order.
    hist = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.timestamp, m.step))
    return [(int(m.step), float(m.value)) for m in hist]


def record_of(client: Any, run: Any) -> RunRecord:
    """An MLflow run as a record, under its store's run id (see archived_ids)."""
    info, data = run.info, run.data
    return RunRecord(
        info.run_id, info.run_name or "", info.status, int(info.start_time),
        None if info.end_time is None else int(info.end_time), dict(data.tags),
        dict(data.params), {k: float(v) for k, v in data.metrics.items()},
        {k: _history(client, info.run_id, k) for k in data.metrics},
        run_config(client, info.run_id),
    )  # fmt: skip


# Tags that say who ran a run and where its script lay on that machine: a user name and an
# absolute path, noise in a published archive. The script's name stays, relative to the repo;
# so do params that name a file in the checkout (e.g. an sb3-policy's resolved .zip path).
_MACHINE_TAGS = ("mlflow.user",)
_SOURCE_TAG = "mlflow.source.name"
_REPO = Path(__file__).resolve().parents[2]


def _relative_to_checkout(value: str) -> str:
    """An absolute path inside the checkout, relative to it; any other value unchanged."""
    if not os.path.isabs(value):
        return value
    path = Path(os.path.normpath(value))
    return str(path.relative_to(_REPO)) if path.is_relative_to(_REPO) else value


def portable_tags(tags: dict[str, str]) -> dict[str, str]:
    """`tags` without the machine-specific ones; the source script relative to the checkout
    (a script elsewhere keeps its file name only)."""
    out = {k: v for k, v in tags.items() if k not in _MACHINE_TAGS}
    source = out.get(_SOURCE_TAG)
    if source and os.path.isabs(source):
        relative = _relative_to_checkout(source)
        out[_SOURCE_TAG] = relative if relative != source else Path(source).name
    return out


def portable_params(params: dict[str, str]) -> dict[str, str]:
    """`params` with absolute paths inside the checkout made relative to it."""
    return {k: _relative_to_checkout(v) for k, v in params.items()}


def archived_ids(records: list[RunRecord]) -> list[RunRecord]:
    """Runs that `import` made get back their archived id, and so does their children's tag;
    machine-specific tags are left out and checkout paths made relative (portable_tags,
    portable_params)."""
    ids = {r.run_id: r.tags.get(ARCHIVED_ID_TAG, r.run_id) for r in records}
    out = []
    for r in records:
        tags = {k: v for k, v in portable_tags(r.tags).items() if k != ARCHIVED_ID_TAG}
        if tags.get(PARENT_TAG) in ids:
            tags[PARENT_TAG] = ids[tags[PARENT_TAG]]
        out.append(replace(r, run_id=ids[r.run_id], tags=tags, params=portable_params(r.params)))
    return out


def _swap_in(target: Path, fill: Callable[[Path], None]) -> None:
    """Build `target` in a hidden sibling, then replace it: never a half-written experiment."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old = target.parent / f".{tmp.name}.old"
    try:
        fill(tmp)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def prepare_root(out: Path) -> dict[str, Path]:
    """`out` as an archive (made when new or empty); its experiments."""
    if out.exists() and not out.is_dir():
        raise MosgymError(f"--out {out}: a file, not a folder")
    if not (out / ARCHIVE_FILE).exists():
        if out.exists() and any(out.iterdir()):
            raise MosgymError(
                f"--out {out}: the folder has files but no {ARCHIVE_FILE}, so it is not a run "
                "archive; choose a new or empty folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        (out / ARCHIVE_FILE).write_bytes(
            json_bytes({"format": "mosgym-archive", "version": VERSION})
        )
    return open_archive(out)


def export(client: Any, experiments: list[str], out: Path) -> list[tuple[str, int, Path]]:
    """Write each experiment's runs into archive `out`, replacing what it held of them before;
    (name, runs, folder) per experiment."""
    ids = {name: experiment_id(client, name) for name in experiments}  # all known, or no file
    known = prepare_root(out)
    done = []
    for name, exp_id in ids.items():
        folder = out / safe_name(name)
        if folder.exists() and known.get(name) != folder:
            raise MosgymError(
                f"--experiment {name}: its folder {folder} holds another experiment "
                f"({(folder / EXPERIMENT_FILE)}); export it into another --out"
            )
        runs = search_all(client, exp_id, "")
        runs = [r for r in runs if r.data.tags.get(KIND_TAG) != "comparison"]
        if not runs:
            raise MosgymError(f"--experiment {name}: no runs to export (comparison runs aside)")
        records = archived_ids([record_of(client, r) for r in runs])
        if len({r.folder for r in records}) < len(records):
            raise RuntimeError(f"two runs of {name} share a name and an id prefix")

        def fill(tmp: Path, name: str = name, records: list[RunRecord] = records) -> None:
            meta = {"format": "mosgym-experiment", "version": VERSION, "name": name}
            (tmp / EXPERIMENT_FILE).write_bytes(json_bytes(meta))
            for rec in records:
                write_run(tmp / rec.folder, rec)

        _swap_in(folder, fill)
        done.append((name, len(records), folder))
    return done


# ---------------------------------------------------------------------------------------------
# Import: files -> MLflow


def _log_record(client: Any, exp_id: str, rec: RunRecord, tmp: Path) -> str:
    """Create one run with the record's contents; a run that fails half-way is deleted."""
    from mlflow.entities import Metric, Param

    tags = {k: v for k, v in rec.tags.items() if k != PARENT_TAG}
    rid = client.create_run(exp_id, rec.start_time, tags, rec.run_name or None).info.run_id
    try:
        params = [Param(k, v) for k, v in sorted(rec.params.items())]
        for i in range(0, len(params), 100):  # MLflow's batch limits: 100 params, 1000 metrics
            client.log_batch(rid, params=params[i : i + 100])
        metrics = [
            Metric(key, value, rec.start_time + i, step)
            for key in sorted(rec.histories)
            for i, (step, value) in enumerate(rec.histories[key])
        ]
        for i in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[i : i + 1000])
        if rec.config is not None:
            (tmp / CONFIG_FILE).write_bytes(rec.config)
            client.log_artifact(rid, str(tmp / CONFIG_FILE))
        if rec.status != "RUNNING":
            client.set_terminated(rid, rec.status, rec.end_time)
        # Last: a run with this tag is complete, so an interrupted import can be run again.
        client.set_tag(rid, ARCHIVED_ID_TAG, rec.run_id)
    except BaseException:
        client.delete_run(rid)
        raise
    return str(rid)


def _target_experiment(client: Any, name: str) -> tuple[str, dict[str, str]]:
    """The experiment to import into (made if missing); archived id -> run id of runs already
    imported into it."""
    try:
        exp = client.get_experiment_by_name(name)
    except Exception as e:  # any failure here means the store cannot be read
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MosgymError(
            f"MLflow tracking store {client.tracking_uri} cannot be read ({first[:200]}); "
            "pass --tracking-uri or set MLFLOW_TRACKING_URI to the store to import into"
        ) from None
    if exp is None:
        return str(client.create_experiment(name)), {}
    if exp.lifecycle_stage != "active":
        raise MosgymError(
            f"experiment {name!r} is deleted in {client.tracking_uri}; restore it "
            "(mlflow experiments restore) or import into another store"
        )
    exp_id = str(exp.experiment_id)
    runs = search_all(client, exp_id, "")
    return exp_id, {
        r.data.tags[ARCHIVED_ID_TAG]: r.info.run_id for r in runs if ARCHIVED_ID_TAG in r.data.tags
    }


def read_archive(root: Path, experiments: list[str] | None = None) -> dict[str, list[RunRecord]]:
    """Every run of the archive's experiments (all, or those named), each file read and checked."""
    folders = open_archive(root)
    missing = [e for e in experiments or [] if e not in folders]
    if missing:
        raise MosgymError(
            f"--experiment {' '.join(missing)}: not in archive {root} "
            f"(it holds: {', '.join(folders) or 'nothing'})"
        )
    return {n: [read_run(f) for f in run_folders(folders[n])] for n in experiments or folders}


def import_records(client: Any, chosen: dict[str, list[RunRecord]]) -> list[tuple[str, int, int]]:
    """Load the experiments' runs into the store; runs imported before are skipped.
    (name, runs imported, runs already there) per experiment."""
    done = []
    for name, records in chosen.items():
        exp_id, new_ids = _target_experiment(client, name)
        before = len([r for r in records if r.run_id in new_ids])
        with tempfile.TemporaryDirectory() as tmp:
            for rec in sorted(records, key=lambda r: (r.start_time, r.run_id)):
                if rec.run_id not in new_ids:
                    new_ids[rec.run_id] = _log_record(client, exp_id, rec, Path(tmp))
        for rec in records:  # every run exists now: point children at their parents' new ids
            parent = rec.tags.get(PARENT_TAG)
            if parent is not None:
                client.set_tag(new_ids[rec.run_id], PARENT_TAG, new_ids.get(parent, parent))
        done.append((name, len(records) - before, before))
    return done


def import_archive(
    client: Any, root: Path, experiments: list[str] | None = None
) -> list[tuple[str, int, int]]:
    """read_archive, then import_records: nothing is written unless every file reads."""
    return import_records(client, read_archive(root, experiments))


# ---------------------------------------------------------------------------------------------
# Command lines


def _run_cli(build: Callable[[], argparse.ArgumentParser], work: Callable[[Any], list[str]],
             argv: list[str] | None) -> int:  # fmt: skip
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build().parse_args(argv)
    try:
        lines = work(args)
    except MosgymError as e:
        print(f"mosgym: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _size(folder: Path) -> str:
    return f"{sum(p.stat().st_size for p in folder.rglob('*') if p.is_file()) / 1024:.0f} KiB"


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mosgym.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
        "  mosgym export --experiment paper-skills-tiny --out paper/archive\n"
        "  mosgym export --experiment calib-skills-tiny --experiment paper-sim-skills-tiny \\\n"
        "      --out paper/archive --tracking-uri sqlite:///paper.db",
    )
    p.add_argument("--experiment", action="append", required=True, metavar="NAME",
                   help="MLflow experiment to archive (repeat for several)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="archive folder (made if new)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLflow's)")
    return p


def export_main(argv: list[str] | None = None) -> int:
    def work(args: Any) -> list[str]:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one per run
        done = export(make_client(args.tracking_uri), args.experiment, args.out)
        return [f"exported {n} runs of {name} to {f}/ ({_size(f)})" for name, n, f in done]

    return _run_cli(export_parser, work, argv)


def import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mosgym.import",
        description="Load a run archive (python -m mosgym.export) into an MLflow store: new run "
        "ids, the same names, tags, params, metrics with their steps, nesting and status.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
        "  mosgym import paper/archive               # every experiment, into MLflow's store\n"
        "  mosgym import paper/archive --experiment paper-skills-smollm2 \\\n"
        "      --tracking-uri sqlite:///mine.db      # then: mlflow ui --backend-store-uri "
        "sqlite:///mine.db",
    )
    p.add_argument("archive", type=Path, help="the archive folder")
    p.add_argument("--experiment", action="append", default=None, metavar="NAME",
                   help="only this experiment (repeat for several; default: all)")  # fmt: skip
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLflow's)")
    return p


def import_main(argv: list[str] | None = None) -> int:
    def work(args: Any) -> list[str]:
        chosen = read_archive(args.archive, args.experiment)  # before the store is touched
        client = make_client(args.tracking_uri)
        done = import_records(client, chosen)
        return [
            f"imported {n} runs into experiment {name} at {client.tracking_uri}"
            + (f" ({skipped} already there)" if skipped else "")
            for name, n, skipped in done
        ]

    return _run_cli(import_parser, work, argv)
