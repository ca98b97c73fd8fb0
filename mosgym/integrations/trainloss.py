"""Per-skill training loss of the Trainer's own training forwards (ODM and the train_loss reward).

The environment's learner reports, per skill, the sum over drawn examples of their mean
response NLL before the update (`TrainStats.loss_sum`). Inside a Trainer the same numbers come
from a forward hook on the model: every training forward's logits and labels give each row's
mean response NLL, and the row's skill is read from the MixtureDataset's log of the stream
position it came from. Under torchrun/accelerate rank r's micro-batch j holds the stream
positions chunk * j + r * b ... + b - 1 (accelerate's IterableDatasetShard), so every rank
attributes its own rows, and the sums are added over ranks at each scorer update.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mosgym.data.types import IGNORE_INDEX
from mosgym.errors import MosgymError
from mosgym.integrations.dataset import MixtureDataset
from mosgym.learner import distributed
from mosgym.learner.base import TrainStats
from mosgym.learner.collate import token_nll

_TOKENS_PER_CHUNK = 8192
"""Response positions projected to float32 log-probabilities at a time (bounds the memory of
the extra cross-entropy on large vocabularies)."""


class TrainLossTracker:
    """Accumulates (examples, response tokens, loss_sum) per skill over training forwards.

    `micro_batch` is the rows of one training forward on this rank, `chunk` the stream
    positions one data-loader step reads for all ranks (micro_batch * world, or micro_batch
    with accelerate's split_batches), `rank` this process's index.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: MixtureDataset,
        micro_batch: int,
        chunk: int,
        rank: int,
    ) -> None:
        self.dataset = dataset
        self.micro_batch, self.chunk, self.rank = int(micro_batch), int(chunk), int(rank)
        n = len(dataset.skill_names)
        device = next(model.parameters()).device
        self._sums = torch.zeros((3, n), dtype=torch.float64, device=device)
        """Rows: examples, response tokens, sum of per-example mean NLL."""
        self.base = 0
        self.rows = 0
        self._handle = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def start(self, base: int, rows: int) -> None:
        """The first training forward reads stream positions from `base`, and this rank has
        already trained `rows` rows of the stream (they were fast-forwarded on a resume)."""
        self.base, self.rows = int(base), int(rows)

    def remove(self) -> None:
        self._handle.remove()

    def _positions(self, rows: int) -> np.ndarray:
        m = np.arange(self.rows, self.rows + rows, dtype=np.int64)
        b = self.micro_batch
        return self.base + (m // b) * self.chunk + self.rank * b + m % b

    def _on_forward(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return  # evaluation, or mosgym's own probes
        labels = kwargs.get("labels")
        logits = getattr(output, "logits", None)
        if labels is None or logits is None:
            raise MosgymError(
                "per-skill training loss (agent odm, reward train_loss) needs the model's labels "
                "and logits in each training forward; this Trainer passes no labels or returns "
                "no logits (e.g. a fused loss kernel): use another agent or reward"
            )
        if labels.shape[0] != self.micro_batch:
            raise MosgymError(
                f"per-skill training loss: a training forward has {labels.shape[0]} rows, "
                f"expected one example per row ({self.micro_batch}); packing and "
                "padding-free batches cannot be attributed to skills"
            )
        skills = self.dataset.skills_at(self._positions(labels.shape[0]))
        self.rows += labels.shape[0]
        with torch.no_grad():
            self._add(logits, labels, torch.as_tensor(skills, device=self._sums.device))

    def _add(self, logits: torch.Tensor, labels: torch.Tensor, skills: torch.Tensor) -> None:
        """Each row's mean response NLL (position t predicts token t + 1), added to its skill."""
        targets = labels[:, 1:]
        rows, cols = torch.nonzero(targets != IGNORE_INDEX, as_tuple=True)
        nll = torch.cat(
            [
                token_nll(logits[r, c][None].float(), targets[r, c][None])[0]
                for r, c in zip(
                    rows.split(_TOKENS_PER_CHUNK), cols.split(_TOKENS_PER_CHUNK), strict=True
                )
            ]
            or [torch.zeros(0, device=logits.device)]
        )
        b = labels.shape[0]
        sums = torch.zeros(b, dtype=torch.float64, device=logits.device)
        sums.index_add_(0, rows, nll.double())
        count = torch.zeros(b, dtype=torch.float64, device=logits.device)
        count.index_add_(0, rows, torch.ones_like(nll, dtype=torch.float64))
        per_example = sums / count.clamp_min(1.0)  # as the learner: 0 for no response token
        values = torch.stack([torch.ones_like(count), count, per_example]).to(self._sums.device)
        self._sums.index_add_(1, skills, values)

    def totals(self) -> np.ndarray:
        """(3, N) sums over every rank since the last `collect` (a collective under torchrun)."""
        return distributed.all_reduce_sum(self._sums.clone()).cpu().numpy()

    def collect(self) -> TrainStats:
        """The interval's per-skill stats, summed over ranks; the sums start again at zero."""
        examples, tokens, loss_sum = self.totals()
        self._sums.zero_()
        # One value for the interval: its mean per-example loss.
        mean = float(loss_sum.sum() / examples.sum()) if examples.sum() > 0 else math.nan
        return TrainStats(
            examples=examples.astype(np.int64),
            tokens=tokens.astype(np.int64),
            loss_sum=loss_sum,
            step_losses=np.array([mean]),
        )

    def state_dict(self) -> dict[str, Any]:
        """The interval's sums so far, over all ranks (every rank must call this)."""
        return {"sums": self.totals().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rank 0 holds the restored sums, the others start at zero (their sum is the same)."""
        sums = torch.as_tensor(state["sums"], dtype=torch.float64)
        self._sums.copy_(sums if distributed.rank() == 0 else torch.zeros_like(sums))
