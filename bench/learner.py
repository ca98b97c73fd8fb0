"""Benchmark: HFLearner overhead against a plain PyTorch loop, and the cost of a probe round.

Measured side by side in one process, in alternating repeats, reporting medians:
  1. time of `learner.train(mixture, steps)` / time of a minimal loop doing the same updates
     (same model init, the same batches pre-collated, AdamW, same schedule and clipping);
     goal <= 1.05.
  2. one full probe round (every skill, 64 examples, NLL + embeddings from one forward) relative
     to 100 training steps at batch 64; goal <= 5%.

    python bench/learner.py                 # tiny model, built-in skills, 1 thread
    python bench/learner.py --threads 2 --repeats 7
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from mosgym.config import ModelConfig, TrainConfig
from mosgym.data.types import IGNORE_INDEX, Skill, TokenizedSplit
from mosgym.learner.hf import HFLearner
from mosgym.learner.model import LoadedModel, load_model
from mosgym.learner.schedule import lr_factor


def builtin_or_synthetic_skills(loaded: LoadedModel) -> tuple[list[Skill], str]:
    """The built-in suite when the data layer provides it, else synthetic skills of ~35 tokens."""
    try:
        from mosgym.data import default_skill_configs, load_skills

        skills = load_skills(default_skill_configs(), loaded.tokenizer, 128, 0, cache_dir="")
        return skills, "built-in skills"
    except ImportError:
        return [_synthetic(loaded, f"s{i}", 2000, seed=i) for i in range(4)], "synthetic skills"


def _synthetic(loaded: LoadedModel, name: str, n: int, seed: int) -> Skill:
    rng = np.random.default_rng(seed)
    tok = loaded.tokenizer

    def split(k: int) -> TokenizedSplit:
        ids, labels, prompts, refs = [], [], [], []
        for _ in range(k):
            q = "".join(rng.choice(list("abcdefgh"), size=rng.integers(8, 20)))
            a = q[::-1][: rng.integers(4, 12)]
            chat = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            full = np.array(tok.apply_chat_template(chat, tokenize=True)["input_ids"])
            p = tok.apply_chat_template(chat[:1], tokenize=True, add_generation_prompt=True)
            prompt = np.array(p["input_ids"])
            label = full.copy()
            label[: len(prompt)] = IGNORE_INDEX
            ids.append(full)
            labels.append(label)
            prompts.append(prompt)
            refs.append(a)
        return TokenizedSplit([f"{name}/{i}" for i in range(k)], ids, labels, prompts, refs)

    return Skill(name, split(n), split(64), split(64), exact_match=True)


def plain_batches(learner: HFLearner, mixture: np.ndarray, steps: int) -> list[tuple]:
    """The exact batches `learner.train(mixture, steps)` will draw after reset(seed)."""
    twin = copy.copy(learner)
    twin.reset(learner.seed)  # same streams; only its sampler/RNG state is used here
    out = []
    for _ in range(steps):
        _, index = twin._draw_batch(mixture)
        batch = twin._data[0].batch(index, twin.pad_id, twin.device)
        out.append((batch, int(twin._data[0].n_response[index].sum())))
    return out


def plain_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def plain_loop(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    batches: list[tuple],
    first_step: int,
) -> torch.Tensor:
    """The reference: a minimal fine-tuning loop with the same optimizer, schedule, clipping."""
    model.train()
    losses = []
    for t, (batch, n_tokens) in enumerate(batches, start=first_step):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        targets = batch.labels[:, 1:].reshape(-1)
        v = logits.shape[-1]
        nll = F.cross_entropy(
            logits[:, :-1].reshape(-1, v).float(),
            targets,
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        loss = nll / n_tokens
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(t, cfg.total_steps, cfg.warmup_ratio)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return torch.stack(losses)


def timed_pair(
    learner: HFLearner,
    plain_model: torch.nn.Module,
    cfg: TrainConfig,
    mixture: np.ndarray,
    batches: list[tuple],
    chunk: int,
) -> tuple[float, float, float]:
    """(learner seconds, plain seconds, max |loss difference|) over len(batches) steps, the two
    alternating every `chunk` steps so that machine noise hits both alike."""
    opt = plain_optimizer(plain_model, cfg)
    t_learner = t_plain = 0.0
    ours, theirs = [], []
    for first in range(0, len(batches), chunk):
        n = min(chunk, len(batches) - first)
        start = time.perf_counter()
        ours.append(learner.train(mixture, n).step_losses)
        t_learner += time.perf_counter() - start
        start = time.perf_counter()
        theirs.append(plain_loop(plain_model, opt, cfg, batches[first : first + n], first).numpy())
        t_plain += time.perf_counter() - start
    diff = float(np.max(np.abs(np.concatenate(ours) - np.concatenate(theirs))))
    return t_learner, t_plain, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=10, help="steps per alternation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    loaded = load_model(ModelConfig(), seed=0)
    skills, source = builtin_or_synthetic_skills(loaded)
    total = args.steps * (args.repeats + 2)
    cfg = TrainConfig(
        total_steps=total, interval=args.steps, batch_size=args.batch, probe_size=64,
        eval_batch_size=64,
    )  # fmt: skip
    learner = HFLearner(skills, loaded, cfg, seed=0)
    mixture = np.ones(len(skills)) / len(skills)
    lengths = np.concatenate([s.train.lengths for s in skills])
    print(
        f"{source}: {len(skills)} skills, {len(lengths)} train examples, mean length "
        f"{lengths.mean():.1f} tokens; model {loaded.n_params / 1e6:.2f}M params on "
        f"{loaded.device}, {args.threads} thread(s); batch {args.batch}, {args.steps} steps"
    )
    initial = copy.deepcopy(loaded.model.state_dict())
    plain_model = copy.deepcopy(loaded.model)
    batches = plain_batches(learner, mixture, args.steps)

    start = time.perf_counter()
    for s in range(len(skills)):  # step 0: the whole episode's initial NLLs, computed once
        learner.probe(s, 64)
    init_cost = time.perf_counter() - start

    t_learner, t_plain, t_probe, max_diff = [], [], [], 0.0
    for _ in range(args.repeats):
        learner.reset(0)
        for s in range(len(skills)):
            learner.probe(s, 64)  # cached initial NLL: this round is like any later one
        plain_model.load_state_dict(initial)
        a, b, diff = timed_pair(learner, plain_model, cfg, mixture, batches, args.chunk)
        t_learner.append(a)
        t_plain.append(b)
        max_diff = max(max_diff, diff)

        start = time.perf_counter()
        for s in range(len(skills)):
            learner.probe(s, 64)
        t_probe.append(time.perf_counter() - start)

    med = statistics.median
    ratios = [a / b for a, b in zip(t_learner, t_plain, strict=True)]
    probe_share = [p / (a * 100 / args.steps) for p, a in zip(t_probe, t_learner, strict=True)]
    print(f"learner train   median {med(t_learner):.3f} s / {args.steps} steps")
    print(f"plain loop      median {med(t_plain):.3f} s / {args.steps} steps")
    print(f"time ratio      median {med(ratios):.3f} (goal <= 1.05); per repeat "
          + " ".join(f"{r:.3f}" for r in ratios))  # fmt: skip
    print(f"same updates    max |loss difference| {max_diff:.2e}")
    print(f"probe round     median {med(t_probe) * 1000:.1f} ms = {100 * med(probe_share):.2f}% "
          "of 100 training steps (goal <= 5%)")  # fmt: skip
    print(f"initial NLL of the whole probe plan (once per learner): {init_cost:.2f} s")


if __name__ == "__main__":
    main()
