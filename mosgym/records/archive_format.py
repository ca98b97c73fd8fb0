"""The run archive's files: what `python -m mosgym.export` writes, read back with checks.

Layout, format version 1 (one folder per experiment, one per run):

    DIR/archive.json                      {"format": "mosgym-archive", "version": 1}
    DIR/<experiment>/experiment.json      {"format": "mosgym-experiment", "name": ..., ...}
    DIR/<experiment>/<run name>__<first 8 characters of the run id>/
        run.json        run id, name, status, start and end time (ms since the epoch), tags,
                        params, and each metric's latest value (what MLflow shows as the run's
                        metrics: final/..., wall_time_s, ...)
        metrics.csv.gz  every metric's whole history, columns key,step,value: rows by key, and
                        within a key in the order they were logged
        config.yaml     the run's resolved config artifact, byte for byte (when it has one)

Choices, and why:
- The same store gives the same bytes: JSON with sorted keys and Python's shortest round-trip
  float repr (the exact float64, nothing rounded), the CSV written the same way, gzip with no
  file name and mtime 0. A NaN metric is written as NaN (in the CSV; in run.json as Python's
  JSON writes it, an extension some strict parsers refuse).
- Metric timestamps are left out. A deterministic run re-run gives the same values but new
  timestamps on every row; and mosgym uses them only to order a key's values (a resumed or
  multi-episode run repeats steps), which the row order keeps. Readers and `import` give row i
  of a key the timestamp start_time + i ms. Wall time is kept as the metric wall_time_s.
- Curves are gzipped. A default run (`python -m mosgym.run`: 1000 steps, 20 intervals; seed 0 of
  paper/archive's mos-cossim-ema: 69 metric keys, 715 rows) takes 15 KB: metrics.csv.gz 7 KB
  (23 KB as plain CSV), run.json 5 KB (24 params), config.yaml 3 KB. paper/archive (162 runs,
  468 files) is 2.0 MB on disk and 1.2 MB as git objects. Git compresses its objects anyway, so
  the repository grows by about as much with plain CSV, but a checkout would be twice the size;
  run.json, the part a reviewer reads in a diff, stays plain text.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mosgym.errors import MosgymError

VERSION = 1
ARCHIVE_FILE, EXPERIMENT_FILE, RUN_FILE = "archive.json", "experiment.json", "run.json"
METRICS_FILE, CONFIG_FILE = "metrics.csv.gz", "config.yaml"
METRICS_COLUMNS = ["key", "step", "value"]
STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_FIX = "restore it from git (git checkout -- PATH) or export the runs again"


@dataclass
class RunRecord:
    """One archived run; `histories`: metric key -> [(step, value)] in logging order."""

    run_id: str
    run_name: str
    status: str
    start_time: int
    end_time: int | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    config: bytes | None = None

    @property
    def folder(self) -> str:
        return f"{safe_name(self.run_name or 'run')[:80]}__{self.run_id[:8]}"

    def info_json(self) -> dict[str, Any]:
        keys = ("run_id", "run_name", "status", "start_time", "end_time", "tags", "params")
        return {
            "format": "mosgym-run",
            "version": VERSION,
            **{k: getattr(self, k) for k in keys},
            "metrics": self.metrics,
        }


def safe_name(text: str) -> str:
    """A folder name for an experiment or run name (the real name is kept inside the folder)."""
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "_"


# ---------------------------------------------------------------------------------------------
# Files: write and read


def json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def metrics_bytes(histories: dict[str, list[tuple[int, float]]]) -> bytes:
    """The gzipped CSV of every history; no file name and mtime 0 in the header, so the bytes
    depend only on the values."""
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(METRICS_COLUMNS)
    for key in sorted(histories):
        w.writerows([key, step, repr(float(value))] for step, value in histories[key])
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(text.getvalue().encode())
    return out.getvalue()


def write_run(folder: Path, rec: RunRecord) -> None:
    folder.mkdir()
    (folder / RUN_FILE).write_bytes(json_bytes(rec.info_json()))
    (folder / METRICS_FILE).write_bytes(metrics_bytes(rec.histories))
    if rec.config is not None:
        (folder / CONFIG_FILE).write_bytes(rec.config)


def read_json(path: Path, kind: str) -> dict[str, Any]:
    """A JSON file of ours (`"format": kind`, this version), or one error line saying why not."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MosgymError(f"{path}: missing; {_FIX.replace('PATH', str(path))}") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise MosgymError(
            f"{path}: not valid JSON ({e}); the archive is damaged: "
            f"{_FIX.replace('PATH', str(path))}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != kind:
        raise MosgymError(
            f'{path}: not a mosgym archive file (expected "format": "{kind}"); '
            "an archive holds only what `python -m mosgym.export` writes"
        )
    if data.get("version") != VERSION:
        raise MosgymError(
            f"{path}: archive format version {data.get('version')!r}, but this mosgym reads "
            f"version {VERSION}; use the mosgym that wrote it, or export the runs again"
        )
    return data


def _bad(path: Path, what: str) -> MosgymError:
    return MosgymError(f"{path}: {what}; the archive is damaged: {_FIX.replace('PATH', str(path))}")


def _check_run_fields(path: Path, data: dict[str, Any]) -> None:
    types = {"run_id": str, "run_name": str, "status": str, "start_time": int}
    types |= {"tags": dict, "params": dict, "metrics": dict}
    for key, kind in types.items():
        if not isinstance(data.get(key), kind):
            raise _bad(path, f"field {key!r} is missing or not a {kind.__name__}")
    if data["status"] not in STATUSES:
        raise _bad(path, f"status {data['status']!r} is not one of {', '.join(STATUSES)}")
    if not isinstance(data.get("end_time"), int | None):
        raise _bad(path, "field 'end_time' is not a number of milliseconds or null")
    for key in ("tags", "params"):
        if not all(isinstance(v, str) for v in data[key].values()):
            raise _bad(path, f"a value in {key!r} is not a string")
    if not all(isinstance(v, int | float) for v in data["metrics"].values()):
        raise _bad(path, "a value in 'metrics' is not a number")


def read_run_info(folder: Path) -> RunRecord:
    """The run.json of a run folder (no histories, no config)."""
    path = folder / RUN_FILE
    data = read_json(path, "mosgym-run")
    _check_run_fields(path, data)
    return RunRecord(
        data["run_id"], data["run_name"], data["status"], data["start_time"], data["end_time"],
        data["tags"], data["params"], {k: float(v) for k, v in data["metrics"].items()},
    )  # fmt: skip


def read_histories(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv.gz of a run folder: key -> [(step, value)] in row order."""
    path = folder / METRICS_FILE
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as e:
        raise _bad(path, f"not a gzipped CSV file ({e})") from None
    if not rows or rows[0] != METRICS_COLUMNS:
        head = ",".join(rows[0]) if rows else "nothing"
        raise _bad(path, f"columns are {head!r}, not {','.join(METRICS_COLUMNS)!r}")
    out: dict[str, list[tuple[int, float]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            key, step, value = row
            out.setdefault(key, []).append((int(step), float(value)))
        except ValueError:
            raise _bad(path, f"line {line} is not key,step,value: {','.join(row)[:80]!r}") from None
    return out


def read_run(folder: Path) -> RunRecord:
    """A whole run folder: run.json, the histories and config.yaml when there."""
    rec = read_run_info(folder)
    config = folder / CONFIG_FILE
    return replace(
        rec,
        histories=read_histories(folder),
        config=config.read_bytes() if config.exists() else None,
    )


def open_archive(root: Path) -> dict[str, Path]:
    """Experiment name -> its folder, after checking that `root` is an archive of ours."""
    if not root.is_dir():
        raise MosgymError(
            f"--archive {root}: no such folder; write one with "
            "`python -m mosgym.export --experiment NAME --out FOLDER`"
        )
    if not (root / ARCHIVE_FILE).exists():
        raise MosgymError(
            f"--archive {root}: not a mosgym run archive (no {ARCHIVE_FILE}); write one with "
            "`python -m mosgym.export --experiment NAME --out FOLDER`"
        )
    read_json(root / ARCHIVE_FILE, "mosgym-archive")
    out: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = read_json(folder / EXPERIMENT_FILE, "mosgym-experiment").get("name")
        if not isinstance(name, str) or name in out:
            raise _bad(folder / EXPERIMENT_FILE, f"experiment name {name!r} is not unique text")
        out[name] = folder
    return out


def run_folders(experiment: Path) -> list[Path]:
    """The run folders of an experiment folder (every visible sub-folder is one)."""
    return sorted(p for p in experiment.iterdir() if p.is_dir() and not p.name.startswith("."))
