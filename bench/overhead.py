"""MoS overhead: wall time of a run with the MoS scorer / the same run with a static mixture.

The paper's cadence: probe of 64 examples per skill, S = 100 steps between scorer updates,
training batch 64; the paper reports about 1.20 for its code. Runs are interleaved (static,
COSSIM, DIFF, static, ...) and the medians compared, so machine noise hits all alike.

    python bench/overhead.py                       # tiny model, CPU, built-in skills
    python bench/overhead.py --env envs/mos-demo-smollm2.yaml --steps 300 --batch 16  # GPU

The static run uses reward 'none' (a static mixture needs no reward), so the ratio is the full
cost of MoS: probes, initial-model NLL for DIFF, reward math and the scorer's 200 Adam steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mosgym.agents import load_agent_config, make_agent
from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
from mosgym.experiment.episode import RecordEpisode, run_episode

VARIANTS = {
    "static": {"name": "static-temp", "kind": "static", "reward": {"type": "none"},
               "params": {"tau": 10}},
    "mos-cossim": {"name": "mos-cossim", "kind": "mos", "reward": {"type": "cossim"}},
    "mos-diff": {"name": "mos-diff", "kind": "mos", "reward": {"type": "diff"}},
}  # fmt: skip


def one_run(base: MixtureOfSkillsEnv, variant: str, seed: int) -> float:
    """Wall seconds of one episode (model and data already built: only the run is timed)."""
    agent_cfg = load_agent_config(VARIANTS[variant])
    env = MixtureOfSkillsEnv(
        base.config, learner=base.learner, reward={"type": agent_cfg.reward.type}
    )
    agent = make_agent(agent_cfg)
    agent.setup(env.spec_info, seed)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    run_episode(RecordEpisode(env), agent, seed)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="envs/skills-tiny.yaml")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run (T)")
    p.add_argument("--interval", type=int, default=100, help="S")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--probe", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. model.hidden_size=1024")  # fmt: skip
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [
        f"train.total_steps={args.steps}",
        f"train.interval={args.interval}",
        f"train.batch_size={args.batch}",
        f"train.probe_size={args.probe}",
        f"train.eval_batch_size={args.probe}",
        "train.n_eval_generate=0",
        *args.set,
    ]
    env = MixtureOfSkillsEnv(args.env, overrides=overrides)
    print(
        f"env {env.config.name}: {len(env.skill_names)} skills, T={args.steps}, S={args.interval},"
        f" batch {args.batch}, probe {args.probe}/skill, device {env.learner.device},"
        f" torch threads {torch.get_num_threads()}"
    )
    one_run(env, "static", 0)  # warm-up (allocator, kernels, lazy imports)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        for v in VARIANTS:
            # DIFF's initial-model NLL cache outlives resets; clear it so every DIFF run pays
            # for it, as a fresh run would.
            env.learner._init_cache.clear()
            times[v].append(one_run(env, v, seed=r))
    base = statistics.median(times["static"])
    print(f"{'variant':<12} {'median s':>9}  {'ratio':>6}   runs")
    for v, ts in times.items():
        runs = " ".join(f"{t:.2f}" for t in ts)
        med = statistics.median(ts)
        print(f"{v:<12} {med:>9.2f}  {med / base:>6.3f}   {runs}")
    print("goal: ratio <= 1.03 (the paper: about 1.20)")
    if torch.cuda.is_available():
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
