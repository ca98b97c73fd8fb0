"""MoS inside a transformers Trainer: wall time with the MixtureCallback / the same Trainer
with a static mixture and no callback.

The paper's cadence: a probe of 64 examples per skill and a scorer update every S = 100
optimizer steps, training batch 64. The static run samples the uniform mixture (where MoS
starts, so both train on nearly the same data) from the same MixtureDataset, without the
callback; the MoS runs add everything the callback does (probes, the initial-model NLL for
DIFF, the reward, the scorer's 200 Adam steps, Trainer.log). Runs are interleaved (static,
COSSIM, DIFF, static, ...) and medians compared, so machine noise hits all alike. Also printed:
the process CPU-time ratio, and the callback's own share of each MoS run, as 1 + (time inside
the callback) / (the rest of the run): both steadier than wall time on a shared machine.

    python bench/trainer_overhead.py                  # tiny model, CPU, built-in skills
    python bench/trainer_overhead.py --steps 200 --repeats 2 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from mosgym.config import ModelConfig
from mosgym.data import Skill, default_skill_configs, load_skills
from mosgym.integrations import MixtureCallback, MixtureDataset, skill_examples
from mosgym.learner.model import load_model

VARIANTS = {
    "static": None,
    "mos-cossim": {"name": "mos-cossim", "kind": "mos", "reward": {"type": "cossim"}},
    "mos-diff": {"name": "mos-diff", "kind": "mos", "reward": {"type": "diff"}},
}


class TimedCallback(MixtureCallback):
    """MixtureCallback that adds up the wall time spent in its own events."""

    spent = 0.0

    def on_train_begin(self, *args: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        super().on_train_begin(*args, **kw)
        self.spent += time.perf_counter() - t0

    def on_step_end(self, *args: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        super().on_step_end(*args, **kw)
        self.spent += time.perf_counter() - t0


def one_run(
    skills: list[Skill], variant: str, a: argparse.Namespace, seed: int
) -> tuple[float, float, float]:
    """(wall, process CPU, wall inside the callback) seconds of `trainer.train()` (model, data
    and callback built before the clock)."""
    loaded = load_model(ModelConfig(name="tiny"), seed=0)
    mixture = MixtureDataset(skill_examples(skills), seed=seed)  # uniform to start with
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="mosgym-bench-"),
        max_steps=a.steps,
        per_device_train_batch_size=a.batch,
        learning_rate=1e-3,
        logging_steps=a.interval,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
    )
    collator = DataCollatorForSeq2Seq(loaded.tokenizer)
    trainer = Trainer(loaded.model, args, collator, mixture)
    callback = None
    if VARIANTS[variant] is not None:
        callback = TimedCallback(
            trainer,
            mixture,
            VARIANTS[variant],
            interval=a.interval,
            probe_size=a.probe,
            eval_batch_size=a.probe,
        )
        trainer.add_callback(callback)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    inside = 0.0 if callback is None else callback.spent
    return time.perf_counter() - t0, time.process_time() - c0, inside


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    p.add_argument("--interval", type=int, default=100, help="S")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--probe", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tokenizer = load_model(ModelConfig(name="tiny")).tokenizer
    skills = load_skills(default_skill_configs(), tokenizer, max_length=128, data_seed=0)
    print(
        f"Trainer, tiny model, {len(skills)} built-in skills, {a.steps} steps, S={a.interval},"
        f" batch {a.batch}, probe {a.probe}/skill, torch threads {torch.get_num_threads()},"
        f" {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    one_run(skills, "static", a, 0)  # warm-up (allocator, kernels, lazy imports)
    times: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
    for r in range(a.repeats):
        for v in VARIANTS:
            times[v].append(one_run(skills, v, a, seed=r))
    base = [statistics.median(t[k] for t in times["static"]) for k in (0, 1)]
    print(f"{'variant':<12} {'wall s':>8} {'ratio':>6} {'cpu s':>8} {'ratio':>6} {'inside':>7}")
    for v, ts in times.items():
        wall, cpu = (statistics.median(t[k] for t in ts) for k in (0, 1))
        inside = statistics.median(1 + t[2] / (t[0] - t[2]) for t in ts)
        ratios = f"{wall / base[0]:>6.3f} {cpu:>8.2f} {cpu / base[1]:>6.3f} {inside:>7.3f}"
        print(f"{v:<12} {wall:>8.2f} {ratios}   wall: {' '.join(f'{t[0]:.1f}' for t in ts)}")
    print("the paper: about 1.20 for its own code")


if __name__ == "__main__":
    main()
