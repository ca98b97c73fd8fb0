"""TrainerLearner: the Learner protocol over the model that a transformers Trainer trains.

The rewards (mosgym.rewards.RewardComputer) only see the Learner protocol. This adapter answers
its probe and dev-loss questions with mosgym's own batching and forward helpers
(mosgym.learner.collate: `PackedSplit`, `probe_forward`, `response_nll`), so the callback's
rewards are computed by the same code as the environment's on an HFLearner. Training itself is
the Trainer's: `train` is not available here.

Probe plan: like HFLearner, the probe examples of every scorer update of the whole run are
drawn up front (or are the first examples of a fixed probe set), so the initial-model NLL that
DIFF divides by is computed once, before the first optimizer step, for exactly those examples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mosgym.data.types import TokenizedSplit
from mosgym.errors import MosgymError
from mosgym.learner.base import EvalResult, ProbeResult, TrainStats
from mosgym.learner.collate import PackedSplit, probe_forward, response_nll

NEEDS_INITIAL = ("diff",)
"""Reward types that divide by the initial model's NLL."""


class TrainerLearner:
    """Probes and dev loss of `model` (the Trainer's, unwrapped) on N skills.

    `probe[s]` holds the examples skill s may be probed on and `plan[s]` (rounds, k) the rows of
    `probe[s]` each scorer update uses; `dev[s]` (optional) the dev examples. Forwards run in
    eval mode without gradients, under autocast to `autocast_dtype` (the Trainer's bf16/fp16),
    in batches of `eval_batch_size`, right-padded with `pad_id`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        skill_names: list[str],
        train_sizes: np.ndarray,
        probe: list[TokenizedSplit],
        plan: list[np.ndarray],
        dev: list[TokenizedSplit] | None,
        pad_id: int,
        eval_batch_size: int,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        if eval_batch_size < 1:
            raise MosgymError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
        self.model = model
        self.skill_names = list(skill_names)
        self.train_sizes = np.asarray(train_sizes, dtype=np.int64)
        n = len(self.skill_names)
        self.step = 0
        self.consumed = np.zeros(n, dtype=np.int64)
        self.tokens_seen = np.zeros(n, dtype=np.int64)
        self._probe = PackedSplit(probe)
        self._probe_ids = [split.ids for split in probe]
        self._plan = [np.asarray(p, dtype=np.int64) for p in plan]
        self._round = np.zeros(n, dtype=np.int64)
        self._dev = PackedSplit(dev) if dev is not None else None
        self._initial: np.ndarray | None = None  # (M, 2) initial (nll, seq_nll) per probe row
        self.pad_id = int(pad_id)
        self.eval_batch_size = int(eval_batch_size)
        self.autocast_dtype = autocast_dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def has_dev(self) -> bool:
        return self._dev is not None

    # ----------------------------------------------------------------------------------------
    # Probes

    def prepare_initial(self) -> None:
        """Compute the initial-model NLL of every planned probe example; call while the model
        still holds its initial weights (before the first optimizer step)."""
        got = self._numbers(self._probe, np.arange(len(self._probe)))
        self._initial = np.stack([got["nll"], got["seq_nll"]], axis=1)

    def probe(self, skill: int, n: int, with_initial: bool = True) -> ProbeResult:
        """Per-example NLL (current and, when `with_initial`, initial model) and embeddings of
        the first n planned examples of this skill's next probe round."""
        if not 0 <= skill < len(self.skill_names):
            raise MosgymError(f"skill index {skill} out of range 0..{len(self.skill_names) - 1}")
        plan = self._plan[skill]
        if not 1 <= n <= plan.shape[1]:
            raise MosgymError(f"probe: n must be in 1..{plan.shape[1]}, got {n}")
        rows = plan[int(self._round[skill]) % len(plan)][:n]
        self._round[skill] += 1
        index = self._probe.starts[skill] + rows
        cur = self._numbers(self._probe, index)
        keep = np.isfinite(cur["nll"]) & np.isfinite(cur["seq_nll"])
        keep &= np.isfinite(cur["embeddings"]).all(axis=1)
        if with_initial:
            if self._initial is None:
                raise RuntimeError("probe with_initial before prepare_initial")
            init_nll, init_seq = self._initial[index, 0], self._initial[index, 1]
            keep &= np.isfinite(init_nll) & np.isfinite(init_seq)
        else:
            init_nll = init_seq = np.full(len(index), np.nan)
        return ProbeResult(
            ids=[self._probe_ids[skill][i] for i in rows[keep]],
            nll=cur["nll"][keep],
            init_nll=init_nll[keep],
            seq_nll=cur["seq_nll"][keep],
            init_seq_nll=init_seq[keep],
            embeddings=cur["embeddings"][keep].astype(np.float32),
            n_skipped=int((~keep).sum()),
        )

    def _numbers(self, data: PackedSplit, index: np.ndarray) -> dict[str, np.ndarray]:
        """probe_forward over `index` in eval batches: (L,) nll, (L,) seq_nll, (L, H) embeddings."""
        outs = []
        with self._inference():
            for chunk in self._chunks(index):
                outs.append(probe_forward(self.model, data.batch(chunk, self.pad_id, self.device)))
        return {
            k: torch.cat([getattr(o, k) for o in outs]).float().cpu().numpy().astype(np.float64)
            for k in ("nll", "seq_nll", "embeddings")
        }

    # ----------------------------------------------------------------------------------------
    # Evaluation

    def dev_loss(self) -> np.ndarray:
        """(N,) mean over each skill's dev examples of their mean response NLL; NaN without
        dev sets."""
        n = len(self.skill_names)
        if self._dev is None:
            return np.full(n, np.nan)
        dev = self._dev
        index = np.argsort(dev.lengths, kind="stable")  # length-sorted batches pad little
        sums = []
        with self._inference():
            for chunk in self._chunks(index):
                sums.append(response_nll(self.model, dev.batch(chunk, self.pad_id, self.device)))
        total = torch.cat(sums).double().cpu().numpy()
        resp = dev.n_response[index]
        ok = resp > 0
        skill = dev.skill[index][ok]
        count = np.bincount(skill, minlength=n)
        loss = np.bincount(skill, weights=total[ok] / resp[ok], minlength=n)
        with np.errstate(invalid="ignore"):
            return np.where(count > 0, loss / np.maximum(count, 1), np.nan)

    def evaluate(self, generate: bool = True) -> EvalResult:
        """Dev loss; no exact-match decoding inside a Trainer (accuracy is NaN)."""
        return EvalResult(self.dev_loss(), np.full(len(self.skill_names), np.nan))

    def gradient_alignment(self, n: int, target: int | None = None) -> np.ndarray:
        raise MosgymError("reward multidds is not available inside a Trainer")

    def uncertainty(self, n: int, samples: int) -> np.ndarray:
        raise MosgymError("reward multiuat is not available inside a Trainer")

    def reset(self, seed: int) -> None:
        """A new run: the probe rounds start again (the Trainer owns weights and optimizer)."""
        self._round[:] = 0
        self.step = 0

    def train(self, mixture: np.ndarray, n_steps: int) -> TrainStats:
        """Never called: the Trainer trains the model; this adapter only probes it. (Part of the
        Learner protocol, so calling it by mistake is a clear error, not a silent no-op.)"""
        raise TypeError("the Trainer trains the model; TrainerLearner only probes it")

    # ----------------------------------------------------------------------------------------
    # Checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Plain data: probe rounds done and the initial-model NLL (the initial weights are not
        in a Trainer checkpoint)."""
        return {
            "probe_round": self._round.tolist(),
            "initial": None if self._initial is None else self._initial.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._round = np.asarray(state["probe_round"], dtype=np.int64).copy()
        init = state["initial"]
        self._initial = None if init is None else np.asarray(init, dtype=np.float64)

    # ----------------------------------------------------------------------------------------
    # Helpers

    def _chunks(self, index: np.ndarray) -> list[np.ndarray]:
        size = self.eval_batch_size
        return [index[i : i + size] for i in range(0, len(index), size)]

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode (no dropout), no gradients, the Trainer's mixed precision; the training
        mode is restored after. no_grad rather than inference_mode: tensors a model caches
        during the block (rotary tables) must stay usable by the next training step."""
        was = self.model.training
        self.model.eval()
        device = self.device
        dtype = self.autocast_dtype
        try:
            with (
                torch.no_grad(),
                torch.autocast(
                    device.type, dtype=dtype or torch.float32, enabled=dtype is not None
                ),
            ):
                yield
        finally:
            self.model.train(was)
