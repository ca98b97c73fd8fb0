"""Speed of the simulator: env steps per second, single and batched, and SB3 PPO wall time.

    python bench/sim.py                          # all figures, PPO for 1M steps (~3 min)
    python bench/sim.py --ppo 0                  # without PPO (~40 s)
    python bench/sim.py --config envs/sim-skills-tiny.yaml --reward diff --n-envs 256

Figures (env steps per CPU-second of this process, so a busy shared machine skews them less;
one env step = S optimizer steps of the simulated learner):
- learner: SimLearner through the Learner API alone (train + the reward computation of
  mosgym.rewards + dev loss), what any env step on it must at least cost;
- MoSSim-v0 and CartPole-v1: both through gym.make (so both behind gymnasium's checker and
  order-enforcing wrappers), random actions, an episode per reset(seed=0); measured in
  alternating short windows and compared by the median of the per-window ratios, so load
  from other processes hits both alike. The issue's target: ratio >= 0.15;
- batch: BatchSim with M runs stepped together (vectorised numpy), per run-step;
- ppo: SB3 PPO("MlpPolicy") wall and CPU time for N timesteps on SimVecEnv (--ppo-envs runs
  in one process, rollouts of --ppo-steps per run, minibatches of --ppo-batch, 10 epochs),
  torch limited to --threads threads. The target: 1M timesteps in under 5 minutes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _episodes(make: Callable[[], Any]) -> Callable[[float], float]:
    """A function measuring `make()`'s env steps per CPU-second over a window of ~seconds."""
    env = make()
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(64)]

    def episode() -> int:
        env.reset(seed=0)
        n, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(actions[n % 64])
            done, n = terminated or truncated, n + 1
        return n

    return lambda seconds: rate(episode, seconds)


def bench_env_vs_cartpole(
    config: str, reward: str, seconds: float, rounds: int = 10
) -> tuple[float, float, float]:
    """(MoSSim-v0 steps/s, CartPole-v1 steps/s, median ratio), in alternating windows."""
    import gymnasium as gym

    import mosgym  # noqa: F401

    sim = _episodes(lambda: gym.make("mosgym/MoSSim-v0", config=config, reward={"type": reward}))
    cartpole = _episodes(lambda: gym.make("CartPole-v1"))
    pairs = [(sim(seconds / rounds), cartpole(seconds / rounds)) for _ in range(rounds)]
    return (
        statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs),
        statistics.median(p[0] / p[1] for p in pairs),
    )


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
    config: str, reward: str, timesteps: int, n_envs: int, n_steps: int, batch: int, threads: int
) -> tuple[float, float]:
    """(wall, CPU) seconds of SB3 PPO for `timesteps` on SimVecEnv with n_envs runs."""
    import torch
    from stable_baselines3 import PPO

    import mosgym  # noqa: F401
    from mosgym.sim.batch import SimVecEnv

    torch.set_num_threads(threads)
    venv = SimVecEnv(config, n_envs=n_envs, seed=0, reward={"type": reward})
    start, cpu = time.perf_counter(), time.process_time()
    model = PPO(
        "MlpPolicy", venv, n_steps=n_steps, batch_size=batch, n_epochs=10, seed=0, device="cpu"
    )
    model.learn(timesteps)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "envs" / "sim-skills-tiny.yaml"))
    p.add_argument("--reward", default="cossim")
    p.add_argument("--n-envs", type=int, nargs="+", default=[1, 64, 256])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--ppo", type=int, default=1_000_000, help="PPO timesteps (0: skip)")
    p.add_argument("--ppo-envs", type=int, default=256, help="SimVecEnv runs for PPO")
    p.add_argument("--ppo-steps", type=int, default=32, help="PPO n_steps (per run)")
    p.add_argument("--ppo-batch", type=int, default=1024, help="PPO minibatch size")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads for PPO (1 is fastest for a tiny MLP)"
    )
    a = p.parse_args()
    print(f"config {a.config}, reward {a.reward}; env steps per CPU-second", flush=True)
    print(f"learner API only     {bench_learner(a.config, a.reward, a.seconds):>10,.0f} steps/s")
    sim, cartpole, ratio = bench_env_vs_cartpole(a.config, a.reward, 4 * a.seconds)
    print(f"MoSSim-v0 env        {sim:>10,.0f} steps/s")
    print(f"CartPole-v1 env      {cartpole:>10,.0f} steps/s")
    print(f"MoSSim / CartPole    {ratio:>10.3f} (median of alternating windows; target 0.15)")
    for m in a.n_envs:
        print(f"BatchSim M={m:<9} {bench_batch(a.config, a.reward, m, a.seconds):>10,.0f} steps/s")
    if a.ppo:
        wall, cpu = bench_ppo(
            a.config, a.reward, a.ppo, a.ppo_envs, a.ppo_steps, a.ppo_batch, a.threads
        )
        print(
            f"PPO {a.ppo:,} timesteps on SimVecEnv x{a.ppo_envs} (n_steps {a.ppo_steps}, batch "
            f"{a.ppo_batch}, 10 epochs, {a.threads} torch thread): {wall:.1f} s wall, "
            f"{cpu:.1f} s CPU (target: under 300 s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
