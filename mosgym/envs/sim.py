"""SimLearner: a learning-dynamics model of fine-tuning, behind the same Learner protocol.

`mosgym/MoSSim-v0` is the MixtureOfSkills env with this learner, so every agent and every reward
runs unchanged on it at thousands of env steps per second. Nothing is loaded: no data, no model.

## The model (state: effective exposure E (N,), examples consumed c (N,))
- Loss with diminishing returns, a power law with a floor:
  ``base_i = floor_i + (init_i - floor_i) * (1 + E_i / rate_i) ** -exponent_i``.
  Power laws, not exponentials: fine-tuning loss against data follows a power law with an
  irreducible term (Hernandez et al. 2021, "Scaling laws for transfer"; Kaplan et al. 2020),
  while an exponential flattens far too early and cannot fit a long tail. The ``1 +`` keeps the
  loss finite at E = 0 (base = init). For E < 0 (net negative transfer) the curve continues as
  ``exp(-exponent * E / rate)``, with the same value and slope at 0, and E is clipped at -rate.
- Transfer: c examples of skill j add ``transfer[i][j] * c`` to E_i (diagonal 1 = own data);
  negative entries are interference.
- Forgetting: while training, E_i decays at ``forget_i`` per optimizer step times the share of
  the batch that is NOT skill i, so a skill that is not sampled drifts back to its initial loss
  and a skill trained alone forgets nothing. Over an interval with constant gain and decay the
  update is the exact solution of dE/dt = g/n - k E (`advance_exposure`).
- Overfitting: beyond ``overfit_epochs`` epochs of its own data (c_i / n_train_i), a skill's dev
  loss rises by ``overfit_i`` per extra epoch while its training loss falls by the same
  memorisation gap (``base * exp(-gap / base)``, which stays positive).
- Probes: each example has a fixed difficulty d ~ lognormal(mean 1, ``example_spread``) set by
  data_seed (as real data is fixed across run seeds); its NLL is ``level * d + noise * eps``
  (eps fresh per probe), its initial NLL ``init * d``, so a probe mean has the 1/sqrt(n) noise of
  a finite sample. ``level`` is the training loss for probe_source 'train' (the paper's probes
  come from the training split) and the dev loss for 'probe'.
- Embeddings: a shared component (mean-pooled states of one model are strongly aligned), a skill
  direction, and a shift that grows with learning progress p_j in [-1, 1] along per-skill
  directions, mixed by the transfer matrix: ``z_i = common + mu_i + drift * sum_j T_ij p_j v_j``,
  plus per-example noise. COSSIM therefore moves with training as with a real model.
- MultiDDS: gradient directions whose Gram matrix is the symmetrised, normalised transfer
  matrix, scaled by the remaining learnable loss; MultiUAT: entropy ~ dev loss plus noise.
- Accuracy: a logistic curve of dev loss, ``1 / (1 + exp(slope * (dev - accuracy_mid_i)))``,
  NaN where ``accuracy_mid_i`` is null.
Examples per optimizer step are multinomial with batch_size (per_example sampling) or whole
batches of one skill (per_batch); an interval's totals are drawn at once, which has exactly the
same distribution as drawing each step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from mosgym.config import EnvConfig, SkillConfig, TrainConfig, from_dict
from mosgym.envs.sim_dynamics import (
    advance_exposure,
    base_loss,
    gradient_directions,
    overfit_gap,
    progress,
    unit_rows,
)
from mosgym.errors import MosgymError
from mosgym.learner.base import EvalResult, ProbeResult, TrainStats

_MIN_NLL = 1e-4  # per-example NLL is a mean of -log p over tokens: never below 0


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


# --------------------------------------------------------------------------------------------


def _skill_configs(cfg: EnvConfig, where: str) -> list[SkillConfig]:
    if cfg.skills:
        skills = cfg.skills
    else:
        from mosgym.data.builtin import default_skill_configs

        skills = default_skill_configs()
    for i, s in enumerate(skills):
        if s.n_train is None or s.n_train <= 0:
            raise MosgymError(
                f"{where}: skills[{i}].n_train: learner 'sim' needs each skill's training size "
                f"(a positive integer), got {s.n_train!r}"
            )
    return skills


class SimLearner:
    """A Learner whose fine-tuning is the learning-dynamics model of this module's docstring."""

    def __init__(
        self,
        skill_names: list[str],
        train_sizes: np.ndarray | list[int],
        params: SimParams,
        train: TrainConfig,
        seed: int = 0,
        data_seed: int = 0,
        probe_sizes: list[int] | None = None,
    ) -> None:
        n = len(skill_names)
        self.skill_names = list(skill_names)
        self.train_sizes = np.asarray(train_sizes, dtype=np.int64)
        self.params = params
        self.train_cfg = train
        p = params
        self._init = np.asarray(p.init_loss, float)
        self._floor = np.asarray(p.floor_loss, float)
        self._rate = np.asarray(p.rate, float)
        self._exp = np.asarray(p.exponent, float)
        self._transfer = np.asarray(p.transfer, float)
        self._overfit = np.asarray(p.overfit, float)
        self._ofe = np.asarray(p.overfit_epochs, float)
        self._forget = np.asarray(p.forget, float)
        self._tpe = np.asarray(p.tokens_per_example, np.int64)
        self._rfrac = np.asarray(p.response_frac, float)
        self._prompt = np.asarray(p.prompt_loss, float)
        mid = [np.nan if m is None else m for m in p.accuracy_mid]  # type: ignore[union-attr]
        self._acc_mid = np.asarray(mid, float)
        use_probe_split = train.probe_source == "probe"
        pools = probe_sizes if use_probe_split and probe_sizes else self.train_sizes.tolist()
        self._split = "probe" if use_probe_split else "train"
        self._build_geometry(n, [int(x) for x in pools], data_seed)
        self._ids: list[np.ndarray | None] = [None] * n
        self.reset(seed)

    @classmethod
    def from_config(
        cls, env_cfg: EnvConfig, seed: int = 0, where: str = "env config"
    ) -> SimLearner:
        """Build from an env config (learner 'sim'); `where` names the file in error messages."""
        skills = _skill_configs(env_cfg, where)
        params = parse_sim_params(env_cfg.sim, len(skills), where)
        return cls(
            [s.name for s in skills],
            [int(s.n_train) for s in skills],  # type: ignore[arg-type]
            params,
            env_cfg.train,
            seed=seed,
            data_seed=env_cfg.data_seed,
            probe_sizes=[s.n_probe for s in skills],
        )

    def _build_geometry(self, n: int, pools: list[int], data_seed: int) -> None:
        """Fixed per data_seed: example difficulties, embedding and gradient directions."""
        rng = np.random.default_rng([data_seed, 0x5113])
        s = self.params.example_spread
        self._difficulty = [np.exp(s * rng.standard_normal(m) - s * s / 2.0) for m in pools]
        h = self.params.embed_dim
        self._common = self.params.embed_common * unit_rows(rng.standard_normal(h))
        self._mu = unit_rows(rng.standard_normal((n, h)))
        self._drift_dirs = unit_rows(rng.standard_normal((n, h)))
        self._grad_dirs = gradient_directions(self._transfer)

    # ---------------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Back to the initial model, with fresh generators for `seed`."""
        n = len(self.skill_names)
        self.step = 0
        self.consumed = np.zeros(n, dtype=np.int64)
        self.tokens_seen = np.zeros(n, dtype=np.int64)
        self._exposure = np.zeros(n)
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._emb_cache: np.ndarray | None = None
        train_ss, probe_ss = np.random.SeedSequence([int(seed), 0x5117]).spawn(2)
        self._train_rng = np.random.default_rng(train_ss)
        self._probe_rng = np.random.default_rng(probe_ss)

    def _levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dev loss, training-set loss, base loss) now, each (N,); cached until the state moves."""
        if self._cache is None:
            base = base_loss(self._exposure, self._init, self._floor, self._rate, self._exp)
            gap = overfit_gap(self.consumed, self.train_sizes, self._overfit, self._ofe)
            self._cache = (base + gap, base * np.exp(-gap / base), base)
        return self._cache

    def _draw(self, mixture: np.ndarray, n_steps: int) -> np.ndarray:
        b = self.train_cfg.batch_size
        if self.train_cfg.sampling == "per_batch":
            return self._train_rng.multinomial(n_steps, mixture) * b
        return self._train_rng.multinomial(n_steps * b, mixture)

    def train(self, mixture: np.ndarray, n_steps: int) -> TrainStats:
        """Advance `n_steps` optimizer steps drawing from `mixture`; losses before each update."""
        p = np.asarray(mixture, dtype=np.float64)
        if p.shape != self._init.shape or not (p.min() >= 0 and abs(p.sum() - 1.0) < 1e-6):
            raise ValueError(f"mixture must be a distribution over {p.size} skills, got {p}")
        counts = self._draw(p, n_steps)
        train0 = self._levels()[1]
        self._cache = self._emb_cache = None
        self._exposure = advance_exposure(
            self._exposure, counts, n_steps, self._transfer, self._forget, self._rate
        )
        self.consumed = self.consumed + counts
        self.step += n_steps
        tokens = counts * self._tpe
        self.tokens_seen = self.tokens_seen + tokens
        train1 = self._levels()[1]
        # Within the interval the training loss moves (about) linearly from train0 to train1.
        mid = (train0 + train1) / 2.0
        sd = mid * self.params.example_spread + self.params.noise
        loss_sum = mid * counts + sd * np.sqrt(counts) * self._train_rng.standard_normal(p.size)
        frac = (np.arange(n_steps) + 0.5) / max(n_steps, 1)
        share = counts / max(counts.sum(), 1)
        b = self.train_cfg.batch_size
        step_losses = share @ train0 + frac * (share @ (train1 - train0))
        step_losses = step_losses + (share @ sd) / np.sqrt(b) * self._train_rng.standard_normal(
            n_steps
        )
        return TrainStats(
            examples=counts.astype(np.int64),
            tokens=tokens.astype(np.int64),
            loss_sum=np.maximum(loss_sum, 0.0),
            step_losses=np.maximum(step_losses, 0.0),
        )

    def dev_loss(self) -> np.ndarray:
        """(N,) dev loss of the current model."""
        return self._levels()[0].copy()

    def evaluate(self, generate: bool = True) -> EvalResult:
        """Dev loss and the logistic loss -> accuracy map (NaN without `generate` or a mid)."""
        dev = self.dev_loss()
        if not generate:
            return EvalResult(dev_loss=dev, accuracy=np.full(dev.shape, np.nan))
        acc = 1.0 / (1.0 + np.exp(self.params.accuracy_slope * (dev - self._acc_mid)))
        return EvalResult(dev_loss=dev, accuracy=acc)

    def _example_ids(self, skill: int, idx: np.ndarray) -> list[str]:
        ids = self._ids[skill]
        if ids is None:
            name, m = self.skill_names[skill], len(self._difficulty[skill])
            ids = np.array([f"{name}/{self._split}/{k}" for k in range(m)])
            self._ids[skill] = ids
        return ids[idx].tolist()

    def _embedding_means(self) -> np.ndarray:
        """(N, H) noise-free skill embeddings of the current model."""
        if self._emb_cache is None:
            prog = progress(self._levels()[2], self._init, self._floor)
            shift = (self._transfer * prog[None, :]) @ self._drift_dirs
            means = self._common + self._mu + self.params.embed_drift * shift
            self._emb_cache = means.astype(np.float32)
        return self._emb_cache

    def probe(self, skill: int, n: int) -> ProbeResult:
        """Per-example NLLs and embeddings of min(n, pool) examples of `skill`."""
        rng, prm = self._probe_rng, self.params
        diff = self._difficulty[skill]
        m = min(n, len(diff))
        idx = rng.choice(len(diff), m, replace=False)
        d = diff[idx]
        dev, train, _ = self._levels()
        level = (train if self._split == "train" else dev)[skill]
        nll = np.maximum(level * d + prm.noise * rng.standard_normal(m), _MIN_NLL)
        init = self._init[skill] * d
        r, prompt = self._rfrac[skill], self._prompt[skill] * d
        h = prm.embed_dim
        noise = rng.standard_normal((m, h), dtype=np.float32) * np.float32(
            prm.embed_noise / np.sqrt(h)
        )
        emb = self._embedding_means()[skill] + noise
        return ProbeResult(
            ids=self._example_ids(skill, idx),
            nll=nll,
            init_nll=init,
            seq_nll=r * nll + (1.0 - r) * prompt,
            init_seq_nll=r * init + (1.0 - r) * prompt,
            embeddings=emb,
        )

    def gradient_alignment(self, n: int, target: int | None = None) -> np.ndarray:
        """(N,) cosine of each skill's training gradient (n examples) with the dev gradient."""
        rng = self._probe_rng
        dev, train, _ = self._levels()
        scale = np.maximum(train - self._floor, 1e-6)
        g = self._grad_dirs * scale[:, None]
        noise_sd = self.params.grad_noise * scale[:, None] / np.sqrt(max(n, 1) * g.shape[1])
        g = g + noise_sd * rng.standard_normal(g.shape)
        w = np.maximum(dev - self._floor, 1e-6)
        if target is not None:
            w = np.where(np.arange(w.size) == target, w, 0.0)
        dev_g = w @ self._grad_dirs
        dev_g = dev_g + self.params.grad_noise * np.linalg.norm(dev_g) / np.sqrt(
            max(n, 1) * w.size * g.shape[1]
        ) * rng.standard_normal(dev_g.shape)
        return (g @ dev_g) / (np.linalg.norm(g, axis=1) * np.linalg.norm(dev_g))

    def uncertainty(self, n: int, samples: int) -> np.ndarray:
        """(N,) predictive entropy ~ dev loss, with the noise of n examples x samples passes."""
        dev = self.dev_loss()
        sd = self.params.noise / np.sqrt(max(n, 1) * max(samples, 1))
        return np.maximum(dev + sd * self._probe_rng.standard_normal(dev.shape), 0.0)

    # ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters, exposure and both generators' states (plain data)."""
        return {
            "skill_names": list(self.skill_names),
            "step": int(self.step),
            "consumed": self.consumed.tolist(),
            "tokens_seen": self.tokens_seen.tolist(),
            "exposure": self._exposure.tolist(),
            "train_rng": self._train_rng.bit_generator.state,
            "probe_rng": self._probe_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (refuses another skill set)."""
        if state.get("skill_names") != self.skill_names:
            raise MosgymError(
                f"sim checkpoint: saved for skills {state.get('skill_names')}, but this learner "
                f"has {self.skill_names}; resume with the run's original env config"
            )
        self.step = int(state["step"])
        self.consumed = np.asarray(state["consumed"], dtype=np.int64)
        self.tokens_seen = np.asarray(state["tokens_seen"], dtype=np.int64)
        self._exposure = np.asarray(state["exposure"], dtype=np.float64)
        self._cache = self._emb_cache = None
        self._train_rng.bit_generator.state = state["train_rng"]
        self._probe_rng.bit_generator.state = state["probe_rng"]
