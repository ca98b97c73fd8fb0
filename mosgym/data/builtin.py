"""Built-in procedural skills: the offline default suite, generated from a seed.

Six tasks of clearly different difficulty for a ~1M-parameter byte-level LM, with very unequal
training sizes: the easy skills are large and the hard ones small but learnable, so that
proportional sampling (which starves the small skills) and uniform sampling (which repeats them
many times) end with clearly different per-skill results. That gap is what a learned mixture
has to exploit.

Every example is short (prompt + response <= 40 tokens with the byte tokenizer, chat tokens
included) and its response is checkable by exact match.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from mosgym.config import SkillConfig
from mosgym.errors import MosgymError

Pair = tuple[str, str]
"""(prompt, response)."""


def _letters(rng: random.Random, lo: int, hi: int, alphabet: str = string.ascii_lowercase) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def copy_task(rng: random.Random) -> Pair:
    """Repeat a word: the easiest skill (one attention hop per output token)."""
    s = _letters(rng, 4, 10)
    return f"copy {s}", s


def reverse_task(rng: random.Random) -> Pair:
    """Repeat a word backwards: copying with position arithmetic."""
    s = _letters(rng, 4, 10)
    return f"rev {s}", s[::-1]


def sort_task(rng: random.Random) -> Pair:
    """Sort digits: needs a global view of the input, not a fixed alignment."""
    s = _letters(rng, 4, 10, string.digits)
    return f"sort {s}", "".join(sorted(s))


def count_task(rng: random.Random) -> Pair:
    """Count one letter in a string over a 4-letter alphabet: aggregation over positions."""
    s = _letters(rng, 6, 14, "abcd")
    c = rng.choice("abcd")
    return f"count {c} in {s}", str(s.count(c))


def lookup_task(rng: random.Random) -> Pair:
    """Key-value lookup in context: find the queried key, emit the digit after it."""
    keys = rng.sample(string.ascii_lowercase, rng.randint(3, 5))
    values = [rng.choice(string.digits) for _ in keys]
    query = rng.randrange(len(keys))
    table = " ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))
    return f"get {keys[query]}: {table}", values[query]


def add_task(rng: random.Random) -> Pair:
    """Two-digit addition with carries: the hardest skill for a tiny model."""
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"{a}+{b}=", str(a + b)


TASKS: dict[str, Callable[[random.Random], Pair]] = {
    "copy": copy_task,
    "reverse": reverse_task,
    "sort": sort_task,
    "count": count_task,
    "lookup": lookup_task,
    "add": add_task,
}
"""Built-in task name -> generator of one (prompt, response) pair from a random.Random."""

DEFAULT_SIZES: dict[str, int] = {
    "copy": 6000,
    "reverse": 3000,
    "sort": 1500,
    "count": 800,
    "lookup": 500,
    "add": 250,
}
"""Training sizes of the default suite: easy skills large, hard skills small (ratio 24)."""

DEFAULT_N_DEV = 64
DEFAULT_N_PROBE = 64


def default_skill_configs() -> list[SkillConfig]:
    """The built-in suite the environment uses when a config names no skills."""
    return [
        SkillConfig(
            name=task,
            source="builtin",
            task=task,
            n_train=size,
            n_dev=DEFAULT_N_DEV,
            n_probe=DEFAULT_N_PROBE,
        )
        for task, size in DEFAULT_SIZES.items()
    ]


def get_task(task: str) -> Callable[[random.Random], Pair]:
    """The generator for `task`, or a MosgymError listing the valid names."""
    if task not in TASKS:
        raise MosgymError(
            f"unknown builtin task '{task}' (choose one of: {', '.join(TASKS)}; "
            "or set source: jsonl / hf for your own data)"
        )
    return TASKS[task]


def generate_splits(
    task: str, n_train: int, n_dev: int, n_probe: int, seed: int
) -> dict[str, list[Pair]]:
    """Train, dev and probe pairs for `task`, deterministic from `seed`, disjoint by prompt.

    One random stream per (task, seed) fills dev first, then probe, then train, skipping any
    prompt already drawn, so dev and probe do not change when n_train changes.
    """
    make = get_task(task)
    for label, n in (("n_train", n_train), ("n_dev", n_dev), ("n_probe", n_probe)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise MosgymError(f"builtin task '{task}': {label} must be a count >= 0, got {n!r}")
    # A string seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
    rng = random.Random(f"mosgym/builtin/{task}/{seed}")
    seen: set[str] = set()
    out: dict[str, list[Pair]] = {}
    for split, n in (("dev", n_dev), ("probe", n_probe), ("train", n_train)):
        out[split] = _draw_unique(make, rng, n, seen, task)
    return out


def generate_examples(task: str, n: int, seed: int) -> list[Pair]:
    """`n` distinct (prompt, response) pairs for `task`, deterministic from `seed`."""
    return generate_splits(task, n_train=n, n_dev=0, n_probe=0, seed=seed)["train"]


def _draw_unique(
    make: Callable[[random.Random], Pair],
    rng: random.Random,
    n: int,
    seen: set[str],
    task: str,
) -> list[Pair]:
    """Draw `n` pairs whose prompts are not in `seen` (and add them to it)."""
    pairs: list[Pair] = []
    max_attempts = 50 * n + 1000
    attempts = 0
    while len(pairs) < n:
        attempts += 1
        if attempts > max_attempts:
            raise MosgymError(
                f"builtin task '{task}': could not draw {n} distinct examples "
                f"(only {len(seen)} found); lower n_train, n_dev or n_probe"
            )
        prompt, response = make(rng)
        if prompt in seen:
            continue
        seen.add(prompt)
        pairs.append((prompt, response))
    return pairs
