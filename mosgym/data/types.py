"""The data layer's output: skills as tokenized splits, ready for the learner."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = -100
"""Label value for positions that are not trained on (prompt, padding), as in transformers."""


@dataclass
class TokenizedSplit:
    """One split of one skill, tokenized once.

    All lists have one entry per example. `labels[i]` has the length of `input_ids[i]` and holds
    IGNORE_INDEX everywhere except on response (assistant) tokens, so the loss never covers the
    prompt; padding is added later by the collator and is masked there too.
    """

    ids: list[str]
    """Stable example ids (from the file's `id` field, or `<skill>/<split>/<row>`)."""
    input_ids: list[np.ndarray]
    """int64 token ids of prompt + response (after truncation)."""
    labels: list[np.ndarray]
    """int64 labels: token ids on response tokens, IGNORE_INDEX elsewhere."""
    prompt_ids: list[np.ndarray]
    """int64 ids of the prompt up to and including the generation prompt (greedy decoding input
    for exact-match evaluation; for multi-turn chats, everything before the last response)."""
    references: list[str]
    """The last response as text (exact-match target)."""
    n_truncated: int = 0
    """How many examples were cut at max_length."""
    lengths: np.ndarray = field(init=False)
    """int64 token count per example."""

    def __post_init__(self) -> None:
        self.lengths = np.array([len(x) for x in self.input_ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Skill:
    """One dataset ("skill") with train, dev and probe splits."""

    name: str
    train: TokenizedSplit
    dev: TokenizedSplit
    probe: TokenizedSplit
    exact_match: bool = False
    """True when answers are checkable by exact match (built-in skills): evaluate() decodes."""
