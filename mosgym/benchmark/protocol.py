"""The benchmark's settings, checked, and the ids that let a rerun find what is already done."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosgym.benchmark.simeval import EVAL_SEED
from mosgym.benchmark.suite import Entry, Suite, digest
from mosgym.config import to_dict
from mosgym.errors import MosgymError

PAIRINGS = ("cross", "zip")


@dataclass
class Settings:
    """One benchmark: what is trained, how long, how it is scored and deployed, where it goes."""

    suite: Suite
    entries: dict[str, Entry]
    """algorithm -> its entry, in the order given."""
    seeds: list[int]
    """Training seeds (each SB3 algorithm is trained once per seed)."""
    budget: int
    """Simulated env steps per training run (SB3 ends its last rollout, so a few more)."""
    eval_every: int
    """Env steps between evaluations on the held-out simulator episodes (learning curves)."""
    eval_episodes: int
    """Held-out simulated episodes per evaluation."""
    real_seeds: list[int]
    """Seeds of the real deployments."""
    pairing: str = "cross"
    """'cross': every policy on every real seed; 'zip': policy of training seed i on real seed i."""
    dr_spread: float = 0.1
    """Relative log-std of the randomised simulator parameters ('-dr' algorithms)."""
    baselines: list[str] = field(default_factory=list)
    """Agent configs deployed beside the algorithms (and scored on the simulator)."""
    out: Path = Path("benchmarks")
    """Folder for policies, deployment YAMLs and the report."""
    experiment: str = ""
    """MLflow experiment of the parent run and its simulator children."""
    real_experiment: str = ""
    """MLflow experiment of the real deployments."""

    def check(self) -> None:
        """Every mistake a user can make in these numbers, as one MosgymError."""
        if self.budget < 1:
            raise MosgymError(f"--budget {self.budget}: must be >= 1 simulated env step")
        if not 1 <= self.eval_every <= self.budget:
            raise MosgymError(
                f"--eval-every {self.eval_every}: must be between 1 and --budget ({self.budget})"
            )
        if self.eval_episodes < 1:
            raise MosgymError(f"--eval-episodes {self.eval_episodes}: must be >= 1")
        if self.pairing not in PAIRINGS:
            raise MosgymError(f"--pairing {self.pairing}: expected one of {', '.join(PAIRINGS)}")
        if self.pairing == "zip" and len(self.real_seeds) != len(self.seeds):
            raise MosgymError(
                f"--pairing zip pairs training seed i with real seed i: --seeds has "
                f"{len(self.seeds)}, --real-seeds {len(self.real_seeds)}; give as many of each"
            )
        if not 0.0 <= self.dr_spread <= 1.0:
            raise MosgymError(f"--dr-spread {self.dr_spread}: must be in [0, 1]")

    @property
    def randomised(self) -> bool:
        return any(e.randomised for e in self.entries.values())

    def trial_id(self, entry: Entry, seed: int | None) -> str:
        """A training run (or an in-episode learner's evaluation) by its resolved settings."""
        data: dict[str, Any] = {
            "sim": to_dict(entry.sim_config(self.suite)),
            "entry": entry.identity(),
            "episodes": self.eval_episodes,
            "eval_seed": EVAL_SEED,
        }
        if entry.trains:
            data |= {"seed": seed, "budget": self.budget, "eval_every": self.eval_every}
        if entry.randomised:
            data["dr_spread"] = self.dr_spread
        return digest(data)

    @functools.cached_property
    def bench_id(self) -> str:
        """The benchmark by everything its simulator side depends on, and its real env."""
        return digest(
            {
                "real": to_dict(self.suite.real),
                "trials": sorted(
                    self.trial_id(e, s)
                    for e in self.entries.values()
                    for s in (self.seeds if e.trains else [None])
                ),
                "baselines": self.baselines,
            }
        )

    def spec(self) -> dict[str, Any]:
        """What the parent run records (tag and params): enough to read the command back."""
        return {
            "suite": self.suite.name,
            "real_env": str(self.suite.real_path),
            "sim_env": str(self.suite.sim_path),
            "sets": list(self.suite.sets),
            "algos": list(self.entries),
            "entries": {a: str(e.path) for a, e in self.entries.items()},
            "seeds": self.seeds,
            "budget": self.budget,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
            "eval_seed": EVAL_SEED,
            "dr_spread": self.dr_spread,
            "baselines": self.baselines,
            "real_experiment": self.real_experiment,
        }
