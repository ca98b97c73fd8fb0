"""The simulated learner's probes: per example (`Learner.probe`) and batched over skills.

A mixin of `SimLearner` (mosgym.sim.learner, whose docstring states the probe model). Two routes:
- `probe(skill, n)`: per-example NLLs and embeddings, the Learner API. The randomness of one
  probe of every skill is drawn at once (`draw_probes`) and handed out a skill at a time.
- `probe_embedding_means(n)` and `probe_nll_rows(n)`: one probe of every skill summarised in a
  few generator calls, what COSSIM and DIFF read (mosgym.rewards uses them when a learner has
  them). The same distributions as `probe`, not its numbers: the generator is used otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mosgym import timing
from mosgym.learner.base import ProbeResult
from mosgym.sim.dynamics import ProbeDraw, draw_probes, progress, sample_distinct

_MIN_NLL = 1e-4  # per-example NLL is a mean of -log p over tokens: never below 0


class SimProbes:
    """Probe methods over the state of a `SimLearner` (attributes set by it)."""

    # Set by SimLearner (listed for type checkers).
    skill_names: list[str]
    params: Any
    _probe_rng: np.random.Generator
    _split: str
    _difficulty: list[np.ndarray]
    _diff_flat: np.ndarray
    _pools: list[int]
    _pools_arr: np.ndarray
    _pool_start: np.ndarray
    _init: np.ndarray
    _floor: np.ndarray
    _transfer: np.ndarray
    _rfrac: np.ndarray
    _prompt: np.ndarray
    _common: np.ndarray
    _mu: np.ndarray
    _drift_dirs: np.ndarray
    _emb_scale: np.float32
    _ids: list[np.ndarray | None]
    _probe_draw: ProbeDraw | None
    _draw_state: dict[str, Any] | None
    _probe_vals: dict[str, np.ndarray] | None
    _emb_cache: np.ndarray | None
    _emb_mean: np.ndarray | None

    def _levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...  # pragma: no cover

    def _level_lists(self) -> tuple[list[float], list[float], list[float]]: ...  # pragma: no cover

    def _setup_probes(self) -> None:
        """Constants of both routes (after the geometry is built)."""
        self._pools = [len(d) for d in self._difficulty]
        self._pools_arr = np.array(self._pools, dtype=np.int64)
        self._pool_start = np.cumsum([0, *self._pools[:-1]])[:, None]
        self._diff_flat = np.concatenate(self._difficulty)
        self._emb_scale = np.float32(self.params.embed_noise / np.sqrt(self.params.embed_dim))
        self._ids = [None] * len(self.skill_names)
        self._emb_scales: dict[int, np.ndarray] = {}
        # The noise-free means of the batched route, common + mu_i + drift * sum_j T_ij p_j v_j,
        # as one product: [p, 1] @ [[T_ij v_j for i] for j; common + mu] (rows of N * H).
        n, h = self._mu.shape
        shift = self.params.embed_drift * self._transfer[:, :, None] * self._drift_dirs[None]
        self._emb_basis = np.vstack(
            [shift.transpose(1, 0, 2).reshape(n, n * h), (self._common + self._mu).reshape(1, -1)]
        )
        span = (self._init - self._floor).tolist()
        self._prog_consts = list(zip(self._init.tolist(), span, strict=True))

    def _forget_probe_state(self) -> None:
        """The model moved: every cached probe number is stale."""
        self._emb_cache = self._probe_vals = self._emb_mean = None

    # ------------------------------------------------------------------ per example (the API)
    def _example_ids(self, skill: int, idx: np.ndarray) -> list[str]:
        ids = self._ids[skill]
        if ids is None:
            name, m = self.skill_names[skill], len(self._difficulty[skill])
            ids = np.array([f"{name}/{self._split}/{k}" for k in range(m)])
            self._ids[skill] = ids
        return ids[idx].tolist()

    def _embedding_means(self) -> np.ndarray:
        """(N, H) float64 noise-free skill embeddings of the current model."""
        if self._emb_cache is None:
            prog = progress(self._levels()[2], self._init, self._floor)
            shift = (self._transfer * prog[None, :]) @ self._drift_dirs
            self._emb_cache = self._common + self._mu + self.params.embed_drift * shift
        return self._emb_cache

    def _new_draw(self, n: int) -> ProbeDraw:
        self._draw_state = self._probe_rng.bit_generator.state
        self._probe_draw = draw_probes(self._probe_rng, self._pools, n, self.params.embed_dim)
        self._probe_vals = None
        return self._probe_draw

    def _probe_values(self, draw: ProbeDraw) -> dict[str, np.ndarray]:
        """Every row of `draw` turned into probe numbers at the current state, (N, W[, H])."""
        if self._probe_vals is None:
            dev, train, _ = self._levels()
            level = (train if self._split == "train" else dev)[:, None]
            d = self._diff_flat[draw.idx + self._pool_start]
            nll = np.maximum(level * d + self.params.noise * draw.eps, _MIN_NLL)
            init = self._init[:, None] * d
            r = self._rfrac[:, None]
            prompt = (1.0 - r) * self._prompt[:, None] * d
            means = self._embedding_means().astype(np.float32)[:, None, :]
            self._probe_vals = {
                "nll": nll,
                "init_nll": init,
                "seq_nll": r * nll + prompt,
                "init_seq_nll": r * init + prompt,
                "embeddings": means + draw.emb * self._emb_scale,
            }
        return self._probe_vals

    @timing.timed(timing.PROBE)
    def probe(self, skill: int, n: int, with_initial: bool = True) -> ProbeResult:
        """Per-example NLLs and embeddings of min(n, pool) examples of `skill`.

        The simulated initial NLLs cost nothing, so they are returned even when not asked for.

        Each call uses an unused row of the current batched draw (a new draw when none is
        left for this skill or `n` changed), so no two probes share noise.
        """
        draw = self._probe_draw
        if draw is None or draw.n != n or draw.taken[skill]:
            draw = self._new_draw(n)
        draw.taken[skill] = True
        vals, m = self._probe_values(draw), draw.size[skill]
        return ProbeResult(
            ids=self._example_ids(skill, draw.idx[skill, :m]),
            nll=vals["nll"][skill, :m],
            init_nll=vals["init_nll"][skill, :m],
            seq_nll=vals["seq_nll"][skill, :m],
            init_seq_nll=vals["init_seq_nll"][skill, :m],
            embeddings=vals["embeddings"][skill, :m],
        )

    # ------------------------------------------------------------- every skill at once (fast)
    @timing.timed(timing.PROBE)
    def probe_embedding_means(self, n: int) -> np.ndarray:
        """(N, H) float64 dataset embeddings: each skill's mean embedding over a probe of
        min(n, pool) examples.

        The mean of m per-example embeddings ``mean + scale * eps`` (eps iid standard normal)
        is ``mean + scale / sqrt(m) * eps'``: H normals per skill instead of m * H.
        """
        scale = self._emb_scales.get(n)
        if scale is None:
            sd = self.params.embed_noise / np.sqrt(self.params.embed_dim)
            sizes = np.minimum(n, self._pools_arr)
            scale = self._emb_scales[n] = (sd / np.sqrt(sizes))[:, None]
        if self._emb_mean is None:  # the noise-free means, the model of `_embedding_means`
            base = self._level_lists()[2]
            prog = [
                min(max((i - b) / span, -1.0), 1.0)
                for (i, span), b in zip(self._prog_consts, base, strict=True)
            ]
            prog.append(1.0)
            self._emb_mean = np.dot(prog, self._emb_basis).reshape(self._mu.shape)
        z = self._probe_rng.standard_normal(self._mu.shape)
        z *= scale
        z += self._emb_mean
        return z

    @timing.timed(timing.PROBE)
    def probe_nll_rows(self, n: int, sequence: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(N, W) NLLs under the current and the initial model of a probe of min(n, pool)
        distinct examples per skill, NaN where a row has no example; `sequence`: NLLs over
        the whole sequence (prompt included) instead of the response."""
        sizes = np.minimum(n, self._pools_arr)
        idx, keep = sample_distinct(self._probe_rng, self._pools_arr, sizes)
        d = self._diff_flat[idx + self._pool_start]
        dev, train, _ = self._levels()
        level = (train if self._split == "train" else dev)[:, None]
        eps = self._probe_rng.standard_normal(idx.shape)
        nll = np.maximum(level * d + self.params.noise * eps, _MIN_NLL)
        init = self._init[:, None] * d
        if sequence:
            r = self._rfrac[:, None]
            prompt = (1.0 - r) * self._prompt[:, None] * d
            nll, init = r * nll + prompt, r * init + prompt
        return np.where(keep, nll, np.nan), np.where(keep, init, np.nan)
