"""MixtureDataset: an endless stream of training examples whose mixture can change at any step.

Each example's skill is drawn from the mixture in force when it is drawn (per-example sampling,
as in the authors' code); within a skill, examples follow a seeded permutation that is walked
epoch after epoch (`SkillSampler`, the environment's sampler). The stream is a pure function of
the seed and the mixture path (which mixture took effect at which stream position), so:

- every rank of a torchrun/accelerate job iterates the same stream, and accelerate's
  `IterableDatasetShard` hands each rank its own slice of every global batch (no two ranks draw
  the same example at the same step);
- a resumed Trainer, which fast-forwards the data loader past the batches already trained,
  replays exactly the same examples from the saved mixture path; with
  `ignore_data_skip=True` the stream continues from the saved position instead.

Mixture changes reach the stream through the object itself, so the DataLoader must read it in
the training process (`dataloader_num_workers=0`).
"""

from __future__ import annotations

import bisect
import itertools
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mosgym.data.types import IGNORE_INDEX, Skill, TokenizedSplit
from mosgym.errors import MosgymError
from mosgym.learner.schedule import (
    SkillSampler,
    check_mixture,
    child_seed,
    generator_state,
    restore_generator,
)

_REGISTRY: weakref.WeakValueDictionary[int, MixtureDataset] = weakref.WeakValueDictionary()
"""Live datasets by id, so the Hugging Face wrapper's generator gets a small key to hash (the
`datasets` library fingerprints generator arguments by pickling them)."""
_KEYS = itertools.count()


class MixtureDataset(torch.utils.data.IterableDataset):
    """Examples from N skill datasets, each drawn from skill i with probability p_i.

    `skills` maps each skill name to its examples (any sequence of mappings: a list of dicts, a
    `datasets.Dataset`); examples are yielded as they are, for the Trainer's collator.
    `mixture` is the starting mixture (default uniform); `seed` fixes the whole stream.
    """

    def __init__(
        self,
        skills: Mapping[str, Sequence[Mapping[str, Any]]],
        mixture: Sequence[float] | np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not skills:
            raise MosgymError("MixtureDataset: no skills given; pass {skill name: examples}")
        self.skill_names = [str(name) for name in skills]
        self.examples = [skills[name] for name in skills]
        self.train_sizes = np.array([len(x) for x in self.examples], dtype=np.int64)
        empty = [n for n, size in zip(self.skill_names, self.train_sizes, strict=True) if not size]
        if empty:
            raise MosgymError(f"MixtureDataset: skill '{empty[0]}' has no examples; drop it")
        self.seed = int(seed)
        n = len(self.skill_names)
        first = np.full(n, 1.0 / n) if mixture is None else self._check(mixture)
        self._path: list[tuple[int, np.ndarray]] = [(0, first)]
        self._start: dict[str, Any] | None = None  # None: position 0, freshly seeded
        self._expect: dict[str, Any] | None = None  # a saved cursor the replay must reach
        self._live: tuple[np.random.Generator, SkillSampler] | None = None
        self.cursor = 0
        """Stream position of the next example the live iterator will draw."""
        self.consumed = np.zeros(n, dtype=np.int64)
        """(N,) examples drawn per skill up to the cursor."""
        self._log = np.zeros(1024, dtype=np.int16)
        self._log_base = 0
        self._key = next(_KEYS)
        _REGISTRY[self._key] = self

    # ----------------------------------------------------------------------------------------
    # The mixture

    @property
    def mixture(self) -> np.ndarray:
        """(N,) the mixture the next drawn example uses."""
        return self._path[-1][1].copy()

    @property
    def path(self) -> list[tuple[int, np.ndarray]]:
        """(stream position, mixture) of every change, in order."""
        return [(pos, p.copy()) for pos, p in self._path]

    def _check(self, mixture: Any) -> np.ndarray:
        return check_mixture(mixture, self.skill_names)

    def begin(self, mixture: Any) -> None:
        """Start a fresh stream at position 0 with `mixture` (the start of a training run)."""
        self._path = [(0, self._check(mixture))]
        self._start = self._expect = None
        # Iterators opened before (TRL peeks at the first example) leave no trace.
        self.cursor, self._log_base = 0, 0
        self.consumed = np.zeros(len(self.skill_names), dtype=np.int64)

    def set_mixture(self, mixture: Any) -> None:
        """Use `mixture` from the next example the stream draws on."""
        p = self._check(mixture)
        if self.cursor < self._path[-1][0]:
            raise RuntimeError(
                f"mixture change at stream position {self.cursor}, before the last one "
                f"({self._path[-1][0]}): the stream went backwards"
            )
        if self.cursor == self._path[-1][0]:
            self._path[-1] = (self.cursor, p)
        else:
            self._path.append((self.cursor, p))

    def skills_at(self, positions: np.ndarray) -> np.ndarray:
        """(K,) skill of each already drawn stream position (of the live iterator)."""
        positions = np.asarray(positions, dtype=np.int64)
        rel = positions - self._log_base
        if len(rel) and (rel.min() < 0 or positions.max() >= self.cursor):
            raise RuntimeError(
                f"stream positions {positions.min()}..{positions.max()} not drawn yet "
                f"(drawn: {self._log_base}..{self.cursor - 1})"
            )
        return self._log[rel].astype(np.int64)

    # ----------------------------------------------------------------------------------------
    # The stream

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for skill, index in self._draws():
            yield self.examples[skill][index]

    def _draws(self) -> Iterator[tuple[int, int]]:
        """(skill, example index) of each stream position, from the start state on."""
        pos, rng, sampler, consumed = self._start_state()
        self._live = (rng, sampler)
        self.cursor, self.consumed, self._log_base = pos, consumed, pos
        i = bisect.bisect_right([p for p, _ in self._path], pos) - 1
        cdf = _cdf(self._path[i][1])
        while True:
            # Entries appended while iterating take effect at their own position.
            while i + 1 < len(self._path) and self._path[i + 1][0] <= pos:
                i += 1
                cdf = _cdf(self._path[i][1])
            skill = int(np.searchsorted(cdf, rng.random(), side="right"))
            index = int(sampler.draw(skill, 1)[0])
            self._record(pos, skill)
            pos += 1
            self.cursor = pos
            if self._expect is not None and pos == self._expect["position"]:
                self._check_replay()
            yield skill, index

    def _start_state(self) -> tuple[int, np.random.Generator, SkillSampler, np.ndarray]:
        n = len(self.skill_names)
        sampler = SkillSampler(self.train_sizes, child_seed(self.seed, 1))
        if self._start is None:
            rng = np.random.default_rng(child_seed(self.seed, 0))
            return 0, rng, sampler, np.zeros(n, dtype=np.int64)
        s = self._start
        sampler.load_state_dict(s["sampler"])
        return int(s["position"]), restore_generator(s["rng"]), sampler, _ints(s["consumed"])

    def _record(self, pos: int, skill: int) -> None:
        """Log the skill of stream position `pos` and count it."""
        rel = pos - self._log_base
        if rel >= len(self._log):
            self._log = np.concatenate([self._log, np.zeros_like(self._log)])
        self._log[rel] = skill
        self.consumed[skill] += 1

    def _check_replay(self) -> None:
        """The replayed stream reached the saved position: it must have drawn the same."""
        expect, self._expect = self._expect, None
        assert expect is not None
        if not np.array_equal(self.consumed, _ints(expect["consumed"])):
            raise MosgymError(
                f"resume: the replayed data stream drew {self.consumed.tolist()} examples per "
                f"skill by position {expect['position']}, the saved run {expect['consumed']}; "
                "resume with the same skill datasets, seed and batch settings"
            )

    # ----------------------------------------------------------------------------------------
    # Checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the mixture path and the live stream's position and RNG states."""
        state: dict[str, Any] = {
            "skill_names": list(self.skill_names),
            "train_sizes": self.train_sizes.tolist(),
            "seed": self.seed,
            "path": [[pos, p.tolist()] for pos, p in self._path],
            "position": self.cursor,
            "consumed": self.consumed.tolist(),
        }
        if self._live is not None:
            rng, sampler = self._live
            sampler_state = sampler.state_dict()
            state["rng"] = generator_state(rng)
            state["sampler"] = {
                "rngs": sampler_state["rngs"],
                "perms": [p.tolist() for p in sampler_state["perms"]],
                "pos": sampler_state["pos"].tolist(),
                "epochs": sampler_state["epochs"].tolist(),
            }
        return state

    def load_state_dict(self, state: dict[str, Any], replay: bool = True) -> None:
        """Restore a `state_dict`. `replay`: the next iterator starts again at position 0 and
        replays the saved path (what a resumed Trainer needs, since it fast-forwards the data
        loader itself); otherwise it continues from the saved position."""
        same = (
            state["skill_names"] == self.skill_names
            and state["train_sizes"] == self.train_sizes.tolist()
            and state["seed"] == self.seed
        )
        if not same:
            raise MosgymError(
                f"resume: the checkpoint's data stream is over skills {state['skill_names']} "
                f"with sizes {state['train_sizes']} and seed {state['seed']}, this one over "
                f"{self.skill_names} with {self.train_sizes.tolist()} and seed {self.seed}; "
                "resume with the same skill datasets and seed"
            )
        self._path = [(int(pos), np.asarray(p, dtype=np.float64)) for pos, p in state["path"]]
        if replay or "rng" not in state:
            self._start = None
            self._expect = {"position": state["position"], "consumed": state["consumed"]}
        else:
            self._start, self._expect = state, None

    # ----------------------------------------------------------------------------------------
    # TRL

    def as_hf_dataset(self) -> Any:
        """This stream as a `datasets.IterableDataset` (what TRL's SFTTrainer accepts); it reads
        this object live, so mixture changes and checkpoints go through this object."""
        import datasets

        return datasets.IterableDataset.from_generator(_generate, gen_kwargs={"key": self._key})


def _generate(key: int) -> Iterator[Mapping[str, Any]]:
    yield from _REGISTRY[key]


def _cdf(p: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(p)
    return cdf / cdf[-1]


def _ints(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).copy()


# --------------------------------------------------------------------------------------------
# mosgym skills <-> Trainer examples

MASKS = ("labels", "completion_mask")


def skill_examples(
    skills: Sequence[Skill], split: str = "train", mask: str = "labels"
) -> dict[str, list[dict[str, list[int]]]]:
    """Trainer-ready examples of mosgym skills ({name: examples}), from their tokenized `split`
    ('train', 'dev' or 'probe'). `mask='labels'`: {input_ids, labels} with -100 off the response
    (transformers' Trainer); `'completion_mask'`: {input_ids, completion_mask} (TRL's
    completion-only loss)."""
    if mask not in MASKS:
        raise MosgymError(f"skill_examples: mask {mask!r} unknown (valid: {', '.join(MASKS)})")
    if split not in ("train", "dev", "probe"):
        raise MosgymError(f"skill_examples: split {split!r} unknown (train, dev or probe)")
    out = {}
    for skill in skills:
        part: TokenizedSplit = getattr(skill, split)
        rows = []
        for ids, labels in zip(part.input_ids, part.labels, strict=True):
            if mask == "labels":
                rows.append({"input_ids": ids.tolist(), "labels": labels.tolist()})
            else:
                on = (labels != IGNORE_INDEX).astype(np.int64)
                rows.append({"input_ids": ids.tolist(), "completion_mask": on.tolist()})
        out[skill.name] = rows
    return out


def tokenized_split(
    examples: Sequence[Mapping[str, Any]], skill: str, rows: Sequence[int] | None = None
) -> TokenizedSplit:
    """A TokenizedSplit (what the learner's collation packs) of Trainer examples (those at
    `rows`, default all): token ids in 'input_ids'; the loss mask from 'labels' (-100 = not
    trained), else 'completion_mask' or 'assistant_masks' (1 = trained), else the whole
    sequence."""
    rows = range(len(examples)) if rows is None else [int(r) for r in rows]
    ids, labels = [], []
    for i in rows:
        ex = examples[i]
        if "input_ids" not in ex:
            raise MosgymError(
                f"skill '{skill}' example {i}: no 'input_ids'; give tokenized examples "
                f"(keys found: {sorted(ex)})"
            )
        x = np.asarray(ex["input_ids"], dtype=np.int64).reshape(-1)
        if "labels" in ex:
            y = np.asarray(ex["labels"], dtype=np.int64).reshape(-1)
        else:
            key = next((k for k in ("completion_mask", "assistant_masks") if k in ex), None)
            on = np.ones_like(x) if key is None else np.asarray(ex[key]).reshape(-1)
            y = np.where(on.astype(bool), x, IGNORE_INDEX) if len(on) == len(x) else on
        if len(y) != len(x):
            raise MosgymError(
                f"skill '{skill}' example {i}: {len(x)} input_ids but a loss mask of {len(y)}"
            )
        ids.append(x)
        labels.append(y)
    names = [f"{skill}/{i}" for i in rows]
    empty = [np.zeros(0, dtype=np.int64)] * len(ids)
    return TokenizedSplit(names, ids, labels, empty, [""] * len(ids))
