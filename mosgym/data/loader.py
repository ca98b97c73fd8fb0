"""From SkillConfigs to tokenized Skills: sources, dev/probe splits, tokenization, cache.

Splits:
- builtin: train, dev and probe are generated separately from data_seed and never share a
  prompt (see mosgym.data.builtin.generate_splits).
- files (jsonl, hf): dev is `dev_path` when given; otherwise n_dev rows (a count, or a fraction
  in (0, 1)) are held out of the training file by a seeded shuffle, and at least one row must
  remain for training. n_train, when set, caps the remaining training rows. The probe split is
  a seeded subset of min(n_probe, len(train)) TRAINING rows, as in the paper, where rewards are
  computed on samples from the training data. All splits keep the file's row order.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mosgym.config import SkillConfig
from mosgym.data import builtin
from mosgym.data.formatting import tokenize_split, tokenizer_fingerprint
from mosgym.data.sources import FORMATS, Example, load_hf_examples, load_jsonl_examples
from mosgym.data.types import IGNORE_INDEX, Skill, TokenizedSplit
from mosgym.errors import MosgymError

logger = logging.getLogger(__name__)

SOURCES = ("builtin", "jsonl", "hf")


def default_cache_dir() -> Path:
    """~/.cache/mosgym (or $XDG_CACHE_HOME/mosgym): where EnvConfig.cache_dir None points."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mosgym"


def load_skills(
    skills: Sequence[SkillConfig],
    tokenizer: Any,
    max_length: int,
    data_seed: int,
    cache_dir: str | Path | None = None,
    short_answer_tokens: int = 32,
) -> list[Skill]:
    """Tokenized train/dev/probe splits for every skill, in config order.

    cache_dir: None -> default_cache_dir(); '' -> no caching; else the folder to cache in.
    short_answer_tokens: a file skill with `exact_match` unset is scored by exact match when
    every dev answer has at most this many tokens (train.eval_max_new_tokens).
    Raises MosgymError when max_length leaves a split without any response token to learn
    from; warns when it cuts many examples.
    """
    if not skills:
        raise MosgymError(
            "skills: the list is empty; name at least one skill or leave `skills` out "
            "for the built-in suite"
        )
    _check_names(skills)
    cache: str | Path | None = default_cache_dir() if cache_dir is None else cache_dir
    fingerprint = tokenizer_fingerprint(tokenizer) if cache else None
    out = []
    for i, cfg in enumerate(skills):
        where = f"skills[{i}] ({cfg.name})"
        splits = _example_splits(cfg, data_seed, where)
        tokenized = {
            split: tokenize_split(
                tokenizer,
                [e.messages for e in examples],
                [e.id for e in examples],
                max_length,
                cache_dir=cache or None,
                fingerprint=fingerprint,
                name=f"skill '{cfg.name}' {split}",
            )
            for split, examples in splits.items()
        }
        for split, data in tokenized.items():
            check_truncation(data, f"skill '{cfg.name}' {split}", max_length)
        exact = _exact_match(cfg, tokenizer, tokenized["dev"].references, short_answer_tokens)
        out.append(Skill(cfg.name, exact_match=exact, **tokenized))
        logger.info(
            "skill '%s': %d train, %d dev, %d probe examples",
            cfg.name, len(tokenized["train"]), len(tokenized["dev"]), len(tokenized["probe"]),
        )  # fmt: skip
    return out


TRUNCATION_WARNING = 0.1
"""Share of a split's examples cut at max_length above which a warning is logged."""


def check_truncation(split: TokenizedSplit, where: str, max_length: int) -> None:
    """Refuse a split that keeps no response token after truncation (nothing to learn from or
    measure: a run would train on zero tokens and report a NaN dev loss); warn when more than
    TRUNCATION_WARNING of its examples are cut."""
    if len(split) == 0:
        return
    kept = np.array([int(np.sum(y != IGNORE_INDEX)) for y in split.labels])
    if not kept.any():
        longest = int(max(len(p) for p in split.prompt_ids))
        raise MosgymError(
            f"{where}: train.max_length={max_length} cuts the response off every one of its "
            f"{len(split)} examples (prompts take up to {longest} of the {max_length} tokens); "
            "raise train.max_length"
        )
    if split.n_truncated > TRUNCATION_WARNING * len(split):
        lost = int(np.sum(kept == 0))
        logger.warning(
            "%s: %d of %d examples (%.0f%%) cut at train.max_length=%d%s; raise it to keep them",
            where, split.n_truncated, len(split), 100 * split.n_truncated / len(split), max_length,
            f", {lost} of them with no response token left" if lost else "",
        )  # fmt: skip


def _exact_match(
    cfg: SkillConfig, tokenizer: Any, references: list[str], short_answer_tokens: int
) -> bool:
    """cfg.exact_match, or its default: built-in skills, and file skills with short answers."""
    if cfg.exact_match is not None:
        return cfg.exact_match
    if cfg.source == "builtin":
        return True
    if not references:
        return False
    lengths = [len(ids) for ids in tokenizer(references, add_special_tokens=False)["input_ids"]]
    return max(lengths) <= short_answer_tokens


def _check_names(skills: Sequence[SkillConfig]) -> None:
    seen: dict[str, int] = {}
    for i, cfg in enumerate(skills):
        if not cfg.name:
            raise MosgymError(f"skills[{i}].name: must be a non-empty string")
        if cfg.name in seen:
            raise MosgymError(
                f"skills[{i}].name: duplicate skill name '{cfg.name}' "
                f"(also skills[{seen[cfg.name]}]); skill names must be unique"
            )
        seen[cfg.name] = i


def _example_splits(cfg: SkillConfig, data_seed: int, where: str) -> dict[str, list[Example]]:
    if cfg.source not in SOURCES:
        raise MosgymError(
            f"{where}.source: unknown source '{cfg.source}' (choose one of: {', '.join(SOURCES)})"
        )
    if cfg.format not in FORMATS:
        raise MosgymError(
            f"{where}.format: unknown format '{cfg.format}' (choose one of: {', '.join(FORMATS)})"
        )
    if cfg.source == "builtin":
        return _builtin_splits(cfg, data_seed, where)
    return _file_splits(cfg, data_seed, where)


def _builtin_splits(cfg: SkillConfig, data_seed: int, where: str) -> dict[str, list[Example]]:
    task = cfg.task or cfg.name
    if task not in builtin.TASKS:
        raise MosgymError(
            f"{where}.task: unknown builtin task '{task}' (choose one of: "
            f"{', '.join(builtin.TASKS)}; or set source: jsonl / hf for your own data)"
        )
    if isinstance(cfg.n_dev, float):
        raise MosgymError(f"{where}.n_dev: builtin skills need a count, got {cfg.n_dev!r}")
    n_train = builtin.DEFAULT_SIZES.get(task, 1000) if cfg.n_train is None else cfg.n_train
    if n_train < 1:
        raise MosgymError(f"{where}.n_train: must be >= 1, got {n_train}")
    try:
        pairs = builtin.generate_splits(task, n_train, cfg.n_dev, cfg.n_probe, data_seed)
    except MosgymError as e:
        raise MosgymError(f"{where}: {e}") from None
    return {
        split: [
            Example(
                f"{cfg.name}/{split}/{j}",
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
            )
            for j, (p, r) in enumerate(pairs[split])
        ]
        for split in ("train", "dev", "probe")
    }


def _read(cfg: SkillConfig, where: str, split: str, path: str | None) -> list[Example]:
    default_id = f"{cfg.name}/{split}"
    if cfg.source == "jsonl":
        if not path:
            raise MosgymError(f"{where}.path: source 'jsonl' needs a path to a .jsonl file")
        return load_jsonl_examples(path, cfg.format, cfg.columns, default_id)
    if not cfg.dataset:
        raise MosgymError(f"{where}.dataset: source 'hf' needs a dataset name or folder")
    return load_hf_examples(cfg.dataset, cfg.subset, cfg.split, cfg.format, cfg.columns, default_id)


def _n_holdout(n_dev: int | float, n_rows: int, where: str) -> int:
    """Rows to hold out for dev: a count, or a fraction of the file's rows."""
    if isinstance(n_dev, float):
        if not 0.0 < n_dev < 1.0:
            raise MosgymError(f"{where}.n_dev: a fraction must be in (0, 1), got {n_dev}")
        k = max(1, round(n_dev * n_rows))
    else:
        if n_dev < 0:
            raise MosgymError(f"{where}.n_dev: must be >= 0, got {n_dev}")
        k = n_dev
    if k >= n_rows:
        raise MosgymError(
            f"{where}.n_dev: holding out {k} dev rows leaves no training rows ({n_rows} rows in "
            "the file); lower n_dev, use a fraction such as 0.1, or give dev_path"
        )
    return k


def _file_splits(cfg: SkillConfig, data_seed: int, where: str) -> dict[str, list[Example]]:
    rows = _read(cfg, where, "train", cfg.path)
    order = list(range(len(rows)))
    random.Random(f"mosgym/dev/{data_seed}/{cfg.name}").shuffle(order)
    if cfg.source == "jsonl" and cfg.dev_path:
        dev = _read(cfg, where, "dev", cfg.dev_path)
        train_idx = order
    else:
        k = _n_holdout(cfg.n_dev, len(rows), where)
        dev = [rows[i] for i in sorted(order[:k])]
        train_idx = order[k:]
    if cfg.n_train is not None:
        if cfg.n_train < 1:
            raise MosgymError(f"{where}.n_train: must be >= 1, got {cfg.n_train}")
        train_idx = train_idx[: cfg.n_train]
    train_idx.sort()
    train = [rows[i] for i in train_idx]
    if cfg.n_probe < 0:
        raise MosgymError(f"{where}.n_probe: must be >= 0, got {cfg.n_probe}")
    rng = random.Random(f"mosgym/probe/{data_seed}/{cfg.name}")
    probe_idx = sorted(rng.sample(range(len(train)), min(cfg.n_probe, len(train))))
    return {"train": train, "dev": dev, "probe": [train[i] for i in probe_idx]}
