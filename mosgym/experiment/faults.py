"""Faults a run must survive: signals (stop cleanly, resumable), and a diverged training loss.

SIGINT/SIGTERM while env steps run: the current env step is finished, a checkpoint written,
the MLflow run marked KILLED, and the process exits with 128 + the signal number. A second
signal (or one outside the step loop) stops at once; the last checkpoint is then at most
`--checkpoint-every` env steps old.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
from collections.abc import Iterator
from typing import Any

from mosgym.errors import MosgymError

log = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; `signum` says which (the exit status is 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signal.Signals(signum).name}")
        self.signum = signum


class StopRequest:
    """The process's pending stop: set by the signal handler, honoured between env steps."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferring = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.deferring and self.signum is None:
            self.signum = signum
            log.warning(
                "%s: stopping after this env step (a checkpoint is saved); send it again to "
                "stop at once",
                signal.Signals(signum).name,
            )
            return
        raise Interrupted(signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def raise_if_requested(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block, the first signal waits for the end of the env step."""
        was = self.deferring
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = was


STOP = StopRequest()


@contextlib.contextmanager
def signal_handlers() -> Iterator[StopRequest]:
    """Install the SIGINT/SIGTERM handlers for the block (main thread only), then restore."""
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    STOP.signum = None
    previous = {s: signal.signal(s, STOP.handler) for s in HANDLED}
    try:
        yield STOP
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        STOP.signum = None


def check_train_loss(loss: float, step: int, checkpoint: str | None) -> None:
    """MosgymError when the training loss of the env step that ended at `step` is NaN/inf."""
    if math.isfinite(loss):
        return
    kept = f"the last good checkpoint, {checkpoint}, is kept" if checkpoint else "no checkpoint"
    raise MosgymError(
        f"training loss became {loss} in the env step that ended at optimizer step {step}: "
        f"training diverged; lower train.lr or train.max_grad_norm, or check the data; {kept}"
    )
