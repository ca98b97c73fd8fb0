"""Local MLflow stores: can this process write to one, before MLflow is asked to?

MLflow opens a read-only sqlite file, or one in a folder it cannot write, and then retries the
first write for about two minutes before it fails. A local store's file and folder are
checked here in microseconds instead, so the user gets one clear line at once. Also: the
logging set-up of every command that writes to a store (MLflow's own INFO lines kept off stderr).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from mosgym.errors import MosgymError


def local_store_path(uri: str) -> Path | None:
    """The file (sqlite) or folder (file store) behind a local tracking URI; None otherwise."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(unquote(path))
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    if "://" not in uri and not uri.startswith(("databricks", "sqlite:")):
        return Path(uri)  # a bare path means a file store
    return None


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in `folder` (tried for real: root ignores permission bits,
    not read-only file systems)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_writable(uri: str) -> None:
    """MosgymError when a local store's file is read-only, or the folder that holds it (or
    must hold it) cannot be written: sqlite writes a journal next to its file."""
    path = local_store_path(uri)
    if path is None:
        return
    folder = path if uri.startswith("file:") or "://" not in uri else path.parent
    problem = None
    if path.is_file() and not os.access(path, os.W_OK):
        problem = f"{path} is read-only"
    else:
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and existing.is_dir() and not _can_create_in(existing):
            problem = f"cannot write in {existing}"
    if problem:
        raise MosgymError(
            f"MLflow tracking store {uri}: {problem}; set MLFLOW_TRACKING_URI to a store you "
            "can write (e.g. sqlite:///mlflow.db in a folder of yours)"
        )


def setup_cli_logging(fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """Logging for a command-line entry point: warnings and up, and MLflow kept quiet.

    MLflow logs its database set-up at INFO on stderr, and our stderr is for one-line errors.
    The environment variable covers an mlflow imported later (its import resets its loggers'
    level); the logger call covers one already imported.
    """
    logging.basicConfig(level=logging.WARNING, format=fmt)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
