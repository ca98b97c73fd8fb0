"""DDP vs FSDP on W ranks (gloo on CPU, NCCL on GPUs): what each rank holds, and step time.

    python bench/parallel.py                      # 2 CPU ranks, a 4-layer 256-wide model
    python bench/parallel.py --ranks 8 --set model.name=Qwen/Qwen1.5-0.5B --set model.device=auto

For each mode the same torchrun job trains `--steps` steps of the embedded default env and every
rank reports the bytes of the parameters, AdamW moments and initial-weights copy it holds (its
local shards under FSDP: an exact count, not a sampled RSS) and the wall time of the steps.
Ratios FSDP / DDP are printed side by side. On a 2-core CPU the timing says nothing about GPUs
(gloo all-gathers in fp32 on the same cores that compute); the memory figures do carry over.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = [
    "model.hidden_size=256",
    "model.num_layers=4",
    "model.num_heads=4",
    "model.intermediate_size=688",
    "train.batch_size=8",
    "train.grad_accum=1",
]


def rank_main(out: Path, steps: int, overrides: list[str]) -> None:
    import numpy as np
    from torch.distributed.tensor import DTensor

    from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
    from mosgym.learner import distributed

    env = MixtureOfSkillsEnv(REPO / "envs" / "skills-tiny.yaml", overrides)
    learner = env.learner
    learner.reset(0)
    uniform = np.full(len(learner.skills), 1 / len(learner.skills))
    learner.train(uniform, 1)  # warm-up; AdamW state exists from here
    distributed.barrier()
    t0 = time.perf_counter()
    learner.train(uniform, steps)
    distributed.barrier()
    wall = time.perf_counter() - t0

    def local_bytes(t: object) -> int:
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()  # type: ignore[attr-defined]

    params = learner._params()
    moments = [v for s in learner.optimizer.state.values() for v in s.values() if v.dim() > 0]
    report = {
        "params": sum(local_bytes(p) for p in params),
        "adam": sum(local_bytes(v) for v in moments),
        "init_copy": sum(local_bytes(v) for v in learner._init_state.values()),
        "n_params": sum(p.numel() for p in params),
        "step_s": wall / steps,
    }
    (out / f"rank{distributed.rank()}.json").write_text(json.dumps(report))
    distributed.teardown()


def launch(ranks: int, parallel: str, steps: int, sets: list[str], tmp: Path) -> list[dict]:
    out = tmp / parallel
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks)]
    cmd += ["--master-port", str(port), __file__, "--rank-out", str(out), "--steps", str(steps)]
    for s in [*MODEL, *sets, f"train.parallel={parallel}"]:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{parallel} run failed:\n{proc.stderr[-3000:]}")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], help="env override (repeatable)")
    parser.add_argument("--rank-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = [*MODEL, *args.set]
    if args.rank_out is not None:  # inside torchrun
        rank_main(args.rank_out, args.steps, args.set)
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            m: launch(args.ranks, m, args.steps, args.set, Path(tmp)) for m in ("ddp", "fsdp")
        }
    n = results["ddp"][0]["n_params"]
    print(f"{args.ranks} ranks, {n / 1e6:.2f}M parameters, {args.steps} steps; {overrides}")
    print(f"{'per rank (max over ranks)':28s} {'ddp':>12s} {'fsdp':>12s} {'fsdp/ddp':>9s}")
    for key, unit, scale in [
        ("params", "MiB", 2**20),
        ("adam", "MiB", 2**20),
        ("init_copy", "MiB", 2**20),
        ("step_s", "s", 1),
    ]:
        d = max(r[key] for r in results["ddp"]) / scale
        f = max(r[key] for r in results["fsdp"]) / scale
        print(f"{key + ' (' + unit + ')':28s} {d:12.3f} {f:12.3f} {f / d:9.3f}")


if __name__ == "__main__":
    main()
