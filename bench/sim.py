"""Speed of the simulator: env steps per second, single and batched, and SB3 PPO wall time.

    python bench/sim.py                          # learner, env and batch figures (~20 s)
    python bench/sim.py --ppo 100000             # plus PPO for 100k timesteps (minutes)
    python bench/sim.py --config envs/sim-skills-tiny.yaml --reward diff --n-envs 256

Figures (env steps per CPU-second of this process, so a busy shared machine does not skew
them; one env step = S optimizer steps of the simulated learner):
- learner: SimLearner through the Learner API alone (train + one probe per skill + dev loss
  + the reward computation of mosgym.rewards), what any env step on it must at least cost;
- env: mosgym/MoSSim-v0 (MixtureOfSkillsEnv + SimLearner), random actions;
- batch: BatchSim with M runs stepped together (vectorised numpy), per run-step (M=1: the
  batched form as a single env);
- ppo: SB3 PPO("MlpPolicy") wall time for N timesteps on the single env (DummyVecEnv) and on
  SimVecEnv (8 runs in one process), torch limited to --threads threads.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Env steps per CPU-second of `fn` (which returns how many env steps it took), ~seconds."""
    fn()  # warm-up
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        done += fn()
    return done / (time.process_time() - start)


def bench_learner(config: str, reward: str, seconds: float) -> float:
    from mosgym.config import RewardConfig, load_env_config
    from mosgym.rewards import RewardComputer
    from mosgym.sim.learner import SimLearner

    cfg = load_env_config(config)
    lr = SimLearner.from_config(cfg, seed=0, where=config)
    rc = RewardComputer(RewardConfig(type=reward), lr.skill_names, cfg.train.probe_size)
    mix = np.full(len(lr.skill_names), 1.0 / len(lr.skill_names))
    n_steps = cfg.train.total_steps // cfg.train.interval

    def episode() -> int:
        lr.reset(0)
        rc.reset()
        for _ in range(n_steps):
            stats = lr.train(mix, cfg.train.interval)
            dev = lr.dev_loss()
            rc.compute(lr, stats, dev, dev, dev)
        return n_steps

    return rate(episode, seconds)


def bench_env(config: str, reward: str, seconds: float) -> float:
    import gymnasium as gym

    import mosgym  # noqa: F401

    env = gym.make("mosgym/MoSSim-v0", config=config, reward={"type": reward})
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(64)]

    def episode() -> int:
        env.reset(seed=0)
        n, done = 0, False
        while not done:
            done = env.step(actions[n % 64])[2]
            n += 1
        return n

    return rate(episode, seconds)


def bench_batch(config: str, reward: str, n_envs: int, seconds: float) -> float:
    from mosgym.sim.batch import BatchSim

    batch = BatchSim(config, n_envs, seed=0, reward={"type": reward})
    actions = np.random.default_rng(0).uniform(-1, 1, (16, n_envs, batch.n))
    k = [0]

    def step() -> int:
        batch.step(actions[k[0] % 16])
        k[0] += 1
        return n_envs

    return rate(step, seconds)


def bench_ppo(
    config: str, reward: str, timesteps: int, threads: int
) -> dict[str, tuple[float, float]]:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    import mosgym  # noqa: F401
    from mosgym.sim.batch import SimVecEnv

    torch.set_num_threads(threads)
    out = {}
    makers = {
        "single env (DummyVecEnv)": lambda: DummyVecEnv(
            [lambda: gym.make("mosgym/MoSSim-v0", config=config, reward={"type": reward})]
        ),
        "SimVecEnv x8": lambda: SimVecEnv(config, n_envs=8, seed=0, reward={"type": reward}),
    }
    for name, make in makers.items():
        venv = make()
        start, cpu = time.perf_counter(), time.process_time()
        n_steps = 2048 // venv.num_envs
        PPO("MlpPolicy", venv, n_steps=n_steps, seed=0, device="cpu").learn(timesteps)
        out[name] = (time.perf_counter() - start, time.process_time() - cpu)
        print(
            f"PPO {timesteps} timesteps, {name}: {out[name][0]:.1f} s wall, "
            f"{out[name][1]:.1f} s CPU",
            flush=True,
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "envs" / "sim-skills-tiny.yaml"))
    p.add_argument("--reward", default="cossim")
    p.add_argument("--n-envs", type=int, nargs="+", default=[1, 64, 256])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--ppo", type=int, default=0, help="PPO timesteps (0: skip)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads for PPO (1 is fastest for a tiny MLP)"
    )
    a = p.parse_args()
    print(f"config {a.config}, reward {a.reward}; env steps per CPU-second", flush=True)
    print(f"learner API only     {bench_learner(a.config, a.reward, a.seconds):>10,.0f} steps/s")
    print(f"MoSSim-v0 env        {bench_env(a.config, a.reward, a.seconds):>10,.0f} steps/s")
    for m in a.n_envs:
        print(f"BatchSim M={m:<9} {bench_batch(a.config, a.reward, m, a.seconds):>10,.0f} steps/s")
    if a.ppo:
        bench_ppo(a.config, a.reward, a.ppo, a.threads)


if __name__ == "__main__":
    main()
