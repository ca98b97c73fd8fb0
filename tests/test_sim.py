"""SimLearner: learning dynamics, probes, determinism, checkpoints and config validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import mosgym  # noqa: F401  (registers the envs)
from mosgym.config import EnvConfig, RewardConfig, TrainConfig, load_env_config
from mosgym.errors import MosgymError
from mosgym.learner.base import Learner
from mosgym.rewards import RewardComputer
from mosgym.sim.dynamics import advance_exposure, base_loss, overfit_gap
from mosgym.sim.learner import SimLearner, SimParams, parse_sim_params

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = ROOT / "envs" / "sim-skills-tiny.yaml"


def make_params(n: int = 3, **kw: object) -> SimParams:
    base: dict[str, object] = {
        "init_loss": [4.0] * n,
        "floor_loss": [1.0] * n,
        "rate": [100.0] * n,
        "exponent": [0.5] * n,
        "transfer": np.eye(n).tolist(),
    }
    base.update(kw)
    return parse_sim_params(base, n)


def make_learner(params: SimParams | None = None, sizes=(1000, 1000, 1000), seed: int = 0, **tr):
    params = params or make_params(len(sizes))
    train = TrainConfig(batch_size=tr.pop("batch_size", 8), **tr)
    names = [f"s{i}" for i in range(len(sizes))]
    return SimLearner(names, list(sizes), params, train, seed=seed)


ONLY0 = np.array([1.0, 0.0, 0.0])
UNIFORM = np.full(3, 1 / 3)


# ---------------------------------------------------------------------------------- dynamics
def test_base_loss_hand_values() -> None:
    # floor + (init - floor) * (1 + E/rate)^-a: 1 + 3 * (1 + 300/100)^-0.5 = 1 + 3/2 = 2.5
    one = np.array([1.0])
    out = base_loss(np.array([300.0]), 4 * one, one, 100 * one, 0.5 * one)
    assert out[0] == pytest.approx(2.5)
    assert base_loss(np.zeros(1), 4 * one, one, 100 * one, 0.5 * one)[0] == pytest.approx(4.0)
    # negative exposure continues as 2 - exp(a * E/rate): 1 + 3 * (2 - exp(-0.25)), bounded by
    # 1 + 3 * 2 however negative (E is clipped at -rate anyway) and however steep
    neg = base_loss(np.array([-50.0]), 4 * one, one, 100 * one, 0.5 * one)
    assert neg[0] == pytest.approx(1 + 3 * (2 - np.exp(-0.25)))
    steep = base_loss(np.array([-100.0]), 4 * one, one, 100 * one, 5.0 * one)
    assert 1 + 3 * 1.99 < steep[0] < 1 + 3 * 2


def test_overfit_gap_hand_values() -> None:
    gap = overfit_gap(np.array([50.0, 500.0]), np.array([100, 100]), np.full(2, 0.1), np.ones(2))
    np.testing.assert_allclose(gap, [0.0, 0.4])  # 5 epochs: 0.1 * (5 - 1)


def test_advance_exposure_matches_fine_euler() -> None:
    """The closed form equals many tiny steps of dE = g/n - k E (constant shares)."""
    transfer = np.array([[1.0, 0.3], [-0.2, 1.0]])
    forget, rate = np.array([0.01, 0.02]), np.full(2, 1e9)
    e0, counts, n = np.array([50.0, 20.0]), np.array([300.0, 100.0]), 40
    closed = advance_exposure(e0, counts, n, transfer, forget, rate)
    e, m = e0.copy(), 40_000
    gain, k = transfer @ counts, forget * (1 - counts / counts.sum())
    for _ in range(m):
        e = e + (gain / n - k * e) * (n / m)
    np.testing.assert_allclose(closed, e, rtol=1e-3)
    # no forgetting: plain sum
    flat = advance_exposure(e0, counts, n, transfer, np.zeros(2), rate)
    np.testing.assert_allclose(flat, e0 + transfer @ counts)


def test_dev_loss_falls_with_exposure_and_train_stats() -> None:
    lr = make_learner()
    dev0 = lr.dev_loss()
    np.testing.assert_allclose(dev0, 4.0)
    losses = []
    for _ in range(10):
        stats = lr.train(UNIFORM, 10)
        assert stats.examples.sum() == 10 * 8 and stats.step_losses.shape == (10,)
        np.testing.assert_array_equal(stats.tokens, stats.examples * 16)
        losses.append(lr.dev_loss())
    losses = np.array(losses)
    assert np.all(np.diff(losses, axis=0) < 0)
    # identity transfer, no forgetting: E = consumed, so dev = the power law of consumed
    np.testing.assert_allclose(losses[-1], 1 + 3 * (1 + lr.consumed / 100) ** -0.5)
    np.testing.assert_array_equal(lr.consumed, lr.tokens_seen / 16)
    assert lr.step == 100


def test_per_batch_sampling_draws_whole_batches() -> None:
    lr = make_learner(sampling="per_batch")
    stats = lr.train(UNIFORM, 20)
    assert np.all(stats.examples % 8 == 0) and stats.examples.sum() == 160


def test_tiny_skill_overfits_when_repeated() -> None:
    params = make_params(overfit=[0.05] * 3, overfit_epochs=[2.0] * 3)
    lr = make_learner(params, sizes=(16, 1000, 1000))
    dev, train_loss = [], []
    for _ in range(40):
        stats = lr.train(ONLY0, 10)  # 80 examples = 5 epochs of skill 0 per call
        dev.append(lr.dev_loss()[0])
        train_loss.append(stats.mean_loss[0])
    best = int(np.argmin(dev))
    assert 0 < best < len(dev) - 1, "dev loss must fall first, then turn back up"
    assert dev[-1] > dev[best] + 1.0
    assert train_loss[-1] < train_loss[best]  # memorisation: training loss keeps falling
    epochs = lr.consumed[0] / 16
    expected = 1 + 3 * (1 + lr.consumed[0] / 100) ** -0.5 + 0.05 * (epochs - 2)
    assert dev[-1] == pytest.approx(expected)


def test_forgetting_when_not_sampled() -> None:
    params = make_params(forget=[0.01] * 3)
    lr = make_learner(params)
    lr.train(np.array([0.5, 0.5, 0.0]), 50)
    after, e1 = lr.dev_loss(), lr._exposure.copy()
    lr.train(np.array([0.0, 1.0, 0.0]), 200)
    later = lr.dev_loss()
    assert later[0] > after[0] + 0.3  # skill 0 drifts back towards its initial loss
    assert later[0] < 4.0
    assert later[1] < after[1]  # the trained skill keeps improving
    # trained alone (share 1) a skill forgets nothing; the other decays at rate 0.01 per step
    assert lr._exposure[1] == pytest.approx(e1[1] + 200 * 8)
    assert lr._exposure[0] == pytest.approx(e1[0] * np.exp(-0.01 * 200))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_transfer_sign(sign: float) -> None:
    transfer = np.eye(3)
    transfer[1, 0] = 0.5 * sign
    lr = make_learner(make_params(transfer=transfer.tolist()))
    lr.train(ONLY0, 20)
    dev = lr.dev_loss()
    assert np.sign(4.0 - dev[1]) == sign
    assert dev[2] == pytest.approx(4.0)  # no transfer to skill 2
    # exposure credited to skill 1 = 0.5 * sign * examples of skill 0
    assert lr._exposure[1] == pytest.approx(max(0.5 * sign * 160, -100))


# ------------------------------------------------------------------ determinism and state
def _trajectory(lr: SimLearner, rng_seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(rng_seed)
    out = []
    for _ in range(5):
        p = rng.dirichlet(np.ones(3))
        s = lr.train(p, 7)
        pr = lr.probe(1, 9)
        out += [s.examples, s.loss_sum, s.step_losses, lr.dev_loss(), pr.nll, pr.embeddings]
        out += [lr.gradient_alignment(8), lr.uncertainty(8, 2), np.array(pr.ids)]
    return out


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_deterministic_per_seed_and_reset_restores() -> None:
    a = _trajectory(make_learner(seed=3))
    lr = make_learner(seed=3)
    _assert_same(a, _trajectory(lr))
    lr.reset(3)
    assert lr.step == 0 and lr.consumed.sum() == 0 and lr.tokens_seen.sum() == 0
    _assert_same(a, _trajectory(lr))
    other = _trajectory(make_learner(seed=4))
    assert not np.array_equal(a[0], other[0])


def test_state_dict_round_trip_through_json() -> None:
    lr = make_learner(make_params(forget=[0.01] * 3), seed=5)
    _trajectory(lr)
    state = json.loads(json.dumps(lr.state_dict()))
    expected = _trajectory(lr, rng_seed=2)
    other = make_learner(make_params(forget=[0.01] * 3), seed=99)
    other.load_state_dict(state)
    assert other.step == state["step"]
    _assert_same(expected, _trajectory(other, rng_seed=2))
    bad = copy.deepcopy(state)
    bad["skill_names"] = ["x", "y", "z"]
    with pytest.raises(MosgymError, match="skills"):
        other.load_state_dict(bad)


def test_implements_learner_protocol() -> None:
    assert isinstance(make_learner(), Learner)


# ---------------------------------------------------------------------------------- probes
def test_probe_shapes_and_values() -> None:
    params = make_params(embed_dim=5, noise=0.0, response_frac=[0.5] * 3, prompt_loss=[2.0] * 3)
    lr = make_learner(params, sizes=(1000, 10, 1000))
    p = lr.probe(0, 7)
    assert p.nll.shape == p.init_nll.shape == p.seq_nll.shape == (7,)
    assert p.embeddings.shape == (7, 5) and p.embeddings.dtype == np.float32
    assert len(p.ids) == len(set(p.ids)) == 7 and p.ids[0].startswith("s0/train/")
    np.testing.assert_allclose(p.nll, p.init_nll)  # untrained, no noise: same NLL
    # sequence NLL = r * response + (1 - r) * prompt, prompt = 2 * difficulty = init / 2
    np.testing.assert_allclose(p.seq_nll, 0.5 * p.nll + 0.5 * p.init_nll / 2)
    assert len(lr.probe(1, 64).nll) == 10  # a pool smaller than n gives the whole pool
    lr.train(ONLY0, 10)
    p2 = lr.probe(0, 7)
    # DIFF-style ratio equals the loss ratio exactly without noise
    np.testing.assert_allclose(p2.nll / p2.init_nll, lr.dev_loss()[0] / 4.0)


def test_probe_noise_shrinks_with_n() -> None:
    lr = make_learner(make_params(noise=0.3, example_spread=0.3))
    lr.train(UNIFORM, 10)

    def spread(n: int) -> tuple[float, float]:
        m = [lr.probe(0, n) for _ in range(300)]
        nll = np.std([x.nll.mean() for x in m])
        emb = np.std([x.embeddings.mean(axis=0)[0] for x in m])
        return float(nll), float(emb)

    small, big = spread(16), spread(256)
    assert small[0] / big[0] == pytest.approx(4.0, rel=0.25)  # sqrt(256 / 16)
    assert small[1] / big[1] == pytest.approx(4.0, rel=0.25)


def test_embeddings_move_with_training() -> None:
    lr = make_learner(make_params(embed_noise=0.0))
    before = lr.probe(0, 4).embeddings[0]
    lr.train(ONLY0, 20)
    after = lr.probe(0, 4).embeddings[0]
    assert np.linalg.norm(after - before) > 0.1
    untouched = lr.probe(2, 4).embeddings[0]  # identity transfer: skill 2 did not move
    np.testing.assert_allclose(
        untouched, make_learner(make_params(embed_noise=0.0)).probe(2, 4).embeddings[0]
    )


def test_evaluate_accuracy_is_logistic() -> None:
    params = make_params(accuracy_mid=[4.0, None, 2.0], accuracy_slope=2.0)
    ev = make_learner(params).evaluate()
    np.testing.assert_allclose(ev.dev_loss, 4.0)
    assert ev.accuracy[0] == pytest.approx(0.5)
    assert np.isnan(ev.accuracy[1])
    assert ev.accuracy[2] == pytest.approx(1 / (1 + np.exp(2.0 * 2.0)))
    assert np.all(np.isnan(make_learner(params).evaluate(generate=False).accuracy))


def test_gradient_alignment_and_uncertainty() -> None:
    transfer = [[1.0, 0.8, -0.5], [0.8, 1.0, -0.5], [-0.5, -0.5, 1.0]]
    lr = make_learner(make_params(transfer=transfer, grad_noise=0.0, noise=0.0))
    g = lr.gradient_alignment(64, target=0)
    assert g.shape == (3,) and g[0] == pytest.approx(1.0)
    assert g[1] > 0.5 and g[2] < 0
    np.testing.assert_allclose(lr.uncertainty(8, 1), lr.dev_loss())


# ------------------------------------------------------------------------------ validation
def _sim_yaml(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(TINY_YAML.read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d["sim"]["transfer"].pop(), "transfer.*6 x 6"),
        (lambda d: d["sim"]["transfer"][2].append(0.1), "transfer.*6 x 6"),
        (lambda d: d["sim"].pop("rate"), "missing required key 'rate'"),
        (lambda d: d["sim"].update(rates=[1] * 6), "unknown key 'rates'"),
        (lambda d: d["sim"].update(noise="big"), "sim.noise: expected a number"),
        (lambda d: d["sim"].update(exponent=[0.5] * 5), "sim.exponent: expected 6 values"),
        (lambda d: d["sim"]["floor_loss"].__setitem__(0, 9.0), "floor_loss"),
        (lambda d: d["skills"][0].pop("n_train"), r"skills\[0\].n_train"),
        (lambda d: d.pop("sim"), "needs a 'sim:' block"),
    ],
)
def test_yaml_validation_errors_name_key_and_file(tmp_path: Path, mutate, match: str) -> None:
    path = _sim_yaml(tmp_path, mutate)
    with pytest.raises(MosgymError, match=match) as err:
        cfg = load_env_config(path)
        SimLearner.from_config(cfg, where=str(path))
    assert str(path) in str(err.value)


def test_shipped_yaml_matches_builtin_suite() -> None:
    from mosgym.data.builtin import default_skill_configs

    cfg = load_env_config(TINY_YAML)
    lr = SimLearner.from_config(cfg, where=str(TINY_YAML))
    builtin = default_skill_configs()
    assert lr.skill_names == [s.name for s in builtin]
    assert lr.train_sizes.tolist() == [s.n_train for s in builtin]
    # an env config without skills uses the same built-in suite
    bare = EnvConfig(learner="sim", sim=cfg.sim)
    assert SimLearner.from_config(bare).skill_names == lr.skill_names


# ------------------------------------------------------------------------------------- env
@pytest.mark.parametrize("reward", ["cossim", "diff", "multidds", "multiuat", "train_loss"])
def test_mossim_env_episode(reward: str) -> None:
    env = gym.make(
        "mosgym/MoSSim-v0",
        config=str(TINY_YAML),
        train={"total_steps": 100, "interval": 20},
        reward={"type": reward, "ema": True},
    )
    obs, info = env.reset(seed=0)
    assert obs.shape == (4 * 6 + 1,) and set(info) >= {"dev_loss", "mixture", "train_sizes"}
    done, steps = False, 0
    while not done:
        obs, r, done, trunc, info = env.step(env.action_space.sample())
        steps += 1
        assert np.isfinite(r) and np.all(np.isfinite(info["skill_rewards"]))
    assert steps == 5 and "final_eval" in info and info["step"] == 100
    assert np.all(info["dev_loss"] < 5.6)


def test_mossim_env_checker_and_repeatable() -> None:
    from gymnasium.utils.env_checker import check_env

    # A floor keeps every skill drawn: gymnasium's checker compares infos with allclose, which
    # treats the contract's NaN train_loss (skill not drawn) as a difference.
    env = gym.make(
        "mosgym/MoSSim-v0",
        config=str(TINY_YAML),
        train={"total_steps": 100, "interval": 20},
        action={"floor": 0.05},
    )
    check_env(env.unwrapped, skip_render_check=True)

    def rollout() -> list[float]:
        env.reset(seed=7)
        env.action_space.seed(7)
        return [env.step(env.action_space.sample())[1] for _ in range(5)]

    assert rollout() == rollout()


# ---------------------------------------------------------------------------- batched sim
NOISELESS = {"noise": 0.0, "example_spread": 0.0, "embed_noise": 0.0, "grad_noise": 0.0}


def _noiseless_cfg(reward: dict) -> dict:
    data = yaml.safe_load(TINY_YAML.read_text())
    data["sim"].update(NOISELESS)
    data["train"].update(total_steps=200, interval=20)
    data["action"] = {"kind": "discrete"}
    data["reward"] = reward
    return data


@pytest.mark.parametrize(
    "reward",
    [
        {"type": "cossim", "ema": True},
        {"type": "cossim", "target": "add"},
        {"type": "diff", "ema": True},
        {"type": "diff", "target": "sort", "diff_scope": "sequence"},
        {"type": "multidds"},
        {"type": "multiuat"},
        {"type": "train_loss", "ema": True},
        {"type": "learning_progress"},
        {"type": "mean_progress"},
        {"type": "excess_loss"},
    ],
)
def test_batch_matches_single_env_without_noise(reward: dict) -> None:
    """One-hot mixtures and no noise make both deterministic: the same numbers, step by step."""
    from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
    from mosgym.sim.batch import BatchSim

    cfg = _noiseless_cfg(reward)
    env = MixtureOfSkillsEnv(cfg)
    batch = BatchSim(cfg, n_envs=2, seed=0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(batch.observations()[1], obs, rtol=1e-6)
    arms = [5, 5, 0, 3, 5, 1, 1, 4, 2, 5]
    for k, arm in enumerate(arms):
        obs, r, done, _, info = env.step(arm)
        bobs, br, bdone, binfo = batch.step(np.array([0, arm]))
        np.testing.assert_allclose(binfo["dev_loss"][1], info["dev_loss"], rtol=1e-12)
        np.testing.assert_allclose(binfo["skill_rewards"][1], info["skill_rewards"], rtol=1e-5)
        assert br[1] == pytest.approx(r, rel=1e-5)
        assert bool(bdone[1]) == done == (k == len(arms) - 1)
        if not done:
            np.testing.assert_allclose(bobs[1], obs, rtol=1e-5)
    np.testing.assert_allclose(binfo["final_observation"][1], obs, rtol=1e-5)
    assert np.all(bobs[:, -1] == 0.0)  # auto-reset: progress back to 0


def test_batch_noise_matches_probe_statistics() -> None:
    """At the same model state, batched DIFF/COSSIM have the single learner's probe noise."""
    from mosgym.sim.batch import BatchSim, _cosine_rewards

    env = gym.make("mosgym/MoSSim-v0", config=str(TINY_YAML), reward={"type": "diff"})
    env.reset(seed=0)
    lr = env.unwrapped.learner
    lr.train(np.full(6, 1 / 6), 200)
    batch = BatchSim(TINY_YAML, n_envs=2000, seed=1)
    batch.exposure[:] = lr._exposure
    batch.consumed[:] = lr.consumed
    batched = {
        "diff": batch._diff(),
        "cossim": _cosine_rewards(batch._probe_embeddings(), None),
    }
    for kind, b in batched.items():
        rc = RewardComputer(RewardConfig(type=kind), lr.skill_names, 64)
        single = np.array([rc.compute(lr).raw for _ in range(400)])
        # 5%: the learner's fixed example pool has a slightly different mean difficulty
        np.testing.assert_allclose(b.mean(0), single.mean(0), rtol=0.05)
        np.testing.assert_allclose(b.std(0), single.std(0), rtol=0.2)


@pytest.mark.slow
def test_sim_vec_env_runs_sb3_ppo() -> None:
    from stable_baselines3 import PPO

    from mosgym.sim.batch import SimVecEnv

    venv = SimVecEnv(TINY_YAML, n_envs=4, seed=0, train={"total_steps": 200, "interval": 20})
    venv.seed(3)
    obs = venv.reset()
    assert obs.shape == (4, 25) and venv.observation_space.contains(obs[0])
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert len(model.ep_info_buffer) >= 4  # episodes of 10 steps completed and reported


# ------------------------------------------------------------------------ batched probe draws
def test_batched_probe_draw_gives_fresh_noise_per_probe() -> None:
    """All skills' probes come from one draw, but no two probes ever share noise."""
    from mosgym.sim.dynamics import draw_probes

    draw = draw_probes(np.random.default_rng(0), [1000, 10, 50], 20, 4)
    np.testing.assert_array_equal(draw.size, [20, 10, 20])
    assert draw.eps.shape == (3, 20) and draw.emb.shape == (3, 20, 4)
    for i, pool in enumerate([1000, 10, 50]):
        rows = draw.idx[i, : draw.size[i]]
        assert len(set(rows.tolist())) == draw.size[i] and rows.max() < pool  # no repeats
    lr = make_learner()
    a, b = lr.probe(0, 8), lr.probe(0, 8)  # same skill twice: the second needs a new draw
    assert not np.array_equal(a.nll, b.nll) and not np.array_equal(a.embeddings, b.embeddings)
    c = lr.probe(1, 8)  # the rest of the second draw
    assert not np.array_equal(b.embeddings, c.embeddings)
    first = lr._probe_draw
    lr.probe(2, 8)
    assert lr._probe_draw is first  # one draw served skills 0, 1 and 2
    lr.probe(2, 5)
    assert lr._probe_draw is not first  # another n: a new draw


def test_probe_uses_the_state_at_call_time() -> None:
    """A draw made before training serves later probes with the later losses."""
    lr = make_learner(make_params(noise=0.0, example_spread=0.0, embed_noise=0.0))
    p0 = lr.probe(0, 4)
    np.testing.assert_allclose(p0.nll, 4.0)
    lr.train(ONLY0, 10)  # 80 examples of skill 0: E = 80
    p1 = lr.probe(1, 4)  # same draw, untouched skill: still the initial loss
    np.testing.assert_allclose(p1.nll, 4.0)
    p2 = lr.probe(2, 4)
    np.testing.assert_allclose(p2.nll, 4.0)
    np.testing.assert_allclose(lr.probe(0, 4).nll, 1 + 3 * (1 + 80 / 100) ** -0.5)


def test_state_dict_in_the_middle_of_a_draw_resumes_exactly() -> None:
    lr = make_learner(seed=2)
    lr.train(UNIFORM, 5)
    lr.probe(0, 16)  # the draw for all three skills is made; rows 1 and 2 remain
    lr.gradient_alignment(8)  # and the probe generator moves on after the draw
    state = json.loads(json.dumps(lr.state_dict()))
    other = make_learner(seed=9)
    other.load_state_dict(state)
    for skill in (1, 2, 0, 1):
        a, b = lr.probe(skill, 16), other.probe(skill, 16)
        np.testing.assert_array_equal(a.nll, b.nll)
        np.testing.assert_array_equal(a.embeddings, b.embeddings)
        assert a.ids == b.ids
    np.testing.assert_array_equal(lr.uncertainty(8, 1), other.uncertainty(8, 1))
    old = {k: v for k, v in state.items() if k != "probe_draw"}  # a checkpoint from before
    make_learner().load_state_dict(old)


# ------------------------------------------------- one probe of every skill at once (rewards)
def test_sample_distinct_is_a_uniform_sample_without_replacement() -> None:
    from mosgym.sim.dynamics import sample_distinct

    rng = np.random.default_rng(0)
    pools, sizes = np.array([10, 10, 1000, 7, 5]), np.array([4, 4, 64, 7, 4])
    hits = np.zeros((2, 10))
    for _ in range(3000):
        idx, keep = sample_distinct(rng, pools, sizes)
        np.testing.assert_array_equal(keep.sum(axis=1), sizes)
        for i, (pool, size) in enumerate(zip(pools, sizes, strict=True)):
            kept = idx[i][keep[i]]
            assert len(set(kept.tolist())) == size and kept.min() >= 0 and kept.max() < pool
        for row in (0, 1):  # rejection rows: every example equally likely, 4/10
            hits[row, idx[row][keep[row]]] += 1
    np.testing.assert_allclose(hits / 3000, 0.4, atol=0.04)
    # whole pools (rows 3, 4 sample over half of theirs: Generator.choice) are a permutation
    assert sorted(idx[3][keep[3]].tolist()) == list(range(7))


def _proxy(lr: SimLearner) -> object:
    """The learner behind the Learner API only: rewards take the per-example probe route."""

    class PerExample:
        skill_names = lr.skill_names

        def probe(self, skill: int, n: int, with_initial: bool = True):
            return lr.probe(skill, n, with_initial)

    return PerExample()


@pytest.mark.parametrize(
    "reward",
    [
        {"type": "cossim"},
        {"type": "cossim", "target": "sort"},
        {"type": "diff"},
        {"type": "diff", "diff_scope": "sequence", "target": "add"},
    ],
)
def test_batched_probe_rewards_have_the_per_example_distribution(reward: dict) -> None:
    """The stated change of the speed work: COSSIM and DIFF in MoSSim read one probe of every
    skill summarised at once (other random numbers), with the per-example route's law."""
    lr = SimLearner.from_config(load_env_config(TINY_YAML), seed=3)
    lr.train(np.array([0.4, 0.1, 0.2, 0.1, 0.1, 0.1]), 300)
    rc = RewardComputer(RewardConfig(**reward), lr.skill_names, 64)
    fast = np.array([rc.compute(lr).raw for _ in range(600)])
    slow = np.array([rc.compute(_proxy(lr)).raw for _ in range(600)])
    assert not np.array_equal(fast[0], slow[0])
    spread = np.maximum(slow.std(axis=0), 1e-12)
    # means within 4 standard errors (of a difference of two means), spreads within 15%
    assert np.all(np.abs(fast.mean(0) - slow.mean(0)) < 4 * spread * np.sqrt(2 / 600) + 1e-12)
    np.testing.assert_allclose(fast.std(0), slow.std(0), rtol=0.15, atol=1e-12)


def test_batched_reward_math_matches_the_per_skill_functions() -> None:
    from mosgym.rewards import (
        cossim_rewards,
        cossim_rewards_finite,
        cossim_target_rewards,
        diff_rewards,
        diff_rewards_rows,
    )

    z = np.random.default_rng(1).standard_normal((5, 8)) + 2.0
    np.testing.assert_allclose(cossim_rewards_finite(z), cossim_rewards(z), rtol=1e-13)
    np.testing.assert_allclose(cossim_rewards_finite(z, 2), cossim_target_rewards(z, 2), rtol=1e-13)
    rows = [np.array([1.0, 2.0, 800.0]), np.array([0.5]), np.array([])]
    init = [np.array([1.5, 2.0, 0.1]), np.array([0.2]), np.array([])]
    pad = np.full((3, 3), np.nan)
    nll, ref = pad.copy(), pad.copy()
    for i, (a, b) in enumerate(zip(rows, init, strict=True)):
        nll[i, : len(a)], ref[i, : len(b)] = a, b
    with np.errstate(over="ignore"):
        want = diff_rewards(rows, init)
    np.testing.assert_allclose(diff_rewards_rows(nll, ref)[:2], want[:2], rtol=1e-13)
    assert np.isnan(diff_rewards_rows(nll, ref)[2]) and np.isnan(want[2])
