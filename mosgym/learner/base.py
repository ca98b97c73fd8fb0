"""The Learner protocol: what the environment needs from the model being fine-tuned.

Two implementations: HFLearner (a real transformers causal LM, mosgym.learner.hf) and SimLearner
(a learning-dynamics model, mosgym.sim.learner). The environment and the rewards only see this
protocol, so every agent and every reward runs unchanged on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class TrainStats:
    """What one `train(mixture, n_steps)` call did, per skill. Shapes: N = number of skills."""

    examples: np.ndarray
    """(N,) int64: examples drawn from each skill."""
    tokens: np.ndarray
    """(N,) int64: trained (response) tokens per skill."""
    loss_sum: np.ndarray
    """(N,) float64: sum over drawn examples of their mean response NLL (before the update)."""
    step_losses: np.ndarray
    """(n_steps,) float64: training loss of each optimizer step."""

    @property
    def mean_loss(self) -> np.ndarray:
        """(N,) mean training loss per skill; NaN for skills not drawn."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.examples > 0, self.loss_sum / np.maximum(self.examples, 1), np.nan)


@dataclass
class ProbeResult:
    """Per-example probe results for one skill, from one batched forward pass.

    Shapes: L = probe examples kept (NaN examples are dropped and counted), H = hidden size.
    """

    ids: list[str]
    """The probed examples' ids."""
    nll: np.ndarray
    """(L,) mean response NLL under the current model."""
    init_nll: np.ndarray
    """(L,) mean response NLL under the initial model (cached by example id)."""
    seq_nll: np.ndarray
    """(L,) mean NLL over the whole sequence (prompt included), current model."""
    init_seq_nll: np.ndarray
    """(L,) the same under the initial model."""
    embeddings: np.ndarray
    """(L, H) float32 mean over positions of the last layer's hidden states."""
    n_skipped: int = 0
    """Examples dropped because their NLL or embedding was not finite."""


@dataclass
class EvalResult:
    """End-of-run (or periodic) evaluation, per skill."""

    dev_loss: np.ndarray
    """(N,) mean response NLL on the dev split."""
    accuracy: np.ndarray
    """(N,) exact-match accuracy of greedy decoding; NaN for skills without exact match."""


@runtime_checkable
class Learner(Protocol):
    """A model being fine-tuned on N skills, driven by a mixture over them."""

    skill_names: list[str]
    """The N skill names, in action order."""
    train_sizes: np.ndarray
    """(N,) int64 training examples per skill (for temperature priors)."""
    step: int
    """Optimizer steps done since reset."""
    consumed: np.ndarray
    """(N,) int64 training examples drawn per skill since reset."""
    tokens_seen: np.ndarray
    """(N,) int64 trained tokens per skill since reset."""

    def reset(self, seed: int) -> None:
        """Restore the initial weights, optimizer, schedule and sampler exactly; reseed."""

    def train(self, mixture: np.ndarray, n_steps: int) -> TrainStats:
        """Run `n_steps` optimizer steps, drawing data from the (N,) `mixture`."""

    def probe(self, skill: int, n: int, with_initial: bool = True) -> ProbeResult:
        """Per-example NLL and embeddings for `n` probe examples of `skill` (batched).

        `with_initial=False` skips the initial-model NLLs (init_nll and init_seq_nll are then
        NaN): COSSIM does not need them, and on a real model they cost a second forward."""

    def dev_loss(self) -> np.ndarray:
        """(N,) mean response NLL on each skill's dev split (cheap; no decoding)."""

    def evaluate(self, generate: bool = True) -> EvalResult:
        """Dev loss and, when `generate`, exact-match accuracy for skills that support it."""

    def gradient_alignment(self, n: int, target: int | None = None) -> np.ndarray:
        """(N,) MultiDDS: cosine between each skill's training gradient (n examples) and the dev
        gradient (all skills' dev examples, or only `target`'s)."""

    def uncertainty(self, n: int, samples: int) -> np.ndarray:
        """(N,) MultiUAT: model uncertainty on n dev examples per skill (MC-dropout entropy with
        `samples` passes; predictive entropy when samples == 1)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimizer, schedule, sampler, RNGs, counters."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
