"""Where a run's time goes: a cheap per-phase wall-clock timer owned by the run.

The run (mosgym.experiment) starts a `PhaseTimer` and makes it current with `active`; the
stages below mark their work with `phase(name)` or `@timed(name)` and never see the timer
itself. With no current timer (a user's own loop, a test) those calls cost one context-variable
lookup and synchronise nothing.

Phases are exclusive: while a nested phase runs, its parent's clock is paused, so the seconds
of all phases (OTHER included: everything outside a named phase) add up to the timer's total.
A probe inside the reward computation counts as `probe`, not `reward`.

On CUDA the timer synchronises the device at every phase boundary (only while a timer is
current), so a phase is charged for the kernels it queued rather than the next host sync.
Timing never changes a number the run computes: it reads clocks and waits for queued work.

A foundation module: it imports nothing from mosgym.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

TRAIN = "train"
"""Optimizer steps (forward, backward, AdamW), including drawing the batches."""
PROBE = "probe"
"""The learner's forwards for a reward: probes (COSSIM, DIFF), MultiDDS gradients, MultiUAT."""
INITIAL_NLL = "initial_nll"
"""DIFF's initial-model NLL of the probe examples (computed once per example, then cached)."""
REWARD = "reward"
"""Reward math on the probe results (cosines, ratios, EMA), outside the learner's forwards."""
AGENT = "agent"
"""The agent choosing a mixture and learning from the step (the MoS scorer's Adam steps)."""
EVAL_DEV = "eval_dev"
"""Dev loss after every env step, at reset and in the final evaluation."""
EVAL_GENERATE = "eval_generate"
"""Greedy decoding for exact-match accuracy in the final evaluation."""
LOGGING = "logging"
"""MLflow: per-step metrics (final metrics and artifacts are logged after the run's clock)."""
CHECKPOINT = "checkpoint"
"""Writing checkpoints."""
OTHER = "other"
"""Everything outside the phases above (observations, progress bar, the loop itself)."""

PHASES = (
    TRAIN,
    PROBE,
    INITIAL_NLL,
    REWARD,
    AGENT,
    EVAL_DEV,
    EVAL_GENERATE,
    LOGGING,
    CHECKPOINT,
    OTHER,
)
"""Every phase, in the order reports list them."""
MOS_PHASES = (PROBE, INITIAL_NLL, REWARD, AGENT)
"""What MoS adds over a static mixture on the same data (a static agent with reward 'none'
spends next to nothing in these)."""


class PhaseTimer:
    """Exclusive seconds per phase between `start` and `stop` (plus any restored seconds).

    `sync`, when given, is called at every phase boundary before the clock is read (a CUDA
    device's synchronize). `clock` is injectable for tests.
    """

    def __init__(
        self,
        sync: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.sync = sync
        self.clock = clock
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._stack: list[str] = []
        self._mark: float | None = None

    @property
    def running(self) -> bool:
        return self._mark is not None

    def start(self) -> None:
        """Start (or continue) the clock; the time until the first phase counts as OTHER."""
        self._mark = self.clock()

    def stop(self) -> None:
        """Charge the time since the last boundary and stop the clock."""
        if self._mark is not None:
            self._switch()
            self._mark = None

    def _switch(self) -> None:
        """A phase boundary: charge the time since the last one to the innermost open phase."""
        if self.sync is not None:
            self.sync()
        now = self.clock()
        if self._mark is not None:
            top = self._stack[-1] if self._stack else OTHER
            self.seconds[top] = self.seconds.get(top, 0.0) + now - self._mark
        self._mark = now

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Charge the block to `name` (minus its nested phases); a no-op while stopped."""
        if self._mark is None:
            yield
            return
        self._switch()
        self._stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    @property
    def total(self) -> float:
        """Seconds charged so far (all phases, OTHER included)."""
        return sum(self.seconds.values())

    def snapshot(self) -> dict[str, float]:
        """Seconds per phase as of now, the open phase charged up to this moment."""
        if self._mark is not None:
            self._switch()
        return dict(self.seconds)

    def state_dict(self) -> dict[str, float]:
        """The seconds so far (checkpoints: a resumed run goes on adding to them)."""
        return self.snapshot()

    def load_state_dict(self, state: dict[str, float]) -> None:
        for name, seconds in state.items():
            self.seconds[name] = float(seconds)


_current: ContextVar[PhaseTimer | None] = ContextVar("mosgym_phase_timer", default=None)
_NOTHING = contextlib.nullcontext()


def current() -> PhaseTimer | None:
    """The timer of the run in progress, if any."""
    return _current.get()


@contextlib.contextmanager
def active(timer: PhaseTimer | None) -> Iterator[PhaseTimer | None]:
    """Make `timer` the current one for the block (None: timing off inside it)."""
    token = _current.set(timer)
    try:
        yield timer
    finally:
        _current.reset(token)


def phase(name: str) -> contextlib.AbstractContextManager[None]:
    """Charge the block to phase `name` of the current timer; nothing without one."""
    timer = _current.get()
    return _NOTHING if timer is None else timer.phase(name)


F = TypeVar("F", bound=Callable[..., Any])


def timed(name: str) -> Callable[[F], F]:
    """Decorator: every call of the function is charged to phase `name` of the current timer."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            timer = _current.get()
            if timer is None:
                return fn(*args, **kwargs)
            with timer.phase(name):
                return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def device_sync(device: Any) -> Callable[[], None] | None:
    """What a timer should call at phase boundaries for work on `device`: CUDA's synchronize,
    or None (CPU work is done when the host call returns)."""
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    return functools.partial(torch.cuda.synchronize, device)
