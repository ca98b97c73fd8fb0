"""The simulator's numbers per seed are pinned: speed work must not change them unnoticed.

Fixed seeds and action sequences are rolled out on `mosgym/MoSSim-v0` (one env, through
gym.make), on `SimVecEnv`/`BatchSim`, and through `SimLearner.probe`; every observation, reward
and info field is hashed (sha256 of its bytes) and compared with tests/golden/sim_rollouts.json.

Bitwise equality is only promised on the platform that recorded the file (numpy's SIMD kernels
for exp/log and the BLAS build differ in the last bit between CPUs), so elsewhere each field's
float sum is compared to 1e-9 instead. A deliberate change of the simulated numbers rerecords
the file (``python -m tests.test_sim_speed_identity --record`` from the repository root) and
says why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import mosgym  # noqa: F401  (registers the envs)
from mosgym.config import load_env_config
from mosgym.sim.batch import SimVecEnv
from mosgym.sim.learner import SimLearner

ROOT = Path(__file__).resolve().parents[1]
# A frozen copy of the calibrated simulator the numbers were recorded on: recalibrating
# envs/sim-skills-tiny.yaml (paper/calibrate.sh) changes its parameters, not the code.
TINY_YAML = str(ROOT / "tests" / "golden" / "sim-skills-tiny.yaml")
GOLDEN = Path(__file__).resolve().parent / "golden" / "sim_rollouts.json"

# One env: every reward type, both action kinds, both sampling modes, EMA on and off, targets,
# the action floor and the held-out probe split.
ENV_CASES: dict[str, dict[str, Any]] = {
    "cossim": {},
    "cossim-target-noema": {"reward": {"type": "cossim", "target": "sort", "ema": False}},
    "diff": {"reward": {"type": "diff", "ema": True}},
    "diff-seq-target-probe": {
        "reward": {"type": "diff", "diff_scope": "sequence", "target": "count", "ema": False},
        "train": {"probe_source": "probe", "probe_size": 32},
    },
    "multidds-target": {"reward": {"type": "multidds", "target": "add"}},
    "multiuat": {"reward": {"type": "multiuat", "uat_samples": 3}},
    "train_loss-discrete": {"reward": {"type": "train_loss"}, "action": {"kind": "discrete"}},
    "learning_progress-per_batch": {
        "reward": {"type": "learning_progress", "ema": False},
        "train": {"sampling": "per_batch"},
    },
    "mean_progress-floor": {
        "reward": {"type": "mean_progress", "ema": False},
        "action": {"floor": 0.02},
    },
    "excess_loss": {"reward": {"type": "excess_loss", "ema": False}},
    "none": {"reward": {"type": "none", "ema": False}},
}
# Many runs at once: the reward paths with their own code in BatchSim, across an auto-reset.
BATCH_CASES: dict[str, dict[str, Any]] = {
    "cossim": {},
    "diff-seq-target": {
        "reward": {"type": "diff", "diff_scope": "sequence", "target": "count", "ema": False}
    },
    "multidds": {"reward": {"type": "multidds"}},
    "multiuat-discrete": {"reward": {"type": "multiuat"}, "action": {"kind": "discrete"}},
    "mean_progress-per_batch": {
        "reward": {"type": "mean_progress", "ema": False},
        "train": {"sampling": "per_batch"},
    },
}
BATCH_RUNS, BATCH_STEPS = 3, 27  # 20 env steps per episode: one auto-reset per run


def platform_tag() -> str:
    """What decides the last bit of numpy's float math here: CPU features, numpy, BLAS."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # pragma: no cover - numpy < 2
        feats = {}
    simd = ",".join(k for k in ("AVX512F", "AVX2", "FMA3", "NEON", "ASIMD") if feats.get(k))
    return f"{platform.machine()} numpy {np.__version__} simd {simd}"


class Recorder:
    """Collects arrays per field; hashes their bytes (with dtype and shape) and sums them."""

    def __init__(self) -> None:
        self.fields: dict[str, list[np.ndarray]] = {}

    def add(self, prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                self.add(f"{prefix}.{key}", value[key])
            return
        if isinstance(value, list | tuple) and value and isinstance(value[0], str):
            value = np.frombuffer("|".join(value).encode(), dtype=np.uint8)
        self.fields.setdefault(prefix, []).append(np.asarray(value))

    def digests(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for key, arrays in sorted(self.fields.items()):
            h = hashlib.sha256()
            total = 0.0
            for a in arrays:
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(np.ascontiguousarray(a).tobytes())
                if a.dtype.kind in "fiub":
                    total += float(np.sum(a.astype(np.float64)))
            out[key] = [h.hexdigest(), total]
        return out


def _env_actions(env: gym.Env, n: int) -> Iterator[Any]:
    rng = np.random.default_rng(7)
    k = env.action_space.n if isinstance(env.action_space, gym.spaces.Discrete) else None
    for _ in range(n):
        # beyond [-1, 1] on purpose: the env clips
        yield int(rng.integers(k)) if k else rng.uniform(-1.3, 1.3, env.action_space.shape)


def record_env(case: dict[str, Any]) -> Recorder:
    """Two episodes of MoSSim-v0 (seeded reset, then a seedless one)."""
    rec = Recorder()
    env = gym.make("mosgym/MoSSim-v0", config=TINY_YAML, **case)
    actions = _env_actions(env, 1000)
    for seed in (3, None):
        obs, info = env.reset(seed=seed)
        rec.add("reset.obs", obs)
        rec.add("reset.info", info)
        done = False
        while not done:
            obs, reward, term, trunc, info = env.step(next(actions))
            rec.add("obs", obs)
            rec.add("reward", np.float64(reward))
            rec.add("flags", np.array([term, trunc]))
            rec.add("info", info)
            done = term or trunc
    return rec


def record_batch(case: dict[str, Any]) -> Recorder:
    """SimVecEnv (and so BatchSim) over an auto-reset, with SB3's info conventions."""
    rec = Recorder()
    venv = SimVecEnv(TINY_YAML, n_envs=BATCH_RUNS, seed=0, **case)
    venv.seed(11)
    rec.add("reset.obs", venv.reset())
    rng = np.random.default_rng(5)
    for _ in range(BATCH_STEPS):
        if isinstance(venv.action_space, gym.spaces.Discrete):
            actions = rng.integers(venv.action_space.n, size=BATCH_RUNS)
        else:
            actions = rng.uniform(-1.3, 1.3, (BATCH_RUNS, venv.action_space.shape[0]))
        obs, reward, done, infos = venv.step(actions)
        rec.add("obs", obs)
        rec.add("reward", reward)
        rec.add("done", done)
        for i, info in enumerate(infos):
            if info:
                rec.add(f"info{i}", info)
    return rec


def record_probes() -> Recorder:
    """The per-example probe API of SimLearner (what a caller of `Learner.probe` sees)."""
    rec = Recorder()
    cfg = load_env_config(TINY_YAML)
    lr = SimLearner.from_config(cfg, seed=4)
    mix = np.array([0.3, 0.1, 0.2, 0.15, 0.05, 0.2])
    for _ in range(3):
        rec.add("train", vars(lr.train(mix, 50)))
        for skill in (0, 5, 5, 2):  # a repeated skill starts a new draw
            p = lr.probe(skill, 40)
            rec.add("probe", {k: v for k, v in vars(p).items()})
        rec.add("evaluate", vars(lr.evaluate()))
        rec.add("multidds", lr.gradient_alignment(16, None))
        rec.add("multiuat", lr.uncertainty(16, 2))
    return rec


def record_all() -> dict[str, dict[str, list[Any]]]:
    out = {f"env/{k}": record_env(v).digests() for k, v in ENV_CASES.items()}
    out |= {f"batch/{k}": record_batch(v).digests() for k, v in BATCH_CASES.items()}
    out["learner/probe"] = record_probes().digests()
    return out


def _golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())


def _check(name: str, got: dict[str, list[Any]]) -> None:
    golden = _golden()
    want = golden["cases"][name]
    assert sorted(got) == sorted(want), f"{name}: fields changed"
    exact = golden["platform"] == platform_tag()
    for key, (digest, total) in want.items():
        if exact:
            assert got[key][0] == digest, f"{name}: {key} differs from the recorded numbers"
        else:
            assert got[key][1] == pytest.approx(total, rel=1e-9, abs=1e-9), f"{name}: {key}"


@pytest.mark.parametrize("case", sorted(ENV_CASES))
def test_single_env_numbers_unchanged(case: str) -> None:
    _check(f"env/{case}", record_env(ENV_CASES[case]).digests())


@pytest.mark.parametrize("case", sorted(BATCH_CASES))
def test_batch_numbers_unchanged(case: str) -> None:
    _check(f"batch/{case}", record_batch(BATCH_CASES[case]).digests())


def test_probe_api_numbers_unchanged() -> None:
    _check("learner/probe", record_probes().digests())


def test_recorder_sees_a_one_ulp_change() -> None:
    """The check is bitwise: the smallest change to one value changes the digest."""
    a, b = Recorder(), Recorder()
    x = np.linspace(0.0, 1.0, 5)
    a.add("x", x)
    b.add("x", np.nextafter(x, 2.0 * (np.arange(5) == 3)))
    assert a.digests()["x"][0] != b.digests()["x"][0]


# ------------------------------------------------------- fast paths against their definitions
def numpy_is_libm_like() -> bool:
    """Whether numpy's float64 exp/log1p/expm1 are the C library's and its sums and dot
    products of 6 terms run left to right: then the Python-float paths are bitwise exact."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-5.0, 5.0, 2000)
    if not (
        np.array_equal(np.exp(x), [math.exp(v) for v in x])
        and np.array_equal(np.log1p(np.abs(x)), [math.log1p(abs(v)) for v in x])
        and np.array_equal(np.expm1(x), [math.expm1(v) for v in x])
    ):
        return False
    for a, b in rng.standard_normal((200, 2, 6)):
        seq_sum = seq_dot = 0.0
        for u, v in zip(a.tolist(), b.tolist(), strict=True):
            seq_sum += u
            seq_dot += u * v
        if seq_sum != a.sum() or seq_dot != a @ b:
            return False
    return True


EXACT = numpy_is_libm_like()


def assert_same(a: Any, b: Any, what: str) -> None:
    """Bitwise where the platform allows it (see numpy_is_libm_like), else to 1e-12."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    if EXACT or a.dtype.kind not in "fc":
        np.testing.assert_array_equal(a, b, err_msg=what)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300, err_msg=what)


@pytest.mark.parametrize("n", [6, 9])
def test_scalar_dynamics_match_the_numpy_model(n: int) -> None:
    """ScalarDynamics computes base_loss/overfit_gap/advance_exposure, all branches."""
    from mosgym.sim.dynamics import General, advance_exposure, base_loss, overfit_gap
    from mosgym.sim.scalar import ScalarDynamics

    rng = np.random.default_rng(n)
    for general_share, forget in [(0.0, 0.0), (0.4, 0.02)]:
        init, floor = rng.uniform(4, 6, n), rng.uniform(0, 1, n)
        rate, exponent = rng.uniform(1, 500, n), rng.uniform(0.2, 5, n)
        general = General(rng.uniform(0, general_share, n), 900.0, 2.0)
        transfer = np.eye(n) + rng.uniform(-0.6, 0.3, (n, n)) * (1 - np.eye(n))
        transfer[0, 1:] = -0.9  # skill 0 loses from the others: negative exposure
        sizes = rng.integers(50, 500, n)
        overfit, epochs0 = rng.uniform(0, 0.05, n), np.ones(n)
        forgets = rng.uniform(0, forget, n) * (rng.random(n) < 0.7)
        dyn = ScalarDynamics(
            init, floor, rate, exponent, general, sizes, overfit, epochs0, transfer, forgets
        )
        exposure = np.zeros(n)
        consumed = np.zeros(n, dtype=np.int64)
        negative = overfitted = False
        for step in range(40):
            counts = rng.multinomial(400, rng.dirichlet(np.full(n, 0.3)))
            if step % 7 == 0:
                counts = np.zeros(n, dtype=np.int64)
                counts[step % n] = 400  # one skill alone: share 1, no decay (k = 0)
            want = advance_exposure(exposure, counts, 25, transfer, forgets, rate)
            got, ints = dyn.advance(exposure.tolist(), counts, 25)
            assert ints == counts.tolist()
            assert_same(got, want, f"advance, step {step}")
            exposure, consumed = want, consumed + counts
            base = base_loss(
                exposure, init, floor, rate, exponent, general, consumed.sum(keepdims=True)
            )
            gap = overfit_gap(consumed, sizes, overfit, epochs0)
            dev, train, b = dyn.levels(exposure.tolist(), consumed.tolist(), int(consumed.sum()))
            assert_same(dev, base + gap, f"dev, step {step}")
            assert_same(train, base * np.exp(-gap / base), f"train, step {step}")
            assert_same(b, base, f"base, step {step}")
            negative |= bool((exposure < 0).any())
            overfitted |= bool((gap > 0).any())
        assert negative and overfitted  # every branch was taken


def _rollout_pairs(case: dict[str, Any], steps: int = 45) -> Iterator[tuple[Any, Any, str]]:
    """The fused MoSSim-v0 step and MixtureOfSkillsEnv's own step on the same learner."""
    from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv

    fused = gym.make("mosgym/MoSSim-v0", config=TINY_YAML, **case).unwrapped
    cfg = load_env_config(TINY_YAML, **case)
    cfg.learner = "sim"
    generic = MixtureOfSkillsEnv(cfg)
    assert type(fused).step is not MixtureOfSkillsEnv.step
    for env in (fused, generic):
        env.reset(seed=21)
    actions_a, actions_b = _env_actions(fused, steps), _env_actions(generic, steps)
    for k, (a, b) in enumerate(zip(actions_a, actions_b, strict=True)):
        out_a, out_b = fused.step(a), generic.step(b)
        yield out_a, out_b, f"step {k}"
        if out_a[2]:
            fused.reset()
            generic.reset()


@pytest.mark.parametrize("case", sorted(ENV_CASES))
def test_fused_step_returns_what_the_generic_step_returns(case: str) -> None:
    for (obs_a, r_a, term_a, trunc_a, info_a), (
        obs_b,
        r_b,
        term_b,
        trunc_b,
        info_b,
    ), at in _rollout_pairs(ENV_CASES[case]):
        assert_same(obs_a, obs_b, f"{case} obs, {at}")
        assert_same(r_a, r_b, f"{case} reward, {at}")
        assert (term_a, trunc_a) == (term_b, trunc_b)
        assert sorted(info_a) == sorted(info_b)
        for key in info_b:
            if key == "final_eval":
                for k in info_b[key]:
                    assert_same(info_a[key][k], info_b[key][k], f"{case} {key}.{k}, {at}")
            elif key == "skill_names":
                assert info_a[key] == info_b[key]
            else:
                assert type(info_a[key]) is type(info_b[key]), key
                assert_same(info_a[key], info_b[key], f"{case} info {key}, {at}")


def test_fused_env_checkpoint_resumes_exactly() -> None:
    a = gym.make("mosgym/MoSSim-v0", config=TINY_YAML).unwrapped
    a.reset(seed=5)
    actions = list(_env_actions(a, 12))
    for act in actions[:7]:
        a.step(act)
    b = gym.make("mosgym/MoSSim-v0", config=TINY_YAML).unwrapped
    b.reset(seed=99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for act in actions[7:]:
        (oa, ra, *_), (ob, rb, *_) = a.step(act), b.step(act)
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.test_sim_speed_identity --record")
    GOLDEN.parent.mkdir(exist_ok=True)
    data = {"platform": platform_tag(), "cases": record_all()}
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({len(data['cases'])} cases, {data['platform']})")
