"""Sim-to-real: train on the simulator, deploy the saved policy; one agent config, both envs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml
from stable_baselines3 import PPO

import mosgym  # noqa: F401  (registers the envs)
from mosgym.agents.registry import AgentConfig, load_agent_config, make_agent
from mosgym.agents.sb3 import SelfDrivingAgent
from mosgym.config import load_env_config, to_dict
from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
from mosgym.errors import MosgymError
from mosgym.experiment.episode import RecordEpisode, run_episode
from mosgym.experiment.sim2real import main, score_on_sim, train_on_sim
from tests.conftest import FAST_ENV

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = ROOT / "envs" / "sim-skills-tiny.yaml"
AGENTS = ROOT / "agents"
SIM_SHORT = {"total_steps": 60, "interval": 20}  # 3 env steps, like FAST_ENV's 6 / 2
TINY_PPO = ["params.hyperparams.n_steps=8", "params.hyperparams.batch_size=32"]


def make_env(kind: str, agent_cfg: AgentConfig) -> MixtureOfSkillsEnv:
    """The real env (FAST_ENV: a tiny LM) or MoSSim-v0, with the agent's reward, as `run` does."""
    reward = None if agent_cfg.reward is None else to_dict(agent_cfg.reward)
    extra: dict[str, Any] = {} if reward is None else {"reward": reward}
    if kind == "real":
        return gym.make("mosgym/MixtureOfSkills-v0", overrides=FAST_ENV, **extra).unwrapped
    return gym.make("mosgym/MoSSim-v0", config=str(TINY_YAML), train=SIM_SHORT, **extra).unwrapped


def play(env: MixtureOfSkillsEnv, agent_cfg: AgentConfig, seed: int = 0) -> RecordEpisode:
    """One episode of the agent a config describes, through the runner's recording wrapper."""
    agent = make_agent(agent_cfg)
    agent.setup(env.spec_info, seed)
    rec = RecordEpisode(env)
    if isinstance(agent, SelfDrivingAgent):
        agent.learn(rec, env.n_env_steps)
    else:
        run_episode(rec, agent, seed)
    return rec


def check_episode(rec: RecordEpisode, n_steps: int) -> None:
    log = rec.last_complete  # SB3 may have started another episode after the first
    assert log is not None and log.steps[-1] == log.steps[1] * n_steps  # ran to its end
    mix = np.array(log.mixture[1:])
    assert mix.shape == (n_steps, 6) and np.allclose(mix.sum(axis=1), 1.0)
    assert log.final_eval is not None and np.all(np.isfinite(log.final_eval["dev_loss"]))


# ---------------------------------------------------------------- the same config on both envs
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mos-cossim", "static-prop", "odm", "ppo"])
@pytest.mark.parametrize("env_kind", ["sim", "real"])
def test_same_agent_config_runs_on_both_envs(name: str, env_kind: str) -> None:
    cfg = load_agent_config(AGENTS / f"{name}.yaml")
    env = make_env(env_kind, cfg)
    assert env.skill_names == ["copy", "reverse", "sort", "count", "lookup", "add"]
    check_episode(play(env, cfg), env.n_env_steps)


# ---------------------------------------------------------------------------- sim2real
def test_score_on_sim_matches_the_single_env() -> None:
    """Noiseless, one arm throughout: the batched score equals the env's own episode."""
    data = yaml.safe_load(TINY_YAML.read_text())
    data["sim"].update(noise=0.0, example_spread=0.0, embed_noise=0.0, grad_noise=0.0)
    data["train"].update(total_steps=200, interval=20)
    data["action"] = {"kind": "discrete"}
    cfg = load_env_config(data)
    score = score_on_sim(cfg, lambda obs: np.full(obs.shape[0], 2), episodes=3)
    env = MixtureOfSkillsEnv(data)
    env.reset(seed=0)
    ret, done = 0.0, False
    while not done:
        _, r, done, _, info = env.step(2)
        ret += r
    assert score.episode_return == pytest.approx(ret, rel=1e-5)
    assert score.final_dev_loss == pytest.approx(info["dev_loss"].mean(), rel=1e-9)


@pytest.mark.slow
def test_train_on_sim_then_deploy_on_both_envs(tmp_path: Path, monkeypatch) -> None:
    res = train_on_sim(
        TINY_YAML,
        AGENTS / "ppo.yaml",
        timesteps=64,
        out=tmp_path / "policies" / "p",  # SB3's convention: '.zip' is added
        n_envs=4,
        agent_out=tmp_path / "agents" / "from-sim.yaml",
        agent_overrides=TINY_PPO,
    )
    assert res.policy_path == tmp_path / "policies" / "p.zip" and res.policy_path.is_file()
    assert res.uniform is not None and np.isfinite(res.policy.final_dev_loss)
    written = yaml.safe_load(res.agent_yaml.read_text())
    assert written["kind"] == "sb3-policy" and written["params"]["path"] == "../policies/p.zip"
    assert written["reward"]["type"] == "cossim" and written["action_kind"] == "continuous"
    monkeypatch.chdir(tmp_path / "policies")  # the path resolves against the YAML, not the cwd
    cfg = load_agent_config(res.agent_yaml)
    assert Path(cfg.params.path).resolve() == res.policy_path.resolve()
    assert cfg.reward is not None and cfg.reward.type == "cossim" and cfg.reward.ema
    model = PPO.load(res.policy_path, device="cpu")
    for env_kind in ("sim", "real"):
        env = make_env(env_kind, cfg)
        rec = play(env, cfg)
        check_episode(rec, env.n_env_steps)
        # the deployed agent acts as the trained model does on the same observation
        agent = make_agent(cfg)
        agent.setup(env.spec_info, 0)
        obs, _ = env.reset(seed=1)
        expected = model.predict(obs, deterministic=True)[0]
        np.testing.assert_array_equal(agent.act(obs), expected)


def test_cli_refuses_a_non_sb3_agent(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "--env",
            str(TINY_YAML),
            "--agent",
            str(AGENTS / "mos-cossim.yaml"),
            "--timesteps",
            "10",
            "--out",
            str(tmp_path / "p.zip"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "kind 'sb3'" in err and "Traceback" not in err
    assert not (tmp_path / "p.zip").exists()


@pytest.mark.slow
def test_cli_writes_policy_and_agent_yaml(tmp_path: Path) -> None:
    out, agent_out = tmp_path / "pol.zip", tmp_path / "a.yaml"
    argv = ["--env", str(TINY_YAML), "--agent", str(AGENTS / "ppo.yaml"), "--timesteps", "32"]
    argv += ["--out", str(out), "--agent-out", str(agent_out), "--n-envs", "2"]
    for s in TINY_PPO:
        argv += ["--set", s]
    assert main(argv) == 0
    assert out.is_file() and "python -m mosgym.sim2real" in agent_out.read_text()
    assert load_agent_config(agent_out).params.path == str(out)


def test_shipped_policy_fits_the_real_suite() -> None:
    """agents/ppo-from-sim.yaml loads its committed policy, sized for the built-in suite."""
    path = AGENTS / "ppo-from-sim.yaml"
    cfg = load_agent_config(path)
    assert os.path.isfile(cfg.params.path)
    agent = make_agent(cfg)
    assert agent.model.observation_space.shape == (4 * 6 + 1,)
    assert agent.model.action_space.shape == (6,)
    spec = make_env("sim", cfg).spec_info
    agent.setup(spec, 0)
    three = dataclasses.replace(
        spec, skill_names=spec.skill_names[:3], train_sizes=spec.train_sizes[:3]
    )
    with pytest.raises(MosgymError, match="same skills"):
        agent.setup(three, 0)
