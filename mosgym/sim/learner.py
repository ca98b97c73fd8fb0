"""SimLearner: a learning-dynamics model of fine-tuning, behind the same Learner protocol.

`mosgym/MoSSim-v0` is the MixtureOfSkills env with this learner, so every agent and every reward
runs unchanged on it at thousands of env steps per second. Nothing is loaded: no data, no model.

## The model (state: effective exposure E (N,), examples consumed c (N,))
- Loss with diminishing returns, a power law with a floor:
  ``base_i = floor_i + (init_i - floor_i) * (1 + E_i / rate_i) ** -exponent_i``.
  Power laws, not exponentials: fine-tuning loss against data follows a power law with an
  irreducible term (Hernandez et al. 2021, "Scaling laws for transfer"; Kaplan et al. 2020),
  while an exponential flattens far too early and cannot fit a long tail. The ``1 +`` keeps the
  loss finite at E = 0 (base = init). For E < 0 (net negative transfer) the factor continues as
  ``2 - exp(exponent * E / rate)``, with the same value and slope at 0, and never passes 2:
  interference at most doubles the learnable loss (E is also clipped at -rate).
- A general part: a share ``general_share_i`` of the learnable loss is skill-agnostic (the
  response format, the output alphabet: what a byte-level model learns from any skill first)
  and falls with G, the examples of all skills, by its own power law:
  ``f_i = s_i * (1 + G / g_rate) ** -g_exp + (1 - s_i) * (1 + E_i / rate_i) ** -exponent_i``,
  ``base_i = floor_i + (init_i - floor_i) * f_i``. Real curves of the embedded default show it:
  every skill's loss falls from 5.5 to 1-3 nats in the first 200 steps whatever the mixture,
  then each moves with its own data. Without it the calibration fit on those runs was poor.
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
  come from the training split) and the dev loss for 'probe'. The randomness of one probe of
  every skill is drawn at once (`draw_probes`) and handed out a skill at a time; no two probes
  share noise. The rewards (COSSIM, DIFF) instead read one probe of every skill summarised in a
  few generator calls (mosgym.sim.probes): the same law, other random numbers.
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

## Speed
One run steps its N skills in Python floats (mosgym.sim.scalar: for a few skills a numpy
call costs more than its arithmetic), and MoSSim-v0's env (mosgym.envs.sim_env) fuses its step
around them; bench/sim.py measures both against CartPole-v1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mosgym import timing
from mosgym.config import EnvConfig, SkillConfig, TrainConfig
from mosgym.errors import MosgymError
from mosgym.learner.base import EvalResult, TrainStats
from mosgym.sim.dynamics import General, ProbeDraw, gradient_directions, unit_rows
from mosgym.sim.params import SimParams, parse_sim_params
from mosgym.sim.probes import SimProbes
from mosgym.sim.scalar import ScalarDynamics

__all__ = ["SimLearner", "SimParams", "parse_sim_params"]


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


class SimLearner(SimProbes):
    """A Learner whose fine-tuning is the learning-dynamics model of this module's docstring.

    One run's state is kept as Python lists and stepped by `ScalarDynamics` (mosgym.envs.
    sim_scalar: the formulas of mosgym.sim.dynamics, cheaper for a few skills); the
    `consumed` and `tokens_seen` arrays of the Learner protocol are copies made on access.
    """

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
        self._general = General(
            np.asarray(p.general_share, float), float(p.general_rate), float(p.general_exponent)
        )
        self._transfer = np.asarray(p.transfer, float)
        self._overfit = np.asarray(p.overfit, float)
        self._ofe = np.asarray(p.overfit_epochs, float)
        self._forget = np.asarray(p.forget, float)
        self._tpe = np.asarray(p.tokens_per_example, np.int64)
        self._tpe_list = self._tpe.tolist()
        self._rfrac = np.asarray(p.response_frac, float)
        self._prompt = np.asarray(p.prompt_loss, float)
        mid = [np.nan if m is None else m for m in p.accuracy_mid]  # type: ignore[union-attr]
        self._acc_mid = np.asarray(mid, float)
        use_probe_split = train.probe_source == "probe"
        pools = probe_sizes if use_probe_split and probe_sizes else self.train_sizes.tolist()
        self._split = "probe" if use_probe_split else "train"
        self._build_geometry(n, [int(x) for x in pools], data_seed)
        self._setup_probes()
        self._dyn = ScalarDynamics(
            self._init, self._floor, self._rate, self._exp, self._general, self.train_sizes,
            self._overfit, self._ofe, self._transfer, self._forget,
        )  # fmt: skip
        self._fracs: dict[int, np.ndarray] = {}
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
        self._set_state([0.0] * n, [0] * n)
        self._tokens_list = [0] * n
        self._probe_draw: ProbeDraw | None = None
        self._draw_state: dict[str, Any] | None = None  # probe generator before the draw
        train_ss, probe_ss = np.random.SeedSequence([int(seed), 0x5117]).spawn(2)
        self._train_rng = np.random.default_rng(train_ss)
        self._probe_rng = np.random.default_rng(probe_ss)

    def _set_state(self, exposure: list[float], consumed: list[int]) -> None:
        """Exposure and consumed as lists (consumed's total too); drops every cached level."""
        self._exposure_list, self._consumed_list = exposure, consumed
        self._total = sum(consumed)
        self._lists: tuple[list[float], list[float], list[float]] | None = None
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._forget_probe_state()

    @property
    def _exposure(self) -> np.ndarray:
        """(N,) effective exposure E (a copy)."""
        return np.array(self._exposure_list)

    @property
    def consumed(self) -> np.ndarray:
        """(N,) int64 training examples drawn per skill since reset (a copy)."""
        return np.array(self._consumed_list, dtype=np.int64)

    @property
    def tokens_seen(self) -> np.ndarray:
        """(N,) int64 trained tokens per skill since reset (a copy)."""
        return np.array(self._tokens_list, dtype=np.int64)

    def _level_lists(self) -> tuple[list[float], list[float], list[float]]:
        """(dev loss, training-set loss, base loss) now, as lists; cached until the state moves."""
        if self._lists is None:
            self._lists = self._dyn.levels(self._exposure_list, self._consumed_list, self._total)
        return self._lists

    def _levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_level_lists` as (N,) arrays."""
        if self._cache is None:
            dev, train, base = self._level_lists()
            self._cache = (np.array(dev), np.array(train), np.array(base))
        return self._cache

    def _draw(self, mixture: np.ndarray, n_steps: int) -> np.ndarray:
        b = self.train_cfg.batch_size
        if self.train_cfg.sampling == "per_batch":
            return self._train_rng.multinomial(n_steps, mixture) * b
        return self._train_rng.multinomial(n_steps * b, mixture)

    @timing.timed(timing.TRAIN)
    def train(self, mixture: np.ndarray, n_steps: int) -> TrainStats:
        """Advance `n_steps` optimizer steps drawing from `mixture`; losses before each update."""
        p = np.asarray(mixture, dtype=np.float64)
        if p.shape != self._init.shape or not (p.min() >= 0 and abs(p.sum() - 1.0) < 1e-6):
            raise ValueError(f"mixture must be a distribution over {p.size} skills, got {p}")
        counts = self._draw(p, n_steps)
        _, loss_sum, step_losses = self._learn(counts, n_steps)
        return TrainStats(
            examples=counts,  # int64 from the generator, not aliased by the learner's state
            tokens=counts * self._tpe,
            loss_sum=np.array(loss_sum),
            step_losses=step_losses,
        )

    def _learn(self, counts: np.ndarray, n_steps: int) -> tuple[list[int], list[float], np.ndarray]:
        """Train on `counts` (N,) examples over `n_steps` steps: (counts and loss sums (N,) as
        lists, step losses (n_steps,)), both losses clipped at 0."""
        n, b = len(self.skill_names), self.train_cfg.batch_size
        train0 = self._level_lists()[1]
        exposure, c = self._dyn.advance(self._exposure_list, counts, n_steps)
        self._set_state(exposure, [a + k for a, k in zip(self._consumed_list, c, strict=True)])
        self._tokens_list = [
            t + k * m for t, k, m in zip(self._tokens_list, c, self._tpe_list, strict=True)
        ]
        self.step += n_steps
        train1 = self._level_lists()[1]
        spread, noise = self.params.example_spread, self.params.noise
        # One call for both kinds of noise: the same numbers as two calls, in this order.
        z = self._train_rng.standard_normal(n + n_steps)
        eps = z[:n].tolist()
        # Both sampling modes draw exactly n_steps * b examples; the sums of products below
        # run left to right, as numpy's dot products of a few terms.
        total = n_steps * b
        loss_sum: list[float] = []
        level0 = change = spread_sum = 0.0
        sqrt = math.sqrt
        for t0, t1, k, e in zip(train0, train1, c, eps, strict=True):
            # Within the interval the training loss moves (about) linearly from t0 to t1.
            mid = (t0 + t1) / 2.0
            sd = mid * spread + noise
            x = mid * k + sd * sqrt(k) * e
            loss_sum.append(0.0 if x < 0.0 else x)
            share = k / total
            level0 += share * t0
            change += share * (t1 - t0)
            spread_sum += share * sd
        # In place, the values of: frac * change + level0 + spread_sum / sqrt(b) * z[n:]
        step_losses = self._frac(n_steps) * change
        step_losses += level0
        noise_part = z[n:]
        noise_part *= spread_sum / math.sqrt(b)
        step_losses += noise_part
        return c, loss_sum, np.maximum(step_losses, 0.0, out=step_losses)

    def _frac(self, n_steps: int) -> np.ndarray:
        """(n_steps,) midpoints of the steps as fractions of the interval (cached)."""
        frac = self._fracs.get(n_steps)
        if frac is None:
            frac = self._fracs[n_steps] = (np.arange(n_steps) + 0.5) / max(n_steps, 1)
        return frac

    @timing.timed(timing.EVAL_DEV)
    def dev_loss(self) -> np.ndarray:
        """(N,) dev loss of the current model."""
        return np.array(self._level_lists()[0])

    def evaluate(self, generate: bool = True) -> EvalResult:
        """Dev loss and the logistic loss -> accuracy map (NaN without `generate` or a mid)."""
        dev = self.dev_loss()
        if not generate:
            return EvalResult(dev_loss=dev, accuracy=np.full(dev.shape, np.nan))
        acc = 1.0 / (1.0 + np.exp(self.params.accuracy_slope * (dev - self._acc_mid)))
        return EvalResult(dev_loss=dev, accuracy=acc)

    @timing.timed(timing.PROBE)
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

    @timing.timed(timing.PROBE)
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
            "consumed": list(self._consumed_list),
            "tokens_seen": list(self._tokens_list),
            "exposure": list(self._exposure_list),
            "train_rng": self._train_rng.bit_generator.state,
            "probe_rng": self._probe_rng.bit_generator.state,
            # A batched probe draw may be half handed out: saved as the generator state that
            # redraws it, so a restored learner continues exactly.
            "probe_draw": None
            if self._probe_draw is None
            else {
                "rng": self._draw_state,
                "n": self._probe_draw.n,
                "taken": self._probe_draw.taken.tolist(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (refuses another skill set)."""
        if state.get("skill_names") != self.skill_names:
            raise MosgymError(
                f"sim checkpoint: saved for skills {state.get('skill_names')}, but this learner "
                f"has {self.skill_names}; resume with the run's original env config"
            )
        self.step = int(state["step"])
        exposure = np.asarray(state["exposure"], dtype=np.float64).tolist()
        self._set_state(exposure, np.asarray(state["consumed"], dtype=np.int64).tolist())
        self._tokens_list = np.asarray(state["tokens_seen"], dtype=np.int64).tolist()
        self._train_rng.bit_generator.state = state["train_rng"]
        self._probe_draw = None
        draw = state.get("probe_draw")
        if draw is not None:
            self._probe_rng.bit_generator.state = draw["rng"]
            self._new_draw(int(draw["n"])).taken[:] = draw["taken"]
        self._probe_rng.bit_generator.state = state["probe_rng"]
