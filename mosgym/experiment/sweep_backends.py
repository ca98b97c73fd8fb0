"""Where a sweep's trials run: one after another in this process, or as Ray tasks.

Ray is optional (``pip install "mosgym[ray]"``) and imported only here, only when used.
A Ray backend connects before the sweep writes anything to MLflow, so an address that does not
answer or a tracking store the cluster cannot reach leaves no half-made parent run behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlparse

from mosgym.errors import MosgymError
from mosgym.experiment.sweep_trials import (
    Trial,
    TrialOutcome,
    new_attempt,
    record_failure,
    run_trial,
)

log = logging.getLogger("mosgym.sweep")

BACKENDS = ("auto", "ray", "sequential")
INSTALL_RAY = 'pip install "mosgym[ray]"'
CONNECT_TIMEOUT_S = 5.0
"""How long a Ray address gets to accept a TCP connection before the sweep gives up on it."""


class Backend(Protocol):
    """Runs trials and yields their outcomes as they end (in any order)."""

    name: str

    def connect(self, uri: str) -> None: ...

    def run(self, trials: list[Trial], parent_id: str, uri: str) -> Iterator[TrialOutcome]: ...

    def close(self) -> None: ...


def ray_available() -> bool:
    """Whether Ray can be imported (it is not imported at mosgym import time)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(
    name: str, address: str | None, max_concurrent: int | None, progress: bool
) -> Backend:
    """'auto': Ray if importable, else sequential; errors for choices that cannot work."""
    if name not in BACKENDS:
        raise MosgymError(f"--backend {name}: choose one of {', '.join(BACKENDS)}")
    if max_concurrent is not None and max_concurrent < 1:
        raise MosgymError(f"--max-concurrent {max_concurrent}: must be >= 1")
    if name == "sequential":
        if address:
            raise MosgymError(
                f"--ray-address {address}: the sequential backend runs no Ray; drop "
                "--ray-address or use --backend ray"
            )
        return SequentialBackend(progress)
    if not ray_available():
        if name == "ray" or address:
            flag = "--backend ray" if name == "ray" else f"--ray-address {address}"
            raise MosgymError(
                f"{flag}: Ray is not installed; install it with {INSTALL_RAY} "
                "(or use --backend sequential)"
            )
        log.info("Ray is not installed: trials run one after another in this process")
        return SequentialBackend(progress)
    return RayBackend(address, max_concurrent)


class SequentialBackend:
    """Trials one after another in this process, under the parent run made active (so a run
    already active around the sweep stays the parent's parent)."""

    name = "sequential"

    def __init__(self, progress: bool) -> None:
        self.progress = progress

    def connect(self, uri: str) -> None:
        log.info("backend: sequential (trials one after another in this process)")

    def run(self, trials: list[Trial], parent_id: str, uri: str) -> Iterator[TrialOutcome]:
        import dataclasses

        import mlflow

        exp_id = mlflow.MlflowClient(uri).get_run(parent_id).info.experiment_id
        mlflow.set_experiment(experiment_id=exp_id)  # start_run refuses another one's run
        mlflow.start_run(run_id=parent_id, nested=mlflow.active_run() is not None)
        try:
            for t in trials:
                req = dataclasses.replace(t.request, progress=self.progress)
                yield run_trial(Trial(req, t.trial_id), parent_id, uri, new_attempt())
        finally:
            mlflow.end_run()  # pops the parent; the sweep sets its final status after

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Ray


def is_local_store(uri: str) -> bool:
    """A tracking store that only processes on this machine can write: a file or sqlite path."""
    return urlparse(uri).scheme in ("", "file", "sqlite")


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of 'ray://host:port' or 'host:port'; None for 'auto' / 'local'."""
    if address in ("auto", "local"):
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise MosgymError(
            f"--ray-address {address}: expected ray://HOST:PORT (Ray Client, port 10001), "
            "HOST:PORT (the head's GCS, port 6379) or auto"
        )
    return host.strip("[]"), int(port)


def _this_machine(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return False
    if ip.is_loopback:
        return True
    with contextlib.suppress(OSError):
        return str(ip) in socket.gethostbyname_ex(socket.gethostname())[2]
    return False


def _store_refused(uri: str, where: str) -> MosgymError:
    return MosgymError(
        f"MLflow tracking store {uri} is a local path, but {where}: Ray workers on other "
        "machines cannot write there; start a tracking server (`mlflow server --host HOST "
        "--backend-store-uri sqlite:///mlflow.db`, HOST: this machine's address on the cluster's "
        "private network) and set MLFLOW_TRACKING_URI=http://HOST:5000"
    )


def probe(address: str, host: str, port: int) -> None:
    """A TCP connection to the address, with a short timeout: Ray's own retries take minutes."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise MosgymError(
            f"Ray cluster at {address} does not answer ({reason}); start it with `ray start "
            "--head` on the head node (Ray Client listens on port 10001), fix --ray-address, "
            "or leave --ray-address out to run on a local Ray"
        ) from None


class RayBackend:
    """Trials as Ray tasks (1 CPU each, 1 GPU when the model runs on CUDA), locally or on a
    cluster; at most `max_concurrent` in flight."""

    name = "ray"

    def __init__(self, address: str | None, max_concurrent: int | None) -> None:
        self.address = address or "local"
        self.max_concurrent = max_concurrent
        self.cluster_gpus = 0.0
        self.started = False

    def connect(self, uri: str) -> None:
        """Check the address and the store, then ray.init; MosgymError on any failure."""
        target = _host_port(self.address)
        if target is not None and not _this_machine(target[0]) and is_local_store(uri):
            raise _store_refused(uri, f"the Ray cluster at {self.address} is another machine")
        if target is not None:
            probe(self.address, *target)
        import ray

        try:
            ray.init(
                address=self.address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ... by version
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise MosgymError(
                f"cannot connect to Ray at {self.address} ({first}); start it with `ray start "
                "--head`, fix --ray-address, or leave it out to run on a local Ray"
            ) from None
        self.started = True
        self._check_nodes(uri)
        resources = ray.cluster_resources()
        self.cluster_gpus = float(resources.get("GPU", 0.0))
        where = "a local Ray" if self.address == "local" else f"the Ray cluster at {self.address}"
        log.info(
            "backend: ray (%s: %d CPUs, %d GPUs)",
            where,
            int(resources.get("CPU", 0)),
            int(self.cluster_gpus),
        )

    def _check_nodes(self, uri: str) -> None:
        """With 'auto' the address says nothing: refuse a local store if any node is remote."""
        import ray

        if not is_local_store(uri):
            return
        here = ray.util.get_node_ip_address()
        others = sorted(
            n["NodeManagerAddress"]
            for n in ray.nodes()
            if n.get("Alive") and n["NodeManagerAddress"] != here
        )
        if others:
            self.close()
            raise _store_refused(uri, f"the Ray cluster has nodes on {', '.join(others)}")

    def needs_gpu(self, trial: Trial) -> bool:
        """CUDA models take a GPU each ('auto' means CUDA when the cluster has GPUs)."""
        env = trial.request.env
        if env.get("learner") == "sim":
            return False
        device = str(env.get("model", {}).get("device", "auto"))
        return device.startswith("cuda") or (device == "auto" and self.cluster_gpus > 0)

    def run(self, trials: list[Trial], parent_id: str, uri: str) -> Iterator[TrialOutcome]:
        import ray

        from mosgym.experiment import faults

        task = ray.remote(max_retries=0)(run_trial)  # a rerun of the sweep retries, not Ray
        limit = self.max_concurrent or len(trials)
        queue = list(trials)
        pending: dict[Any, tuple[Trial, str]] = {}
        try:
            # A signal sets faults.STOP (Ray would turn an exception raised in the handler into
            # a plain KeyboardInterrupt); the loop notices within a second.
            with faults.STOP.deferred():
                while queue or pending:
                    while queue and len(pending) < limit:
                        t, attempt = queue.pop(0), new_attempt()
                        opts = {"num_cpus": 1, "num_gpus": 1 if self.needs_gpu(t) else 0}
                        ref = task.options(name=t.name, **opts).remote(t, parent_id, uri, attempt)
                        pending[ref] = (t, attempt)
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                    faults.STOP.raise_if_requested()
                    for ref in done:
                        t, attempt = pending.pop(ref)
                        yield self._outcome(ref, t, parent_id, uri, attempt)
        except KeyboardInterrupt:
            for ref, (t, attempt) in pending.items():
                ray.cancel(ref, force=True)
                error = "the sweep was stopped"
                record_failure(uri, t, parent_id, attempt, error, "KILLED", create=False)
            raise

    def _outcome(self, ref: Any, t: Trial, parent_id: str, uri: str, attempt: str) -> Any:
        """The task's result; a lost worker or task becomes a FAILED trial, not a stopped sweep."""
        import math

        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayError as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            error = f"{type(e).__name__}: {first}"
            log.error("trial %s failed in Ray: %s", t.name, error)
            run_id = record_failure(uri, t, parent_id, attempt, error)
            return t.outcome("FAILED", run_id, math.nan, math.nan, error)

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
