"""Training throughput: the env's learner vs a plain Hugging Face Trainer, same updates.

The learner draws its batches from a fixed mixture; the exact examples of every step are then
handed, in order, to a `transformers.Trainer` with the same model initialisation, optimizer
(AdamW, same weight-decay groups), schedule, clipping and batch size. Both are timed after a
warm-up, interleaved, and compared in tokens per second (all tokens of the batch, padding
excluded). On CUDA both run bf16 mixed precision; MFU = 6 * params * tokens/s / peak.

    python bench/throughput.py                          # tiny model on CPU
    python bench/throughput.py --env envs/mos-demo-smollm2.yaml --batch 16 --steps 40  # GPU
    python bench/throughput.py --env envs/skills-smollm2.yaml --batch 8 --steps 20 --warmup 4 \
        --threads 1 [--set train.fused_adamw=true]                  # SmolLM2 on CPU
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from mosgym.config import load_env_config
from mosgym.envs.mixture_of_skills import build_learner
from mosgym.learner.hf import TRAIN, HFLearner

# Dense bf16 peak of the GPUs we report MFU for (spec sheets, FLOP/s).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def record_batches(learner: HFLearner, mixture: np.ndarray, steps: int) -> list[np.ndarray]:
    """The global example indices of each of the next `steps` batches, as the learner draws
    them (drawing advances only the sampler, not the model)."""
    return [learner._draw_batch(mixture)[1] for _ in range(steps)]


class _Batches(torch.utils.data.Dataset):
    """The recorded examples in order, one item per example (the Trainer batches them)."""

    def __init__(self, learner: HFLearner, batches: list[np.ndarray]) -> None:
        data = learner._data[TRAIN]
        self.items = []
        for index in batches:
            for i in index:
                a, n = data.offsets[i], data.lengths[i]
                self.items.append((data.ids[a : a + n], data.labels[a : a + n]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ids, labels = self.items[i]
        return {"input_ids": ids.tolist(), "labels": labels.tolist()}


class _Timer(TrainerCallback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1 = warmup, 0.0, 0.0

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if state.global_step == self.warmup:
            self.t0 = time.perf_counter()
        self.t1 = time.perf_counter()


def _collate(pad_id: int):  # noqa: ANN202
    def collate(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[b, :n], labels[b, :n], mask[b, :n] = (
                torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1,
            )  # fmt: skip
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def fused_adamw(learner: HFLearner) -> bool:
    return bool(learner.optimizer.defaults.get("fused"))


def time_trainer(learner: HFLearner, batches: list[np.ndarray], warmup: int) -> float:
    """Seconds for the Trainer's steps after `warmup`, on a fresh copy of the initial model."""
    learner.reset(0)  # initial weights back in the shared model object
    cfg = learner.cfg
    bf16 = learner.loaded.autocast_dtype == torch.bfloat16
    args = TrainingArguments(
        output_dir="/tmp/mosgym-bench-trainer",
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        # transformers 5 takes warm-up as steps (a float < 1 is read as a ratio)
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="linear",
        max_grad_norm=cfg.max_grad_norm,
        max_steps=len(batches),
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        bf16=bf16,
        use_cpu=learner.device.type == "cpu",
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
        # The same AdamW kernel as the learner's (the Trainer's default is the fused one, which
        # the learner uses on CPU only with train.fused_adamw=true): the same updates, timed.
        optim="adamw_torch_fused" if fused_adamw(learner) else "adamw_torch",
    )
    timer = _Timer(warmup)
    trainer = Trainer(
        model=learner.model,
        args=args,
        train_dataset=_Batches(learner, batches),
        data_collator=_collate(learner.pad_id),
        callbacks=[timer],
    )
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(
        trainer.train_dataset
    )
    trainer.train()
    return timer.t1 - timer.t0


def time_learner(learner: HFLearner, batches: list[np.ndarray], warmup: int) -> float:
    """Seconds for the learner's own training steps on the same batches, after `warmup`."""
    learner.reset(0)
    learner.model.train()
    t0 = 0.0
    with learner._rng_stream("_torch_train"), learner.loaded.autocast():
        for k, index in enumerate(batches):
            if k == warmup:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            learner._train_step(index[learner._micro_batch_order(index)], np.arange(len(index)))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="envs/skills-tiny.yaml")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. model.hidden_size=1024")  # fmt: skip
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_env_config(
        args.env,
        [f"train.batch_size={args.batch}", f"train.total_steps={args.steps}", "train.interval=1"]
        + args.set,
    )
    learner = build_learner(cfg, seed=0)
    n = len(learner.skill_names)
    batches = record_batches(learner, np.full(n, 1.0 / n), args.steps)
    lengths = learner._data[TRAIN].lengths
    tokens = sum(int(lengths[b].sum()) for b in batches[args.warmup :])
    mean_len = tokens / ((args.steps - args.warmup) * args.batch)
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(tokens / time_learner(learner, batches, args.warmup))
        theirs.append(tokens / time_trainer(learner, batches, args.warmup))
    a, b = statistics.median(ours), statistics.median(theirs)
    n_params = learner.loaded.n_params
    print(
        f"model {cfg.model.name} ({n_params / 1e6:.2f}M params) on {learner.device}, "
        f"batch {args.batch} (mean {mean_len:.0f} tokens/example), "
        f"{args.steps - args.warmup} timed steps, {args.repeats} repeats, "
        f"{'fused' if fused_adamw(learner) else 'default (for-loop)'} AdamW kernel in both"
    )
    print(f"mosgym learner : {a:>12,.0f} tokens/s  ({6 * n_params * a / 1e12:.3f} TFLOP/s)")
    print(f"HF Trainer     : {b:>12,.0f} tokens/s  ({6 * n_params * b / 1e12:.3f} TFLOP/s)")
    print(f"ratio (learner / Trainer): {a / b:.3f}   goal >= 1.0")
    if learner.device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        if peak:
            print(
                f"MFU ({name}, dense bf16 peak {peak / 1e12:.0f} TFLOP/s): "
                f"learner {6 * n_params * a / peak:.1%}, Trainer {6 * n_params * b / peak:.1%}"
            )


if __name__ == "__main__":
    main()
