"""MixtureOfSkills-v0: the Gymnasium contract, determinism, reset, info keys, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import mosgym  # noqa: F401  (registers the envs)
from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
from mosgym.errors import MosgymError


@pytest.fixture(scope="module")
def env() -> MixtureOfSkillsEnv:
    from tests.conftest import FAST_ENV

    e = MixtureOfSkillsEnv(overrides=FAST_ENV)
    yield e
    e.close()


def _rollout(env: gym.Env, seed: int, actions: list) -> list:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, r, term, info["dev_loss"], info["skill_rewards"], info["mixture"]))
    return out


def test_registered_ids_build_the_default_offline() -> None:
    from tests.conftest import FAST_ENV

    e = gym.make("mosgym/MixtureOfSkills-v0", overrides=FAST_ENV)
    obs, info = e.reset(seed=0)
    n = len(info["skill_names"])
    assert n >= 6 and obs.shape == (4 * n + 1,)
    assert e.action_space.shape == (n,)
    e.close()


def test_gymnasium_and_sb3_check_env(env: MixtureOfSkillsEnv, fast_env_overrides) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    gym_check(env, skip_render_check=True)
    sb3_check(env, warn=True)
    disc = MixtureOfSkillsEnv(overrides=fast_env_overrides + ["action.kind=discrete"])
    gym_check(disc, skip_render_check=True)
    sb3_check(disc, warn=True)
    assert isinstance(disc.action_space, gym.spaces.Discrete)


def test_episode_info_and_termination(env: MixtureOfSkillsEnv) -> None:
    obs, info = env.reset(seed=1)
    n = len(env.skill_names)
    assert np.allclose(obs[:n], 1.0) and np.allclose(obs[n : 2 * n], 1.0 / n)
    assert set(info) >= {"skill_names", "dev_loss", "mixture", "train_sizes"}
    steps = 0
    terminated = False
    while not terminated:
        action = np.linspace(-1, 1, n).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        assert not truncated
        expected = np.exp(action * env.config.action.logit_scale)
        np.testing.assert_allclose(info["mixture"], expected / expected.sum(), rtol=1e-6)
        assert reward == pytest.approx(float(info["mixture"] @ info["skill_rewards"]))
        assert np.isfinite(info["skill_rewards"]).all()
        assert info["step"] == steps * env.config.train.interval
        assert info["examples_seen"].sum() == info["step"] * env.config.train.batch_size
        assert obs[-1] == pytest.approx(info["step"] / env.config.train.total_steps)
    assert steps == env.n_env_steps
    final = info["final_eval"]
    assert final["dev_loss"].shape == (n,) and final["accuracy"].shape == (n,)
    with pytest.raises(MosgymError, match="episode has ended"):
        env.step(np.zeros(n, np.float32))


def test_same_seed_same_rollout_and_reset_restores_weights(env: MixtureOfSkillsEnv) -> None:
    n = len(env.skill_names)
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, n).astype(np.float32) for _ in range(env.n_env_steps)]
    env.reset(seed=0)  # earlier tests trained this env: the initial weights come back here
    initial = {k: v.clone() for k, v in env.learner.model.state_dict().items()}
    a = _rollout(env, 7, actions)
    changed = any(not torch.equal(initial[k], v) for k, v in env.learner.model.state_dict().items())
    assert changed, "training did not change the parameters"
    env.reset(seed=3)
    for k, v in env.learner.model.state_dict().items():
        assert torch.equal(initial[k], v), f"reset did not restore {k}"
    b = _rollout(env, 7, actions)
    np.testing.assert_array_equal(a[0], b[0])
    for x, y in zip(a[1:], b[1:], strict=True):
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)
    c = _rollout(env, 8, actions)
    assert not np.array_equal(a[1][3], c[1][3]), "a different seed should draw different data"


def test_wrappers_and_vector_env(fast_env_overrides) -> None:
    from gymnasium.wrappers import ClipAction, RecordEpisodeStatistics

    e = RecordEpisodeStatistics(ClipAction(MixtureOfSkillsEnv(overrides=fast_env_overrides)))
    e.reset(seed=0)
    done = False
    while not done:
        _, _, term, trunc, info = e.step(e.action_space.sample() * 3)
        done = term or trunc
    assert "episode" in info
    vec = gym.vector.SyncVectorEnv(
        [lambda: MixtureOfSkillsEnv(overrides=fast_env_overrides) for _ in range(2)]
    )
    obs, _ = vec.reset(seed=[0, 1])
    assert obs.shape[0] == 2
    obs, rew, term, trunc, _ = vec.step(vec.action_space.sample())
    assert rew.shape == (2,) and np.isfinite(rew).all()
    vec.close()


@pytest.mark.parametrize(
    "action, match",
    [
        (lambda n: np.full(n, np.nan, np.float32), "NaN|finite"),
        (lambda n: np.full(n, np.inf, np.float32), "NaN|finite|inf"),
        (lambda n: np.zeros(n + 1, np.float32), "shape"),
    ],
)
def test_bad_actions_are_refused(env: MixtureOfSkillsEnv, action, match) -> None:
    env.reset(seed=0)
    with pytest.raises(MosgymError, match=match):
        env.step(action(len(env.skill_names)))


def test_bad_reward_config_is_refused(env: MixtureOfSkillsEnv, fast_env_overrides) -> None:
    with pytest.raises(MosgymError, match="reward.type"):
        MixtureOfSkillsEnv(overrides=fast_env_overrides + ["reward.type=loss"], learner=env.learner)
    with pytest.raises(MosgymError, match="reward.target"):
        MixtureOfSkillsEnv(
            overrides=fast_env_overrides + ["reward.target=geography"], learner=env.learner
        )
    with pytest.raises(MosgymError, match="multiple of train.interval"):
        MixtureOfSkillsEnv(overrides=fast_env_overrides + ["train.interval=4"], learner=env.learner)
