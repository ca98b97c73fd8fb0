"""The simulator's parameters: the `sim:` block of an env config, typed and validated.

See mosgym.sim.learner for the model these parameters drive.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from mosgym.config import from_dict
from mosgym.errors import MosgymError


@dataclass
class SimParams:
    """Simulator parameters (the `sim:` block of an env config). Lists have one entry per skill."""

    init_loss: list[float]
    """Dev loss of the initial model (nats per response token)."""
    floor_loss: list[float]
    """Irreducible loss reached with unlimited data (must be below init_loss)."""
    rate: list[float]
    """Effective examples at which the learnable loss has fallen by a factor 2**exponent."""
    exponent: list[float]
    """Power-law exponent of the loss against effective exposure."""
    transfer: list[list[float]]
    """N x N: transfer[i][j] = exposure credited to skill i per example of skill j."""
    general_share: list[float] | None = None
    """Share of the learnable loss that is skill-agnostic (learnt from every skill's examples;
    the response format, the alphabet); default 0: none."""
    general_rate: float = 1.0
    """Examples (of all skills together) at which the general part has fallen by 2**exponent."""
    general_exponent: float = 1.0
    """Power-law exponent of the general part against all examples seen."""
    overfit: list[float] | None = None
    """Dev-loss increase per epoch beyond overfit_epochs (default 0: no overfitting)."""
    overfit_epochs: list[float] | None = None
    """Epochs of a skill's own data before it starts to overfit (default 1)."""
    forget: list[float] | None = None
    """Exposure decay per optimizer step spent on other skills (default 0)."""
    tokens_per_example: list[int] | None = None
    """Trained (response) tokens per example (default 16)."""
    response_frac: list[float] | None = None
    """Share of a sequence's tokens in the response, for sequence-level NLL (default 0.5)."""
    prompt_loss: list[float] | None = None
    """Prompt-token NLL, unchanged by training as prompts are masked (default init_loss)."""
    accuracy_mid: list[float | None] | None = None
    """Dev loss at 50% exact-match accuracy; null: no exact match (default: all null)."""
    accuracy_slope: float = 4.0
    """Steepness of the loss -> accuracy logistic curve."""
    example_spread: float = 0.3
    """Log-std of per-example difficulty (fixed per example)."""
    noise: float = 0.1
    """Per-example, per-probe NLL noise (nats); also the scale of MultiUAT's noise."""
    embed_dim: int = 16
    """H, the embedding size of probe results."""
    embed_common: float = 3.0
    """Norm of the component shared by all skills' embeddings (sets COSSIM's level)."""
    embed_drift: float = 1.0
    """How far embeddings move with learning progress."""
    embed_noise: float = 1.0
    """Per-example embedding noise (per dimension, times 1/sqrt(H))."""
    grad_noise: float = 1.0
    """MultiDDS gradient noise relative to the gradient norm, for one example."""


_PER_SKILL_DEFAULTS: dict[str, Any] = {
    "general_share": 0.0,
    "overfit": 0.0,
    "overfit_epochs": 1.0,
    "forget": 0.0,
    "tokens_per_example": 16,
    "response_frac": 0.5,
    "prompt_loss": None,  # init_loss
    "accuracy_mid": None,
}


def _fail(where: str, key: str, what: str) -> MosgymError:
    return MosgymError(f"{where}: sim.{key}: {what}")


def _check_lists(p: SimParams, n: int, where: str) -> None:
    """Every per-skill list has N entries; the transfer matrix is N x N."""
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        if f.name == "transfer":
            rows_ok = all(len(r) == n for r in value)
            if len(value) != n or not rows_ok:
                shape = f"{len(value)} rows of lengths {[len(r) for r in value]}"
                raise _fail(
                    where,
                    "transfer",
                    f"must be {n} x {n} (one row and column per skill), got {shape}",
                )
        elif isinstance(value, list) and len(value) != n:
            raise _fail(where, f.name, f"expected {n} values (one per skill), got {len(value)}")


def _check_values(p: SimParams, where: str) -> None:
    """Ranges that keep the dynamics meaningful."""
    checks = [
        ("init_loss", all(x > 0 for x in p.init_loss), "must be > 0"),
        (
            "floor_loss",
            all(0 <= f < i for f, i in zip(p.floor_loss, p.init_loss, strict=True)),
            "must be >= 0 and below init_loss",
        ),
        ("rate", all(x > 0 for x in p.rate), "must be > 0"),
        ("exponent", all(x > 0 for x in p.exponent), "must be > 0"),
        (
            "transfer",
            all(p.transfer[i][i] > 0 for i in range(len(p.transfer))),
            "diagonal entries must be > 0 (training on a skill helps it)",
        ),
        ("general_share", all(0 <= x < 1 for x in p.general_share or []), "must be in [0, 1)"),
        ("general_rate", p.general_rate > 0, "must be > 0"),
        ("general_exponent", p.general_exponent > 0, "must be > 0"),
        ("overfit", all(x >= 0 for x in p.overfit or []), "must be >= 0"),
        ("overfit_epochs", all(x >= 0 for x in p.overfit_epochs or []), "must be >= 0"),
        ("forget", all(0 <= x < 1 for x in p.forget or []), "must be in [0, 1)"),
        ("tokens_per_example", all(x > 0 for x in p.tokens_per_example or []), "must be > 0"),
        ("response_frac", all(0 < x <= 1 for x in p.response_frac or []), "must be in (0, 1]"),
        ("embed_dim", p.embed_dim >= 1, "must be >= 1"),
    ]
    for key in (
        "example_spread",
        "noise",
        "embed_common",
        "embed_drift",
        "embed_noise",
        "grad_noise",
        "accuracy_slope",
    ):
        checks.append((key, getattr(p, key) >= 0, "must be >= 0"))
    for key, ok, what in checks:
        if not ok:
            raise _fail(where, key, f"{what}, got {getattr(p, key)}")
    flat = [x for r in p.transfer for x in r] + p.init_loss + p.rate + p.exponent
    if not all(np.isfinite(flat)):
        raise _fail(where, "transfer", "values must be finite")


def parse_sim_params(data: Any, n_skills: int, where: str = "env config") -> SimParams:
    """Validate a `sim:` mapping for N skills; MosgymError naming the key and `where` (a file)."""
    if data is None:
        raise MosgymError(f"{where}: learner 'sim' needs a 'sim:' block (see envs/sim-*.yaml)")
    params = from_dict(SimParams, data, f"{where}: sim")
    _check_lists(params, n_skills, where)
    _check_values(params, where)
    for key, default in _PER_SKILL_DEFAULTS.items():
        if getattr(params, key) is None:
            fill = params.init_loss if key == "prompt_loss" else [default] * n_skills
            setattr(params, key, list(fill))
    return params
