"""Agents: MoS scorer math by hand, warm-up, static priors, ODM's EXP3, SB3 adapter, configs.

A small fake env that follows the env contract (notes: mosgym env contract) stands in for the
real one so learning runs take seconds: per-skill rewards and losses are synthetic, and skill 3
is the one worth sampling (highest reward and highest loss).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from mosgym.agents import (
    AgentConfig,
    EnvSpec,
    MetricsWriter,
    MosAgent,
    MosParams,
    ODMAgent,
    ODMParams,
    SelfDrivingAgent,
    StaticAgent,
    StaticParams,
    check_compatible,
    list_agent_configs,
    load_agent_config,
    make_agent,
)
from mosgym.agents.base import Agent
from mosgym.agents.mos import Scorer, reinforce_loss, reinforce_update, warm_up, warmup_loss
from mosgym.agents.odm import exp3_distribution, exp3_epsilon, smoothed_rewards
from mosgym.envs.mixing import action_to_mixture
from mosgym.errors import MosgymError

AGENTS_DIR = Path(__file__).resolve().parent.parent / "agents"


class FakeMixEnv(gym.Env):
    """The env contract with a synthetic learner (dev loss of skill i falls with its weight)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, n: int = 4, n_steps: int = 20, kind: str = "continuous") -> None:
        self.n, self.n_steps, self.kind, self.interval = n, n_steps, kind, 10
        self.skill_names = [f"skill{i}" for i in range(n)]
        self.sizes = np.arange(n, 0, -1) * 100
        self.values = np.linspace(0.1, 0.4, n)
        self.values[-1] = 1.0
        self.init_loss = np.linspace(1.0, 1.5, n)
        self.init_loss[-1] = 3.0
        if kind == "continuous":
            self.action_space: gym.Space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        else:
            self.action_space = gym.spaces.Discrete(n)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4 * n + 1,), np.float32)

    @property
    def spec_info(self) -> EnvSpec:
        return EnvSpec(list(self.skill_names), self.sizes.copy(), self.kind, self.n_steps, 10)

    def _obs(self) -> np.ndarray:
        parts = [self.dev / self.init_loss, self.mixture, self.seen / self.sizes, self.last_r]
        return np.concatenate([*parts, [self.t / self.n_steps]]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        super().reset(seed=seed)
        self.t, self.dev = 0, self.init_loss.copy()
        self.mixture = np.full(self.n, 1.0 / self.n)
        self.seen, self.last_r = np.zeros(self.n), np.zeros(self.n)
        info = {
            "skill_names": self.skill_names,
            "dev_loss": self.dev.copy(),
            "mixture": self.mixture.copy(),
            "train_sizes": self.sizes.copy(),
        }
        return self._obs(), info

    def step(self, action: Any) -> tuple:
        p = action_to_mixture(action, self.kind, self.n, 5.0, 0.0)
        train_loss = np.where(p > 0, self.dev, np.nan)
        self.dev = self.dev * (1.0 - 0.05 * p)
        self.seen += 80 * p
        self.t += 1
        raw = self.values * self.dev / self.init_loss
        self.mixture, self.last_r = p, raw
        info = {
            "mixture": p.copy(),
            "skill_rewards": raw.copy(),
            "raw_skill_rewards": raw.copy(),
            "dev_loss": self.dev.copy(),
            "train_loss": train_loss,
            "step_loss": float(np.nanmean(train_loss)),
            "examples_seen": self.seen.copy(),
            "tokens_seen": self.seen * 10,
            "step": self.t * self.interval,
            "probe_skipped": 0,
        }
        terminated = self.t >= self.n_steps
        if terminated:
            info["final_eval"] = {"dev_loss": self.dev.copy(), "accuracy": np.full(self.n, np.nan)}
        return self._obs(), float(p @ raw), terminated, False, info


def spec(n: int = 4, kind: str = "continuous", sizes: Any = None) -> EnvSpec:
    sizes = np.arange(n, 0, -1) * 100 if sizes is None else np.asarray(sizes)
    return EnvSpec([f"skill{i}" for i in range(n)], sizes, kind, 20, 10)


def run_episode(env: FakeMixEnv, agent: Agent, seed: int = 0) -> list[dict[str, Any]]:
    obs, info = env.reset(seed=seed)
    agent.reset(obs, info)
    infos, done = [], False
    while not done:
        action = agent.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(action, reward, obs, terminated, truncated, info)
        infos.append(info)
        done = terminated or truncated
    return infos


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# --------------------------------------------------------------------------------------------
# MoS: the REINFORCE scorer


def test_reinforce_loss_and_gradient_by_hand() -> None:
    logits = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    loss = reinforce_loss(logits, r)
    p = softmax(np.array([0.0, 0.5, 1.0]))
    assert loss.item() == pytest.approx(-(np.array([1.0, 0.5, 2.0]) * np.log(p)).sum(), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), p * 3.5 - np.array([1.0, 0.5, 2.0]), rtol=1e-12)


def test_one_big_adam_step_by_hand() -> None:
    # Adam's first step is lr * g / (|g| + eps): each logit moves by lr against its gradient sign
    scorer = Scorer(3, "logits", 8, 1.0)
    with torch.no_grad():
        scorer.weight.copy_(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    opt = torch.optim.Adam(scorer.parameters(), lr=0.5)
    rewards = np.array([1.0, 0.5, 2.0])
    reinforce_update(scorer, opt, rewards, n_steps=1)
    logits = np.array([0.0, 0.5, 1.0])
    g = softmax(logits) * rewards.sum() - rewards  # [-0.34787, 0.57519, -0.22732]
    expected = softmax(logits - 0.5 * g / (np.abs(g) + 1e-8))
    # new logits [0.5, 0.0, 1.5]: e^0.5, e^0, e^1.5 over their sum 7.130410
    np.testing.assert_allclose(expected, [0.2312239, 0.1402444, 0.6285317], rtol=1e-6)
    np.testing.assert_allclose(scorer.probabilities(), expected, rtol=1e-9)


def numpy_adam(theta: np.ndarray, grad_fn: Any, lr: float, steps: int) -> np.ndarray:
    """Adam (Kingma & Ba) with torch's defaults: betas (0.9, 0.999), eps 1e-8."""
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta = theta - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return theta


def test_agent_update_matches_numpy_adam() -> None:
    """The default MoS update (200 Adam steps at lr 1e-4) from the uniform prior, by hand."""
    agent = MosAgent("mos", MosParams())
    agent.setup(spec(4), seed=0)
    assert agent.warmup_iters == 0  # logits all 1.0 are already the uniform prior
    rewards = np.array([0.9, 0.95, 1.0, 0.7])
    obs, info = FakeMixEnv().reset(seed=0)
    agent.reset(obs, info)
    agent.observe(np.zeros(4), 0.0, obs, False, False, {"skill_rewards": rewards})
    theta = numpy_adam(np.ones(4), lambda th: softmax(th) * rewards.sum() - rewards, 1e-4, 200)
    np.testing.assert_allclose(agent.probabilities(), softmax(theta), rtol=1e-10)
    assert agent.probabilities()[2] > 0.25 > agent.probabilities()[3]
    # one Adam instance for the run: a second update continues its moments
    agent.observe(np.zeros(4), 0.0, obs, False, False, {"skill_rewards": rewards})
    theta = numpy_adam(np.ones(4), lambda th: softmax(th) * rewards.sum() - rewards, 1e-4, 400)
    np.testing.assert_allclose(agent.probabilities(), softmax(theta), rtol=1e-10)


@pytest.mark.parametrize("tau", [1.0, 10.0, math.inf])
def test_warm_up_reaches_the_prior(tau: float) -> None:
    sizes = np.array([400, 300, 200, 100])
    agent = MosAgent("mos", MosParams(prior_tau=tau))
    agent.setup(spec(4, sizes=sizes), seed=0)
    q = sizes / sizes.sum()
    prior = np.full(4, 0.25) if math.isinf(tau) else q ** (1 / tau) / (q ** (1 / tau)).sum()
    p = agent.probabilities()
    assert np.mean((p - prior) ** 2) < 1e-10
    assert np.max(np.abs(p - prior)) < 2e-5  # sqrt(N * 1e-10)
    assert (agent.warmup_iters == 0) == math.isinf(tau)


def test_warm_up_mse_by_hand_and_cap() -> None:
    logits = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)  # p = [0.25, 0.75]
    prior = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert warmup_loss(logits, prior).item() == pytest.approx(0.0625)
    with pytest.raises(MosgymError, match="warm-up.*warmup_max_iters"):
        MosAgent("mos", MosParams(prior_tau=1, warmup_max_iters=50)).setup(spec(4), seed=0)
    scorer = Scorer(2, "logits", 8, 1.0)
    opt = torch.optim.Adam(scorer.parameters(), lr=1e-2)
    iters = warm_up(scorer, opt, np.array([0.3, 0.7]), 1e-10, 100_000)
    assert 0 < iters < 100_000
    np.testing.assert_allclose(scorer.probabilities(), [0.3, 0.7], atol=2e-5)


def test_mlp_scorer_warms_up_and_is_seeded() -> None:
    prior = np.arange(4, 0, -1) ** 0.1  # tau = 10 over sizes 400, 300, 200, 100
    prior /= prior.sum()
    probs = []
    for seed in (3, 3, 4):
        agent = MosAgent("mos-mlp", MosParams(scorer="mlp", hidden_size=16, prior_tau=10))
        agent.setup(spec(4), seed=seed)
        assert agent.warmup_iters > 0  # a random MLP does not start at the prior
        assert np.mean((agent.probabilities() - prior) ** 2) < 1e-10
        agent.observe(0, 0.0, None, False, False, {"skill_rewards": np.array([1.0, 0, 0, 0])})
        probs.append(agent.probabilities())
    np.testing.assert_array_equal(probs[0], probs[1])  # same seed, same numbers
    assert not np.array_equal(probs[0], probs[2])  # the MLP's init depends on the seed
    assert probs[0][0] > prior[0]  # the only rewarded skill gains weight


def test_mos_state_dict_json_round_trip_resumes_exactly() -> None:
    env = FakeMixEnv()
    a = MosAgent("mos", MosParams(lr=0.01))
    a.setup(env.spec_info, seed=1)
    obs, info = env.reset(seed=0)
    a.reset(obs, info)
    for _ in range(3):
        obs, _, _, _, info = env.step(a.act(obs))
        a.observe(0, 0.0, obs, False, False, info)
    b = MosAgent("mos", MosParams(lr=0.01))
    b.setup(env.spec_info, seed=99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for _ in range(2):
        obs, _, _, _, info = env.step(a.act(obs))
        b.act(obs)
        a.observe(0, 0.0, obs, False, False, info)
        b.observe(0, 0.0, obs, False, False, info)
    np.testing.assert_array_equal(a.probabilities(), b.probabilities())


def test_mos_learns_on_fake_env_and_skips_nan() -> None:
    env = FakeMixEnv()
    agent = make_agent(load_agent_config({"name": "m", "kind": "mos", "params": {"lr": 0.01}}))
    agent.setup(env.spec_info, seed=0)
    infos = run_episode(env, agent)
    assert infos[0]["mixture"][3] == pytest.approx(0.25, abs=1e-6)  # starts uniform
    assert infos[-1]["mixture"][3] > 0.5  # the best skill wins
    before = agent.probabilities()
    agent.observe(0, 0.0, None, False, False, {"skill_rewards": np.array([1, np.nan, 1, 1])})
    np.testing.assert_array_equal(agent.probabilities(), before)
    assert agent.skipped_updates == 1
    # reset_each_episode: the next episode starts from the warmed-up (uniform) scorer again
    agent.reset(*env.reset(seed=1))
    np.testing.assert_allclose(agent.probabilities(), 0.25)


def test_mos_discrete_samples_arms() -> None:
    agent = MosAgent("mos", MosParams(prior_tau=10))
    agent.setup(spec(4, "discrete"), seed=0)
    arms = [agent.act(None) for _ in range(2000)]
    assert all(isinstance(a, int) for a in arms)
    np.testing.assert_allclose(np.bincount(arms) / 2000, agent.probabilities(), atol=0.03)
    assert agent.probabilities()[0] > agent.probabilities()[3]  # the TEMP prior, not uniform


# --------------------------------------------------------------------------------------------
# Static priors


def test_static_priors_by_hand() -> None:
    sp = spec(3, sizes=[100, 300, 600])
    expected = {
        "1": [0.1, 0.3, 0.6],
        "10": [0.3019003, 0.3369577, 0.3611423],  # 0.1^0.1, 0.3^0.1, 0.6^0.1 normalised
        "inf": [1 / 3, 1 / 3, 1 / 3],
    }
    for tau, p in expected.items():
        raw = {
            "name": "s",
            "kind": "static",
            "params": {"tau": tau if tau == "inf" else float(tau)},
        }
        agent = make_agent(load_agent_config(raw))
        agent.setup(sp, seed=0)
        np.testing.assert_allclose(agent.mixture, p, rtol=1e-6)
        # the env turns the agent's action back into exactly this mixture
        np.testing.assert_allclose(
            action_to_mixture(agent.act(None), "continuous", 3, 5.0, 0.0), p, rtol=1e-5
        )


def test_static_fixed_weights_and_errors() -> None:
    agent = StaticAgent("fixed", StaticParams(weights=[1, 1, 2]))
    agent.setup(spec(3), seed=0)
    np.testing.assert_allclose(agent.mixture, [0.25, 0.25, 0.5])
    for bad, match in [
        ([1, 2], "2 entries but the env has 3"),
        ([1, -1, 1], "non-negative"),
        ([0, 0, 0], "not all zero"),
    ]:
        with pytest.raises(MosgymError, match=match):
            StaticAgent("fixed", StaticParams(weights=bad)).setup(spec(3), seed=0)
    with pytest.raises(MosgymError, match="exactly one of"):
        StaticAgent("s", StaticParams())
    with pytest.raises(MosgymError, match="tau"):
        StaticAgent("s", StaticParams(tau=-1.0))


def test_static_discrete_is_seeded() -> None:
    arms = []
    for _ in range(2):
        agent = StaticAgent("s", StaticParams(tau=1.0))
        agent.setup(spec(4, "discrete"), seed=5)
        arms.append([agent.act(None) for _ in range(50)])
    assert arms[0] == arms[1] and len(set(arms[0])) > 1


# --------------------------------------------------------------------------------------------
# ODM (EXP3)


def test_exp3_epsilon_schedule() -> None:
    assert exp3_epsilon(0, 4) == 0.25
    assert exp3_epsilon(1, 4) == 0.25  # sqrt(ln 4 / 4) = 0.589 > 1/4
    assert exp3_epsilon(6, 4) == pytest.approx(math.sqrt(math.log(4) / 24))  # 0.2403
    assert exp3_epsilon(100, 4) == pytest.approx(0.0588705, rel=1e-6)
    eps = [exp3_epsilon(t, 4) for t in range(6, 200)]
    assert all(a > b for a, b in zip(eps, eps[1:], strict=False))


def test_exp3_distribution_and_update_by_hand() -> None:
    # (1 - 2 * 0.25) * softmax([0, 0.5]) + 0.25
    np.testing.assert_allclose(
        exp3_distribution(np.array([0.0, 1.0]), 0.5, 0.25), [0.4387706, 0.5612294], rtol=1e-6
    )
    # Rhat = 0.9 Rhat + 0.1 L / p where L is finite
    out = smoothed_rewards(
        np.array([1.0, 2.0, 3.0]), np.array([2.0, np.nan, 4.0]), np.array([0.5, 0.25, 0.25]), 0.9
    )
    np.testing.assert_allclose(out, [1.3, 2.0, 4.3])


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_odm_weights_follow_the_loss(kind: str) -> None:
    agent = ODMAgent("odm", ODMParams())
    agent.setup(spec(4, kind), seed=0)
    agent.reset(None, {})
    losses = np.array([1.0, 1.0, 5.0, 1.0])
    for _ in range(60):
        action = agent.act(None)
        mixture = action_to_mixture(action, kind, 4, 5.0, 0.0)
        train_loss = np.where(mixture > 0, losses, np.nan)
        agent.observe(
            action, 0.0, None, False, False, {"train_loss": train_loss, "mixture": mixture}
        )
    assert agent.rhat[2] > agent.rhat[[0, 1, 3]].max()
    pi = agent.probabilities()
    assert pi.sum() == pytest.approx(1.0)
    # importance weighting (L / pi) keeps EXP3 exploring: ~0.36 vs ~0.21 for the others
    assert pi[2] > 0.33 and pi[2] > pi[[0, 1, 3]].max() + 0.1
    assert np.all(pi >= exp3_epsilon(60, 4) - 1e-12)


def test_odm_changes_the_mixture_during_a_run() -> None:
    env = FakeMixEnv()
    agent = make_agent(load_agent_config(AGENTS_DIR / "odm.yaml"))
    agent.setup(env.spec_info, seed=0)
    infos = run_episode(env, agent)
    first, last = infos[0]["mixture"], infos[-1]["mixture"]
    np.testing.assert_allclose(first, 0.25, atol=1e-6)  # eps = 1/N at the start: uniform
    assert last[3] > first[3] + 0.04 and last.argmax() == 3  # the high-loss skill gains
    state = json.loads(json.dumps(agent.state_dict()))
    assert state["t"] == 20


# --------------------------------------------------------------------------------------------
# SB3 adapter


def test_metrics_writer_forwards_numbers() -> None:
    got: list[tuple[dict, int]] = []
    writer = MetricsWriter(lambda m, s: got.append((m, s)), step_scale=10)
    values = {"train/loss": 0.5, "train/n": np.int64(3), "info": "x", "flag": True, "bad": math.nan}
    writer.write(values, {}, step=4)
    assert got == [({"sb3/train/loss": 0.5, "sb3/train/n": 3.0}, 40)]


@pytest.mark.slow
def test_ppo_learns_on_fake_env_and_deploys(tmp_path: Path) -> None:
    env = FakeMixEnv()
    agent = make_agent(load_agent_config(AGENTS_DIR / "ppo.yaml"))
    assert isinstance(agent, SelfDrivingAgent)
    agent.setup(env.spec_info, seed=0)
    logged: list[tuple[dict, int]] = []
    agent.set_metrics_sink(lambda m, s: logged.append((m, s)))  # how the runner passes MLflow
    agent.learn(env, 5)
    obs0, _ = FakeMixEnv().reset(seed=0)
    before = action_to_mixture(agent.act(obs0), "continuous", 4, 5.0, 0.0)
    agent.learn(env, 100)
    after = action_to_mixture(agent.act(obs0), "continuous", 4, 5.0, 0.0)
    assert after[3] > before[3] + 0.1  # PPO moved its mixture toward the best skill
    assert any("sb3/train/policy_gradient_loss" in m for m, _ in logged)
    assert all(step % 10 == 0 and step > 0 for _, step in logged)  # optimizer steps: env steps * S
    assert agent.state_dict()["num_timesteps"] == 105
    # deploy: the saved policy loads as a frozen Agent and acts deterministically
    agent.save(tmp_path / "ppo.zip")
    (tmp_path / "deployed.yaml").write_text(
        "kind: sb3-policy\nparams: {algo: ppo, path: ppo.zip}\n"
    )
    cfg = load_agent_config(tmp_path / "deployed.yaml")
    assert cfg.name == "deployed" and cfg.action_kind == "continuous"
    policy = make_agent(cfg)
    assert isinstance(policy, Agent) and not isinstance(policy, SelfDrivingAgent)
    policy.setup(env.spec_info, seed=0)
    a1, a2 = policy.act(obs0), policy.act(obs0)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(a1, agent.act(obs0), rtol=1e-6)
    infos = run_episode(FakeMixEnv(), policy)
    assert len(infos) == 20
    with pytest.raises(MosgymError, match="skills"):
        make_agent(cfg).setup(spec(3), seed=0)


@pytest.mark.parametrize("name", ["a2c", "sac", "td3", "dqn"])
def test_sb3_yamls_learn_one_episode(name: str) -> None:
    cfg = load_agent_config(AGENTS_DIR / f"{name}.yaml")
    kind = "discrete" if cfg.action_kind == "discrete" else "continuous"
    env = FakeMixEnv(kind=kind)
    check_compatible(cfg, kind)
    agent = make_agent(cfg)
    agent.setup(env.spec_info, seed=0)
    agent.learn(env, 20)
    action = agent.act(env.reset(seed=0)[0])
    if kind == "discrete":
        assert isinstance(action, int) and 0 <= action < 4
    else:
        assert action.shape == (4,) and np.all(np.abs(action) <= 1)


def test_check_compatible() -> None:
    dqn = load_agent_config(AGENTS_DIR / "dqn.yaml")
    with pytest.raises(MosgymError, match="needs discrete actions.*action.kind=discrete"):
        check_compatible(dqn, "continuous")
    with pytest.raises(MosgymError, match="discrete"):
        make_agent(dqn).setup(spec(4, "continuous"), seed=0)
    check_compatible(make_agent(load_agent_config(AGENTS_DIR / "mos-cossim.yaml")), "discrete")
    odm_d = load_agent_config(AGENTS_DIR / "odm-discrete.yaml")
    with pytest.raises(MosgymError, match="discrete"):
        check_compatible(make_agent(odm_d), "continuous")


# --------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize("path", list_agent_configs(AGENTS_DIR), ids=lambda p: p.stem)
def test_every_agent_yaml_loads_and_builds(path: Path) -> None:
    cfg = load_agent_config(path)
    assert isinstance(cfg, AgentConfig) and cfg.name == path.stem
    assert cfg.action_kind in ("continuous", "discrete", "any")
    agent = make_agent(cfg)
    n = len(cfg.params.weights) if getattr(cfg.params, "weights", None) else 4
    if cfg.kind == "sb3-policy":  # shipped policies act on the built-in suite's six skills
        n = 6
    kind = "discrete" if cfg.action_kind == "discrete" else "continuous"
    agent.setup(spec(n, kind, sizes=np.full(n, 100)), seed=0)  # equal sizes: instant warm-up
    # plain data round trip (what MLflow logs as config.yaml)
    from mosgym.config import to_dict

    again = load_agent_config(json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg


def test_agent_yamls_cover_the_paper() -> None:
    names = {p.stem for p in list_agent_configs(AGENTS_DIR)}
    for required in [
        "mos-cossim",
        "mos-cossim-ema",
        "mos-diff",
        "mos-diff-ema",
        "multidds",
        "multiuat",
        "mospec-cossim",
        "mospec-diff",
        "static-prop",
        "static-temp",
        "static-uni",
        "odm",
        "ppo",
        "a2c",
        "sac",
        "td3",
        "dqn",
    ]:
        assert required in names
    ema = load_agent_config(AGENTS_DIR / "mos-cossim-ema.yaml")
    assert ema.reward.type == "cossim" and ema.reward.ema
    assert make_agent(ema).tau == math.inf  # the paper's MoS: uniform prior
    assert load_agent_config(AGENTS_DIR / "mospec-diff.yaml").reward.target == "add"


def test_overrides() -> None:
    cfg = load_agent_config(AGENTS_DIR / "mos-cossim.yaml", ["params.lr=0.001", "reward.ema=true"])
    assert cfg.params.lr == 0.001 and cfg.reward.ema is True
    cfg = load_agent_config(AGENTS_DIR / "ppo.yaml", ["params.hyperparams.n_steps=8"])
    assert cfg.params.hyperparams["n_steps"] == 8


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("kind: mos\nlr: 0.1\n", r"bad\.yaml: unknown key 'lr'"),
        (
            "kind: mos\nparams: {learning_rate: 0.1}\n",
            r"bad\.yaml\.params: unknown key 'learning_rate'",
        ),
        ("kind: mos\nreward: {typ: cossim}\n", r"bad\.yaml\.reward: unknown key 'typ'"),
        ("kind: mos\nparams: {lr: fast}\n", r"params\.lr: expected a number"),
        ("kind: scorer\n", r"kind 'scorer' unknown"),
        ("params: {}\n", r"missing required key 'kind'"),
        ("kind: sb3\nparams: {algo: ddpg}\n", r"algo 'ddpg' unknown"),
        (
            "kind: sb3\nparams: {hyperparams: {n_step: 5}}\n",
            r"hyperparams\.n_step is not a PPO argument",
        ),
        ("kind: sb3\naction_kind: continuous\nparams: {algo: dqn}\n", r"only supports discrete"),
        ("kind: odm\naction_kind: box\n", r"action_kind 'box' unknown"),
        (
            "kind: sb3-policy\nparams: {path: missing.zip}\n",
            r"missing\.zip: saved SB3 policy not found",
        ),
        ("kind: static\nparams: {tau: hot}\n", r"expected a positive number or 'inf'"),
        ("kind: mos\nparams: {scorer: rnn}\n", r"scorer must be"),
    ],
)
def test_bad_agent_yaml(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MosgymError, match=match):
        make_agent(load_agent_config(path))


@pytest.mark.parametrize(
    "params, field",
    [({"warmup_max_iters": -1}, "warmup_max_iters"), ({"init_logit": float("nan")}, "init_logit")],
)
def test_bad_mos_settings_fail_at_construction(params: dict, field: str) -> None:
    cfg = load_agent_config({"name": "m", "kind": "mos", "params": params})
    with pytest.raises(MosgymError, match=field):
        make_agent(cfg)
