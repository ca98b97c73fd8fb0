"""Batches from tokenized splits, and the per-example numbers computed from one forward pass.

A split is packed once into flat arrays (ids, labels, offsets), so any set of examples becomes a
padded batch with a few vectorised numpy operations: no per-example Python loop, padding only to
the batch's longest example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from mosgym.data.types import IGNORE_INDEX, TokenizedSplit


@dataclass
class Batch:
    """A padded batch on the model's device. Shapes: B examples, L = longest example."""

    input_ids: torch.Tensor
    """(B, L) int64, pad token after (right padding) or before (left padding) each example."""
    attention_mask: torch.Tensor
    """(B, L) int64, 1 on real tokens."""
    labels: torch.Tensor
    """(B, L) int64, IGNORE_INDEX on prompt and padding."""
    target_rows: torch.Tensor | None = None
    """(K,) batch row of each response target (position t predicts token t + 1): computed on
    the host while batching, so selecting response positions never syncs the device."""
    target_cols: torch.Tensor | None = None
    """(K,) position of each response target."""


class PackedSplit:
    """Several skills' splits in flat arrays; example `i` of skill `s` has global index
    `starts[s] + i`, so a batch mixing skills is one gather."""

    def __init__(self, splits: list[TokenizedSplit]) -> None:
        sizes = np.array([len(s) for s in splits], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.skill = np.repeat(np.arange(len(splits)), sizes)
        """(M,) skill of each global example."""
        self.ids, self.offsets, self.lengths = _pack([x for s in splits for x in s.input_ids])
        self.labels, _, _ = _pack([x for s in splits for x in s.labels])
        self.prompts, self.prompt_offsets, self.prompt_lengths = _pack(
            [x for s in splits for x in s.prompt_ids]
        )
        # Response tokens that are *predicted* (an example's first token is never a target).
        predicted = self.labels != IGNORE_INDEX
        predicted[self.offsets[self.lengths > 0]] = False
        cum = np.concatenate([[0], np.cumsum(predicted, dtype=np.int64)])
        self.n_response = cum[self.offsets + self.lengths] - cum[self.offsets]
        """(M,) trained tokens per example."""

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, index: np.ndarray, pad_id: int, device: torch.device) -> Batch:
        """Right-padded batch of examples `index` (training, loss and probe forwards)."""
        ids, mask = _gather(self.ids, self.offsets[index], self.lengths[index], pad_id, left=False)
        labels, _ = _gather(
            self.labels, self.offsets[index], self.lengths[index], IGNORE_INDEX, left=False
        )
        rows, cols = np.nonzero(labels[:, 1:] != IGNORE_INDEX)
        return Batch(*(_to(x, device) for x in (ids, mask, labels, rows, cols)))

    def prompt_batch(
        self, index: np.ndarray, pad_id: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompts of examples `index` (greedy decoding continues at the right)."""
        ids, mask = _gather(
            self.prompts,
            self.prompt_offsets[index],
            self.prompt_lengths[index],
            pad_id,
            left=True,
        )
        return _to(ids, device), _to(mask, device)


def _pack(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat int64 values, offsets, lengths) of a list of 1-d arrays."""
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.concatenate([np.asarray(a, dtype=np.int64) for a in arrays]) if arrays else None
    return (flat if flat is not None else np.zeros(0, np.int64)), offsets, lengths


def _gather(
    flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, pad: int, left: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(B, max length) padded matrix of the segments flat[offsets[b] : offsets[b] + lengths[b]]."""
    width = int(lengths.max()) if len(lengths) else 0
    col = np.arange(width)[None, :]
    start = (width - lengths)[:, None] if left else np.zeros((len(lengths), 1), np.int64)
    pos = col - start
    valid = (pos >= 0) & (pos < lengths[:, None])
    source = np.where(valid, offsets[:, None] + pos, 0)
    out = np.where(valid, flat[source] if len(flat) else pad, pad)
    return out.astype(np.int64), valid.astype(np.int64)


def _to(x: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(x)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def forward_hidden(model: PreTrainedModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(last hidden states (B, L, H), float32 logits (B, L-1, V) predicting tokens 1..L-1).

    The base model is called directly so only the last layer's states are materialised, and the
    same call serves losses and embeddings.
    """
    hidden = model.base_model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    logits = model.get_output_embeddings()(hidden[:, :-1]).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:  # Gemma-2 style models cap logits in their CausalLM forward; do the same.
        logits = torch.tanh(logits / cap) * cap
    return hidden, logits


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, L-1) NLL of each target token; 0 where the target is IGNORE_INDEX."""
    b, t, v = logits.shape
    nll = F.cross_entropy(
        logits.reshape(b * t, v),
        targets.reshape(b * t),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return nll.view(b, t)


def response_nll(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """(B,) per-example sum of response-token NLL, for training and dev loss.

    Only the positions that predict a response token go through the output layer: prompts and
    padding never cost an lm_head projection or a (B, L, V) float32 logits tensor, which is
    most of the memory of a long-prompt batch with a large vocabulary.
    """
    hidden = model.base_model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    targets = batch.labels[:, 1:]
    rows, cols = batch.target_rows, batch.target_cols
    if rows is None or cols is None:
        rows, cols = torch.nonzero(targets != IGNORE_INDEX, as_tuple=True)
    logits = model.get_output_embeddings()(hidden[rows, cols]).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    nll = F.cross_entropy(logits, targets[rows, cols], reduction="none")
    return torch.zeros(len(targets), dtype=nll.dtype, device=nll.device).index_add_(0, rows, nll)


class ModelCall(torch.nn.Module):
    """Runs `fn(model, *args)` as this module's forward. The helpers here call the base model and
    the output layer separately, bypassing the model's own forward, which is where DDP and
    FSDP hook in; every forward of the learner goes through one ModelCall instead, the module
    that DDP wraps or FSDP shards as its root."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.model, *args)


@dataclass
class ProbeTensors:
    """Per-example probe numbers of one batch, still on the device."""

    nll: torch.Tensor
    seq_nll: torch.Tensor
    embeddings: torch.Tensor


def probe_forward(model: PreTrainedModel, batch: Batch) -> ProbeTensors:
    """Response NLL, whole-sequence NLL and mean-pooled last-layer embeddings, one forward."""
    hidden, logits = forward_hidden(model, batch)
    targets = batch.input_ids[:, 1:]
    nll = token_nll(logits, targets)
    seq_mask = batch.attention_mask[:, 1:].to(nll.dtype)
    resp_mask = (batch.labels[:, 1:] != IGNORE_INDEX).to(nll.dtype)
    mask = batch.attention_mask.unsqueeze(-1).to(torch.float32)
    pooled = (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
    return ProbeTensors(
        nll=(nll * resp_mask).sum(1) / resp_mask.sum(1),
        seq_nll=(nll * seq_mask).sum(1) / seq_mask.sum(1),
        embeddings=pooled,
    )


def mean_entropy(
    model: PreTrainedModel,
    data: PackedSplit,
    chunks: list[np.ndarray],
    pad: tuple[int, torch.device],
) -> torch.Tensor:
    """Mean predictive entropy (nats) over all response tokens of `chunks` (0-d tensor)."""
    total = torch.zeros((), dtype=torch.float32, device=pad[1])
    count = 0
    for chunk in chunks:
        batch = data.batch(chunk, *pad)
        _, logits = forward_hidden(model, batch)
        logp = torch.log_softmax(logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(dim=-1)
        mask = batch.labels[:, 1:] != IGNORE_INDEX
        total = total + (entropy * mask).sum()
        count += int(data.n_response[chunk].sum())
    return total / max(count, 1)
