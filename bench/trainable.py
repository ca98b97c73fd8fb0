"""What to train on a small LLM on CPU: full fine-tuning vs frozen embeddings vs LoRA.

One learner per variant on the same env config; each repeat resets every learner and trains
it for the same steps on the same batches (the sampler is seeded by the run seed, not by what
is trained), alternating variants so that machine noise hits them alike. Reports the median
seconds per optimizer step, its ratio to full fine-tuning, and the mean dev loss after the
steps (a cheaper step is only worth it if the model still learns).

    python bench/trainable.py                                  # SmolLM2 (skills-smollm2), 1 thread
    python bench/trainable.py --env envs/skills-tiny.yaml --steps 40
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mosgym.config import load_env_config
from mosgym.envs.mixture_of_skills import build_learner

VARIANTS = {
    "full fine-tuning": [],
    "frozen embeddings": ["model.freeze_embeddings=true"],
    "LoRA r=16 (all linear)": ["model.lora_r=16", "model.lora_alpha=32"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="envs/skills-smollm2.yaml")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr-lora", type=float, default=1e-3, help="LoRA's usual larger lr")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    learners, seconds = {}, {}
    for name, sets in VARIANTS.items():
        extra = [f"train.lr={args.lr_lora}"] if "LoRA" in name else []
        cfg = load_env_config(args.env, [f"train.total_steps={args.steps + 1}", *sets, *extra])
        learners[name] = build_learner(cfg, seed=0)
        seconds[name] = []
    n = len(next(iter(learners.values())).skill_names)
    uniform = np.full(n, 1.0 / n)
    initial_dev = float(np.nanmean(next(iter(learners.values())).dev_loss()))
    for _ in range(args.repeats):
        for name, learner in learners.items():
            learner.reset(0)
            learner.train(uniform, 1)  # warm-up step (allocations), not timed
            t0 = time.perf_counter()
            learner.train(uniform, args.steps)
            seconds[name].append((time.perf_counter() - t0) / args.steps)
    full = statistics.median(seconds["full fine-tuning"])
    first = next(iter(learners.values()))
    print(
        f"{args.env}: {first.loaded.n_params / 1e6:.1f}M parameters, batch "
        f"{first.cfg.batch_size}, {args.steps} timed steps x {args.repeats} repeats, "
        f"{args.threads} thread(s); mean dev loss at init {initial_dev:.3f}"
    )
    print(f"{'variant':<24} {'trained':>9} {'s/step':>8} {'vs full':>8} {'dev loss after':>15}")
    for name, learner in learners.items():
        trained = sum(q.numel() for q in learner.model.parameters() if q.requires_grad)
        step = statistics.median(seconds[name])
        dev = float(np.nanmean(learner.dev_loss()))  # after the last repeat's steps
        print(f"{name:<24} {trained / 1e6:>8.2f}M {step:>8.2f} {step / full:>8.3f} {dev:>15.3f}")


if __name__ == "__main__":
    main()
