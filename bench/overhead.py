"""MoS overhead: a MoS run against a static run that replays its mixture path, same seed.

For every repeat r (seed r) and MoS variant (COSSIM, DIFF), the MoS run records the actions it
gives the env; then a static agent with reward 'none' replays them with the same seed. The
mixtures are then the same bit for bit, hence the same batches (checked: tokens and examples
per skill equal at every env step), so the two runs differ only by what MoS adds: probes, the
initial-model NLL (DIFF), reward math and the scorer's Adam steps. Each pair runs back to back
and the variants alternate, so a change in machine load hits both members of a pair.

Two figures per variant:
- measured: MoS wall / replay wall, per pair; median and range over the repeats;
- in-run: from the MoS run's own phase timers (mosgym.timing), total / (total - MoS phases),
  the MoS run's time over its time without the MoS phases; it needs no second run and no
  quiet machine. (Its reciprocal, (total - MoS phases) / total, is the static run's share.)
They should agree within their spread; the output says whether they do.

    python bench/overhead.py --threads 1                 # tiny model, CPU, built-in skills
    python bench/overhead.py --steps 300 --set model.hidden_size=1024   # GPU, paper cadence

The paper's cadence is the default: probe 64 examples per skill, S = 100, batch 64; it reports
about 1.20 for its code; our goal is <= 1.03.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mosgym import timing
from mosgym.agents import load_agent_config, make_agent
from mosgym.agents.static import RecordActions
from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
from mosgym.experiment.episode import EpisodeLog, RecordEpisode, run_episode

VARIANTS = {
    "mos-cossim": {"name": "mos-cossim", "kind": "mos", "reward": {"type": "cossim"}},
    "mos-diff": {"name": "mos-diff", "kind": "mos", "reward": {"type": "diff"}},
}


@dataclass
class Run:
    wall: float
    seconds: dict[str, float]
    episode: EpisodeLog
    actions: list[Any] = field(default_factory=list)

    @property
    def mos_seconds(self) -> float:
        return sum(self.seconds[p] for p in timing.MOS_PHASES)

    @property
    def in_run_ratio(self) -> float:
        total = sum(self.seconds.values())
        return total / (total - self.mos_seconds)


def one_run(base: MixtureOfSkillsEnv, agent_cfg: dict[str, Any], seed: int) -> Run:
    """One episode with its phase timer on (model and data already built: only the run is
    timed). The agent's warm-up (MoS: fitting the prior) happens before the clock starts."""
    cfg = load_agent_config(agent_cfg)
    env = MixtureOfSkillsEnv(base.config, learner=base.learner, reward=cfg.reward)
    agent = RecordActions(make_agent(cfg))
    agent.setup(env.spec_info, seed)
    if hasattr(env.learner, "_init_cache"):
        # DIFF's initial-model NLL cache outlives resets; clear it so every run pays for it,
        # as a fresh run would.
        env.learner._init_cache.clear()
    sync = timing.device_sync(getattr(env.learner, "device", None))
    timer = timing.PhaseTimer(sync=sync)
    if sync is not None:
        sync()
    t0 = time.perf_counter()
    timer.start()
    with timing.active(timer):
        ep = run_episode(RecordEpisode(env), agent, seed)
    timer.stop()
    wall = time.perf_counter() - t0
    return Run(wall, dict(timer.seconds), ep, agent.actions)


def same_examples(a: EpisodeLog, b: EpisodeLog) -> bool:
    """Tokens and examples drawn per skill equal at every env step (and the same mixtures)."""
    return all(
        np.array_equal(np.array(getattr(a, k)), np.array(getattr(b, k)))
        for k in ("mixture", "examples", "tokens")
    )


def warm_up(env: MixtureOfSkillsEnv) -> None:
    """Allocator, kernels and lazy imports, before anything is timed."""
    learner = env.learner
    n = len(env.skill_names)
    learner.reset(0)
    learner.train(np.full(n, 1.0 / n), 2)
    learner.probe(0, env.config.train.probe_size, with_initial=True)
    learner.dev_loss()


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def report(pairs: dict[str, list[tuple[Run, Run]]]) -> None:
    """The per-variant figures, and whether the two estimates agree."""
    print(
        f"\n{'variant':<11} {'measured MoS/replay':>26}   {'in-run total/(total-MoS)':>26}   agree"
    )
    for v, runs in pairs.items():
        measured = spread([m.wall / r.wall for m, r in runs])
        in_run = spread([m.in_run_ratio for m, _ in runs])
        overlap = max(measured[1], in_run[1]) <= min(measured[2], in_run[2])
        cell = "{:.3f} [{:.3f}, {:.3f}]"
        verdict = "yes: the ranges overlap" if overlap else "NO: the ranges do not overlap"
        if len(runs) == 1:
            verdict = "unknown: one repeat has no spread"
        print(f"{v:<11} {cell.format(*measured):>26}   {cell.format(*in_run):>26}   {verdict}")
    print("\nphase breakdown (median seconds over the repeats; MoS phases: "
          f"{', '.join(timing.MOS_PHASES)}):")  # fmt: skip
    print(f"{'run':<18}" + "".join(f"{p:>14}" for p in timing.PHASES))
    for v, runs in pairs.items():
        for label, k in ((v, 0), (f"replay {v[4:]}", 1)):
            med = [statistics.median(pair[k].seconds[p] for pair in runs) for p in timing.PHASES]
            print(f"{label:<18}" + "".join(f"{s:>14.2f}" for s in med))
    print("goal: ratio <= 1.03 (the paper: about 1.20)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="envs/skills-tiny.yaml")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run (T)")
    p.add_argument("--interval", type=int, default=100, help="S")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--probe", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
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
        f" torch threads {torch.get_num_threads()}, {args.repeats} repeats"
    )
    warm_up(env)
    pairs: dict[str, list[tuple[Run, Run]]] = {v: [] for v in args.variants}
    print(f"{'variant':<11} {'seed':>4} {'MoS s':>8} {'replay s':>9} {'ratio':>6} "
          f"{'in-run':>7} {'MoS phases s':>13}  same examples")  # fmt: skip
    for r in range(args.repeats):
        order = args.variants if r % 2 == 0 else args.variants[::-1]
        for v in order:
            mos = one_run(env, VARIANTS[v], seed=r)
            replay_cfg = {"name": f"replay-{v}", "kind": "static", "reward": {"type": "none"},
                          "params": {"replay": mos.actions}}  # fmt: skip
            replay = one_run(env, replay_cfg, seed=r)
            same = same_examples(mos.episode, replay.episode)
            print(
                f"{v:<11} {r:>4} {mos.wall:>8.2f} {replay.wall:>9.2f} "
                f"{mos.wall / replay.wall:>6.3f} {mos.in_run_ratio:>7.3f} "
                f"{mos.mos_seconds:>13.2f}  {'yes' if same else 'NO'}",
                flush=True,
            )
            if not same:
                raise SystemExit("the replay drew other examples than the MoS run: not comparable")
            pairs[v].append((mos, replay))
    report(pairs)
    if torch.cuda.is_available():
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
