"""A run archive read through the part of MlflowClient's API that mosgym's readers use.

`mosgym.records.runs.make_client(archive=DIR)` returns one, and compare, fidelity, calibrate and
paper/fill_readme.py then read the archive exactly as they read an MLflow experiment: the same
runs as MLflow's own entities (Run, Metric, Experiment), filtered, sorted and paged by MLflow's
own in-memory search (SearchUtils, what its file store uses; natural order start time then run
id, as in its SQL store), so every number they compute is the same to the last digit. Read only:
it has no method that logs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mosgym.errors import MosgymError
from mosgym.records.archive_format import (
    CONFIG_FILE,
    RunRecord,
    open_archive,
    read_histories,
    read_run_info,
    run_folders,
)


class ArchiveReader:
    """get_experiment_by_name, search_experiments, search_runs, get_run, get_metric_history,
    and the one artifact an archive keeps (config.yaml): list_artifacts, download_artifacts."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._experiments = open_archive(self.root)  # checks the archive before anything else
        self._runs: dict[str, list[Any]] = {}
        self._records: dict[str, tuple[RunRecord, Path]] = {}
        self._histories: dict[str, dict[str, list[Any]]] = {}

    @property
    def tracking_uri(self) -> str:
        """Where the runs come from, for messages (MlflowClient has the same attribute)."""
        return f"archive {self.root}"

    def _experiment(self, name: str) -> Any:
        from mlflow.entities import Experiment

        folder = self._experiments[name]
        return Experiment(folder.name, name, str(folder), "active")

    def get_experiment_by_name(self, name: str) -> Any:
        return self._experiment(name) if name in self._experiments else None

    def search_experiments(self, *_: Any, **__: Any) -> list[Any]:
        return [self._experiment(n) for n in self._experiments]

    def _load(self, exp_id: str) -> list[Any]:
        """Every run of an experiment folder, read once."""
        if exp_id not in self._runs:
            folder = next((f for f in self._experiments.values() if f.name == exp_id), None)
            runs = []
            for run_folder in run_folders(folder) if folder is not None else []:
                rec = read_run_info(run_folder)
                if rec.run_id in self._records:
                    raise MosgymError(
                        f"{run_folder}: run {rec.run_id} is archived twice in {self.root}; "
                        "keep one folder per run (export the experiment again)"
                    )
                self._records[rec.run_id] = (rec, run_folder)
                runs.append(_entity(rec, exp_id, run_folder))
            self._runs[exp_id] = runs
        return self._runs[exp_id]

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: Any = None,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> Any:
        """Like MlflowClient.search_runs; an archive holds active runs only (run_view_type)."""
        from mlflow.store.entities.paged_list import PagedList
        from mlflow.utils.search_utils import SearchUtils

        runs = [r for e in experiment_ids for r in self._load(str(e))]
        runs = SearchUtils.sort(SearchUtils.filter(runs, filter_string), order_by)
        page, token = SearchUtils.paginate(runs, page_token, max_results)
        return PagedList(page, token)

    def get_run(self, run_id: str) -> Any:
        """The run; MlflowException (as MLflow raises) when no experiment of the archive has it."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        for folder in self._experiments.values():
            for run in self._load(folder.name):
                if run.info.run_id == run_id:
                    return run
        raise MlflowException(
            f"Run '{run_id}' not found in {self.tracking_uri}", RESOURCE_DOES_NOT_EXIST
        )

    def get_metric_history(self, run_id: str, key: str) -> list[Any]:
        """The key's values in logging order; row i gets the timestamp start_time + i ms."""
        from mlflow.entities import Metric

        if run_id not in self._histories:
            folder = self._folder(run_id)
            rec = self._records[run_id][0]
            self._histories[run_id] = {
                k: [Metric(k, v, rec.start_time + i, s) for i, (s, v) in enumerate(rows)]
                for k, rows in read_histories(folder).items()
            }
        return list(self._histories[run_id].get(key, []))

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Any]:
        """config.yaml when the run has one (the only artifact archived), as MLflow lists it."""
        from mlflow.entities import FileInfo

        config = self._folder(run_id) / CONFIG_FILE
        if path or not config.exists():
            return []
        return [FileInfo(CONFIG_FILE, False, config.stat().st_size)]

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        """A copy of the artifact in dst_path (a new temporary folder when None), as MLflow."""
        src = self._folder(run_id) / path
        if path != CONFIG_FILE or not src.exists():
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

            raise MlflowException(
                f"run {run_id} has no artifact {path!r} in {self.tracking_uri}",
                RESOURCE_DOES_NOT_EXIST,
            )
        dst = Path(dst_path or tempfile.mkdtemp()) / path
        shutil.copyfile(src, dst)
        return str(dst)

    def _folder(self, run_id: str) -> Path:
        self.get_run(run_id)  # loads the run's experiment, or raises as MLflow does
        return self._records[run_id][1]


def _entity(rec: RunRecord, exp_id: str, folder: Path) -> Any:
    """The record as MLflow's Run entity (latest metrics carry step 0 and timestamp 0)."""
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag

    info = RunInfo(
        rec.run_id, exp_id, rec.tags.get("mlflow.user", ""), rec.status, rec.start_time,
        rec.end_time, "active", folder.resolve().as_uri(), rec.run_name,
    )  # fmt: skip
    data = RunData(
        [Metric(k, v, 0, 0) for k, v in rec.metrics.items()],
        [Param(k, v) for k, v in rec.params.items()],
        [RunTag(k, v) for k, v in rec.tags.items()],
    )
    return Run(info, data)
