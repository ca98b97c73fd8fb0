"""HFLearner's evaluation and forward helpers: dev loss, greedy accuracy, MultiDDS gradients,
MultiUAT entropy, and the eval-mode / chunking / RNG-stream helpers every forward uses.

A mixin only to keep hf.py readable (it was 547 lines): it holds no state of its own and reads
the attributes HFLearner sets (model, loaded, cfg, skills, optimizer, the packed splits, the
RNG streams). Nothing else inherits it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mosgym import timing
from mosgym.errors import MosgymError
from mosgym.learner import distributed, sharded
from mosgym.learner.base import EvalResult
from mosgym.learner.collate import PackedSplit, mean_entropy, response_nll
from mosgym.learner.model import greedy_answers
from mosgym.learner.schedule import get_torch_rng, set_torch_rng

TRAIN, PROBE = 0, 1
"""Split codes of probe examples (part of the init-NLL cache key)."""


class EvalSignals:
    """Evaluation, the learned baselines' signals and forward helpers of HFLearner."""

    # Set by HFLearner.__init__ (declared for readers and type checkers).
    model: torch.nn.Module
    loaded: Any
    cfg: Any
    skills: Any
    optimizer: torch.optim.Optimizer
    train_sizes: np.ndarray
    pad_id: int
    device: torch.device
    _call: Any
    _data: Any
    _dev: Any
    _dev_order: np.ndarray
    _aux_rng: np.random.Generator
    _sharded: bool

    @timing.timed(timing.EVAL_DEV)
    def dev_loss(self) -> np.ndarray:
        """(N,) mean over dev examples of their mean response NLL (length-sorted batches)."""
        index = self._dev_order
        sums = []
        with self._eval_mode(), self._no_grad(), self.loaded.autocast():
            for chunk, real in self._my_chunks(index):
                nll = self._call(response_nll, self._dev.batch(chunk, *self._pad))
                if real:
                    sums.append(nll)
        local = torch.cat(sums).cpu().numpy().astype(np.float64) if sums else np.zeros(0)
        total = distributed.gather_rows({"sum": local}, len(index))["sum"]
        resp = self._dev.n_response[index]
        ok = resp > 0
        n = len(self.skills)
        skill = self._dev.skill[index][ok]
        count = np.bincount(skill, minlength=n)
        loss = np.bincount(skill, weights=total[ok] / resp[ok], minlength=n)
        with np.errstate(invalid="ignore"):
            return np.where(count > 0, loss / np.maximum(count, 1), np.nan)

    def evaluate(self, generate: bool = True) -> EvalResult:
        """Dev loss, and greedy-decoding exact match on the first n_eval_generate dev examples
        of each exact-match skill (NaN for the others)."""
        accuracy = np.full(len(self.skills), np.nan)
        if generate:
            for s, skill in enumerate(self.skills):
                if skill.exact_match and len(skill.dev):
                    accuracy[s] = self._accuracy(s)
        return EvalResult(dev_loss=self.dev_loss(), accuracy=accuracy)

    @timing.timed(timing.EVAL_GENERATE)
    def _accuracy(self, skill: int) -> float:
        """Share of dev examples whose greedy answer (up to eos) equals the reference."""
        dev = self.skills[skill].dev
        local = np.arange(min(self.cfg.n_eval_generate, len(dev)))
        if len(local) == 0:  # n_eval_generate 0: decoding turned off
            return math.nan
        correct = 0
        with self._eval_mode(), self._no_grad():
            for chunk, real in self._my_chunks(local):
                ids, mask = self._dev.prompt_batch(self._dev.starts[skill] + chunk, *self._pad)
                answers = self._call(self._greedy, ids, mask)
                if not real:
                    continue
                refs = [dev.references[i] for i in chunk]
                correct += sum(a.strip() == r.strip() for a, r in zip(answers, refs, strict=True))
        return sum(distributed.all_gather_object(correct)) / len(local)

    @timing.timed(timing.PROBE)
    def gradient_alignment(self, n: int, target: int | None = None) -> np.ndarray:
        """(N,) MultiDDS: cosine between each skill's mean-loss gradient on n training examples
        (drawn from a separate RNG) and the dev gradient: the mean over the selected skills of
        their mean-loss gradient on their first n dev examples. Eval mode (no dropout); the
        optimizer and the training RNG streams are untouched; gradients are cleared after."""
        if n < 1:
            raise MosgymError(f"gradient_alignment: n must be >= 1, got {n}")
        targets = range(len(self.skills)) if target is None else [self._check_skill(target)]
        params = self._params()
        out = np.zeros(len(self.skills))
        with self._eval_mode(), self.loaded.autocast():
            try:
                self.optimizer.zero_grad(set_to_none=True)
                for s in targets:
                    rows = self._dev.starts[s] + np.arange(min(n, len(self.skills[s].dev)))
                    self._sharded_backward(self._dev, rows, len(targets))
                dev = self._grad_vector(params)
                for s in range(len(self.skills)):
                    self.optimizer.zero_grad(set_to_none=True)
                    local = self._aux_rng.choice(
                        self.train_sizes[s], min(n, self.train_sizes[s]), replace=False
                    )
                    rows = self._data[TRAIN].starts[s] + local
                    self._sharded_backward(self._data[TRAIN], rows, 1)
                    grad = self._grad_vector(params)
                    out[s] = sharded.cosine(grad, dev, self._sharded)
            finally:
                self.optimizer.zero_grad(set_to_none=True)
        return out

    def _sharded_backward(self, data: PackedSplit, rows: np.ndarray, divisor: float) -> None:
        """Accumulate into .grad the gradient of (mean response NLL over all tokens of `rows`) /
        divisor, from this rank's share of `rows` (the ranks' gradients sum to the one-process
        gradient; FSDP averages them, a scale the cosine ignores). Padding chunks weigh 0."""
        total = max(int(data.n_response[rows].sum()), 1)
        for chunk, real in self._my_chunks(rows):
            ex_sum = self._call(response_nll, data.batch(chunk, *self._pad))
            (ex_sum.sum() * (1.0 / (total * divisor) if real else 0.0)).backward()

    def _grad_vector(self, params: list[torch.Tensor]) -> torch.Tensor:
        """The gradient as one vector: this rank's shard of the (already reduced) gradient under
        FSDP; otherwise the whole gradient, summed over the ranks' shares."""
        grad = sharded.local_grad(params)
        return grad if self._sharded else distributed.all_reduce_sum(grad)

    @timing.timed(timing.PROBE)
    def uncertainty(self, n: int, samples: int) -> np.ndarray:
        """(N,) MultiUAT: mean predictive entropy over the response tokens of the first n dev
        examples, averaged over `samples` passes. With samples > 1 the passes run in train mode
        (MC dropout, own RNG stream); with dropout 0 or samples == 1 this is the deterministic
        predictive entropy."""
        if n < 1 or samples < 1:
            raise MosgymError(f"uncertainty: n and samples must be >= 1, got {n}, {samples}")
        out = np.zeros(len(self.skills))
        with self._eval_mode(dropout=samples > 1), self._rng_stream("_torch_aux"):
            with self._no_grad(), self.loaded.autocast():
                for s in range(len(self.skills)):
                    rows = self._dev.starts[s] + np.arange(min(n, len(self.skills[s].dev)))
                    chunks = self._chunks(rows)
                    passes = [
                        self._call(mean_entropy, self._dev, chunks, self._pad)
                        for _ in range(samples)
                    ]
                    out[s] = float(torch.stack(passes).double().mean())
        return out

    # ----------------------------------------------------------------------------------------
    # Forward helpers

    @property
    def _pad(self) -> tuple[int, torch.device]:
        return self.pad_id, self.device

    def _chunks(self, index: np.ndarray) -> list[np.ndarray]:
        size = self.cfg.eval_batch_size
        return [index[i : i + size] for i in range(0, len(index), size)]

    def _greedy(self, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
        """greedy_answers, run as a ModelCall (so a sharded model's root weights are gathered);
        under FSDP every rank decodes as many steps as the slowest."""
        assert model is self.model
        n_new = self.cfg.eval_max_new_tokens
        return greedy_answers(self.loaded, ids, mask, n_new, synced=self._sharded)

    def _params(self) -> list[torch.Tensor]:
        """The trained parameters, as the optimizer holds them (under FSDP the shards, which
        are not what model.parameters() lists while the root's weights are gathered)."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _my_chunks(self, index: np.ndarray) -> list[tuple[np.ndarray, bool]]:
        """This rank's share of `index` in eval batches, each with whether it is real (under
        FSDP padded so that all ranks run as many forwards)."""
        return sharded.lockstep_chunks(index, self.cfg.eval_batch_size, self._sharded)

    def _check_skill(self, skill: int) -> int:
        if not 0 <= skill < len(self.skills):
            raise MosgymError(f"skill index {skill} out of range 0..{len(self.skills) - 1}")
        return skill

    @contextlib.contextmanager
    def _eval_mode(self, dropout: bool = False) -> Iterator[None]:
        """Eval mode (or train mode for MC dropout) for the block; training mode restored."""
        was = self.model.training
        self.model.train(dropout)
        try:
            yield
        finally:
            self.model.train(was)
            sharded.reshard(self._call)  # no weights gathered in inference mode stay in use

    def _no_grad(self) -> contextlib.AbstractContextManager:
        """inference_mode for forwards without backward; no_grad under FSDP, whose gathered
        weight buffers outlive the block and would be inference tensors otherwise."""
        return torch.no_grad() if self._sharded else torch.inference_mode()

    @contextlib.contextmanager
    def _rng_stream(self, name: str) -> Iterator[None]:
        """Run the block on the learner's own torch RNG stream `name` (dropout), leaving the
        global RNG as it was."""
        saved = get_torch_rng(self.device)
        set_torch_rng(self.device, getattr(self, name))
        try:
            yield
        finally:
            setattr(self, name, get_torch_rng(self.device))
            set_torch_rng(self.device, saved)
