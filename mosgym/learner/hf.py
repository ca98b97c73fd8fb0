"""HFLearner: a transformers causal LM fine-tuned on a mixture of skills.

One object owns the model, the AdamW optimizer with the paper's schedule, the data sampler and
every RNG stream, so `reset` and `state_dict` can restore all of it exactly.

Initial-model NLL (the DIFF reward's denominator) is cached by example (skill, split, row). At
reset the learner pre-draws the probe plan of the whole episode (which examples each probe round
of each skill will use: the draw never depends on the mixture). The first probe computes the
initial NLL of every planned example in batches, with the initial weights loaded from the CPU
copy that reset keeps anyway (no second model on the accelerator); probes outside the plan fill
the cache the same way. The cache outlives resets, since the initial model never changes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mosgym import timing
from mosgym.config import TrainConfig
from mosgym.data.types import Skill
from mosgym.errors import MosgymError
from mosgym.learner import distributed, sharded
from mosgym.learner.base import ProbeResult, TrainStats
from mosgym.learner.collate import (
    ModelCall,
    PackedSplit,
    probe_forward,
    response_nll,
)
from mosgym.learner.hf_eval import PROBE, TRAIN, EvalSignals
from mosgym.learner.model import LoadedModel
from mosgym.learner.schedule import (
    SkillSampler,
    check_mixture,
    check_train_config,
    child_seed,
    draw_probe_plan,
    generator_state,
    lr_factor,
    restore_generator,
    seeded_torch_state,
)

logger = logging.getLogger(__name__)


class HFLearner(EvalSignals):
    """The Learner protocol on a real transformers model (see mosgym.learner.base)."""

    def __init__(
        self, skills: list[Skill], loaded: LoadedModel, train: TrainConfig, seed: int = 0
    ) -> None:
        check_train_config(train, [len(x.probe) for x in skills])
        self.cfg = train
        self.skills = skills
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.pad_id = int(loaded.tokenizer.pad_token_id)
        self.skill_names = [s.name for s in skills]
        self.train_sizes = np.array([len(s.train) for s in skills], dtype=np.int64)
        self._data = {
            TRAIN: PackedSplit([s.train for s in skills]),
            PROBE: PackedSplit([s.probe for s in skills]),
        }
        self._dev = PackedSplit([s.dev for s in skills])
        self._dev_order = np.argsort(self._dev.lengths, kind="stable")
        # Under torchrun with parallel=fsdp every rank holds a shard of the model (and of the
        # initial weights below); with ddp the training forward goes through DDP while probes
        # and evaluation use the plain model. Either way each rank evaluates its share of the
        # examples.
        self._sharded = distributed.active() and train.parallel == "fsdp"
        self._call = ModelCall(self.model)
        if self._sharded:
            sharded.shard_model(self._call)
            self._train_call: torch.nn.Module = self._call
        else:
            self._train_call = distributed.wrap_for_training(self._call)
        self._init_state = sharded.local_weights(self._call)
        self._init_cache: dict[tuple[int, int], tuple[float, float]] = {}
        self.reset(seed)

    # ----------------------------------------------------------------------------------------
    # Episode state

    def reset(self, seed: int) -> None:
        """Initial weights, a fresh optimizer, step 0, and every RNG stream reseeded."""
        self.seed = seed
        sharded.load_local_weights(self._call, self._init_state)
        self.optimizer = self._make_optimizer()
        self.step = 0
        n = len(self.skills)
        self.consumed = np.zeros(n, dtype=np.int64)
        self.tokens_seen = np.zeros(n, dtype=np.int64)
        self._sampler = SkillSampler(self.train_sizes, child_seed(seed, 0))
        self._mix_rng = np.random.default_rng(child_seed(seed, 1))
        self._probe_rng = np.random.default_rng(child_seed(seed, 2))
        self._aux_rng = np.random.default_rng(child_seed(seed, 3))
        self._torch_train = seeded_torch_state(self.device, child_seed(seed, 4))
        self._torch_aux = seeded_torch_state(self.device, child_seed(seed, 5))
        self._plan = self._draw_probe_plan()
        self._probe_round = np.zeros(n, dtype=np.int64)
        self._at_init = True
        self.model.train()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW; like transformers' Trainer, no weight decay on biases and norm weights."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": self.cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        fused = self.cfg.fused_adamw
        if fused is None:
            fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=self.cfg.lr, fused=fused or None)

    def _draw_probe_plan(self) -> list[np.ndarray]:
        """The whole episode's probe examples: one round per scorer interval, plus step 0."""
        rounds = math.ceil(self.cfg.total_steps / self.cfg.interval) + 1
        sizes = [len(s.train if self._source == TRAIN else s.probe) for s in self.skills]
        if self._source == PROBE:  # the fixed held-out split: its first probe_size examples
            return [np.tile(np.arange(min(self.cfg.probe_size, n)), (rounds, 1)) for n in sizes]
        return draw_probe_plan(self._probe_rng, sizes, self.cfg.probe_size, rounds)

    @property
    def _source(self) -> int:
        return TRAIN if self.cfg.probe_source == "train" else PROBE

    # ----------------------------------------------------------------------------------------
    # Training

    @timing.timed(timing.TRAIN)
    def train(self, mixture: np.ndarray, n_steps: int) -> TrainStats:
        """`n_steps` AdamW steps on batches drawn from `mixture`; one host sync at the end."""
        p = check_mixture(mixture, self.skill_names)
        if n_steps < 0:
            raise MosgymError(f"train: n_steps must be >= 0, got {n_steps}")
        if self.step + n_steps > self.cfg.total_steps:
            logger.warning("training past train.total_steps: the learning rate is 0 there")
        batch = self.cfg.batch_size
        skills = np.zeros((n_steps, batch), dtype=np.int64)
        index = np.zeros((n_steps, batch), dtype=np.int64)
        order = np.zeros((n_steps, batch), dtype=np.int64)
        # Every rank draws the same global batch and trains on its positions of it.
        mine = distributed.shard_positions(batch)
        sums = torch.zeros((n_steps, len(mine)), dtype=torch.float32, device=self.device)
        self.model.train()
        with self._rng_stream("_torch_train"), self.loaded.autocast():
            for t in range(n_steps):
                skills[t], index[t] = self._draw_batch(p)
                order[t] = self._micro_batch_order(index[t])
                sums[t] = self._train_step(index[t][order[t]], mine)
        self._at_init = self._at_init and n_steps == 0
        local = {"sums": sums.cpu().numpy().astype(np.float64).T}  # the one host sync
        in_order = distributed.gather_rows(local, batch)["sums"].T
        per_example = np.zeros_like(in_order)
        np.put_along_axis(per_example, order, in_order, axis=1)
        return self._train_stats(skills, index, per_example)

    def _draw_batch(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(skill, global example index) of each of batch_size examples."""
        size = self.cfg.batch_size
        if self.cfg.sampling == "per_example":
            skills = self._mix_rng.choice(len(p), size=size, p=p)
        else:
            skills = np.full(size, self._mix_rng.choice(len(p), p=p))
        index = np.zeros(size, dtype=np.int64)
        for s in np.unique(skills):
            where = np.flatnonzero(skills == s)
            index[where] = self._data[TRAIN].starts[s] + self._sampler.draw(int(s), len(where))
        return skills, index

    def _micro_batch_order(self, index: np.ndarray) -> np.ndarray:
        """Batch positions in micro-batch order: by length when group_by_length, so each
        micro-batch pads little (the drawn examples never change)."""
        if self.cfg.group_by_length and self.cfg.grad_accum > 1:
            return np.argsort(self._data[TRAIN].lengths[index], kind="stable")
        return np.arange(len(index))

    def _train_step(self, index: np.ndarray, mine: np.ndarray) -> torch.Tensor:
        """One optimizer step over the global batch `index`, of which this rank trains the
        positions `mine` (all of them in one process), split into grad_accum consecutive
        micro-batches; returns those examples' response NLL sums (on the device, in order)."""
        data = self._data[TRAIN]
        total = max(int(data.n_response[index].sum()), 1)
        world = distributed.world_size()
        chunks = np.array_split(index[mine], min(self.cfg.grad_accum, len(mine)))
        parts = []
        for i, chunk in enumerate(chunks):
            with distributed.no_sync(self._train_call, skip=i < len(chunks) - 1):
                ex_sum = self._train_call(response_nll, data.batch(chunk, *self._pad))
                # Normalised by the whole global batch's response tokens: accumulation- and
                # rank-invariant loss; times W since DDP and FSDP average the ranks' gradients.
                loss = ex_sum.sum() / total
                (loss * world if world > 1 else loss).backward()
            parts.append(ex_sum.detach())
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self._params(), self.cfg.max_grad_norm)
        lr = self.cfg.lr * lr_factor(self.step, self.cfg.total_steps, self.cfg.warmup_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return torch.cat(parts).float()

    def _train_stats(self, skills: np.ndarray, index: np.ndarray, sums: np.ndarray) -> TrainStats:
        n = len(self.skills)
        resp = self._data[TRAIN].n_response[index]
        examples = np.bincount(skills.ravel(), minlength=n).astype(np.int64)
        tokens = np.bincount(skills.ravel(), weights=resp.ravel(), minlength=n).astype(np.int64)
        per_example = sums / np.maximum(resp, 1)
        loss_sum = np.bincount(skills.ravel(), weights=per_example.ravel(), minlength=n)
        step_losses = sums.sum(axis=1) / np.maximum(resp.sum(axis=1), 1)
        self.consumed += examples
        self.tokens_seen += tokens
        return TrainStats(examples, tokens, loss_sum, step_losses)

    # ----------------------------------------------------------------------------------------
    # Probes (rewards)

    @timing.timed(timing.PROBE)
    def probe(self, skill: int, n: int, with_initial: bool = True) -> ProbeResult:
        """Per-example NLL (current and, when `with_initial`, initial model) and embeddings of
        n probe examples."""
        self._check_skill(skill)
        if n < 1:
            raise MosgymError(f"probe: n must be >= 1, got {n}")
        code, local = self._probe_indices(skill, n)
        index = self._data[code].starts[skill] + local
        cur = self._probe_numbers(code, index)
        keep = np.isfinite(cur["nll"]) & np.isfinite(cur["seq_nll"])
        keep &= np.isfinite(cur["embeddings"]).all(axis=1)
        if with_initial:
            init_nll, init_seq = self._initial_nll(code, index)
            keep &= np.isfinite(init_nll) & np.isfinite(init_seq)
        else:
            init_nll = init_seq = np.full(len(index), np.nan)
        split = self.skills[skill].train if code == TRAIN else self.skills[skill].probe
        return ProbeResult(
            ids=[split.ids[i] for i in local[keep]],
            nll=cur["nll"][keep],
            init_nll=init_nll[keep],
            seq_nll=cur["seq_nll"][keep],
            init_seq_nll=init_seq[keep],
            embeddings=cur["embeddings"][keep].astype(np.float32),
            n_skipped=int((~keep).sum()),
        )

    def _probe_indices(self, skill: int, n: int) -> tuple[int, np.ndarray]:
        """The planned examples of this skill's next round, or a fresh draw when off-plan."""
        code = self._source
        r = int(self._probe_round[skill])
        self._probe_round[skill] += 1
        plan = self._plan[skill]
        if r < len(plan) and n == self.cfg.probe_size:
            return code, plan[r]
        size = len(self.skills[skill].train if code == TRAIN else self.skills[skill].probe)
        if code == PROBE:
            return code, np.arange(min(n, size))
        return code, self._probe_rng.choice(size, size=min(n, size), replace=False)

    def _probe_numbers(self, code: int, index: np.ndarray) -> dict[str, np.ndarray]:
        """probe_forward over `index` in eval mode, batched by eval_batch_size; under torchrun
        each rank computes its share and all get every row, in `index` order."""
        hidden = int(self.model.config.hidden_size)
        local = {"nll": np.zeros(0), "seq_nll": np.zeros(0), "embeddings": np.zeros((0, hidden))}
        outs = []
        with self._eval_mode(), self._no_grad(), self.loaded.autocast():
            for chunk, real in self._my_chunks(index):
                out = self._call(probe_forward, self._data[code].batch(chunk, *self._pad))
                if real:
                    outs.append(out)
        if outs:  # a rank may have none when there are more ranks than examples
            local = {
                k: torch.cat([getattr(o, k) for o in outs]).float().cpu().numpy() for k in local
            }
        return distributed.gather_rows(
            {k: v.astype(np.float64) for k, v in local.items()}, len(index)
        )

    @timing.timed(timing.INITIAL_NLL)
    def _initial_nll(self, code: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Initial-model (response, sequence) NLL of `index`, filling the cache on a miss with
        the whole episode's probe plan at once."""
        if any((code, int(i)) not in self._init_cache for i in index):
            starts = self._data[code].starts
            planned = [(starts[s] + p).ravel() for s, p in enumerate(self._plan)]
            rows = np.union1d(index, np.concatenate(planned))
            missing = np.array([i for i in rows if (code, int(i)) not in self._init_cache])
            with self._initial_weights():
                got = self._probe_numbers(code, missing.astype(np.int64))
            for i, a, b in zip(missing, got["nll"], got["seq_nll"], strict=True):
                self._init_cache[(code, int(i))] = (float(a), float(b))
        values = np.array([self._init_cache[(code, int(i))] for i in index]).reshape(-1, 2)
        return values[:, 0], values[:, 1]

    @contextlib.contextmanager
    def _initial_weights(self) -> Iterator[None]:
        """Temporarily load the initial weights (from the CPU copy), then restore the current."""
        if self._at_init:
            yield
            return
        current = sharded.local_weights(self._call)
        sharded.load_local_weights(self._call, self._init_state)
        try:
            yield
        finally:
            sharded.load_local_weights(self._call, current)

    # ----------------------------------------------------------------------------------------
    # Checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Everything that determines future numbers, as CPU tensors, arrays and plain data."""
        keys = list(self._init_cache)
        return {
            "skill_names": list(self.skill_names),
            "seed": self.seed,
            "model": sharded.full_weights(self._call),
            "optimizer": sharded.full_optimizer_state(self.optimizer),  # CPU copies
            "step": self.step,
            "consumed": self.consumed.copy(),
            "tokens_seen": self.tokens_seen.copy(),
            "sampler": self._sampler.state_dict(),
            "rngs": {k: generator_state(getattr(self, k)) for k in _NP_RNGS},
            "torch_rngs": {k: getattr(self, k).clone() for k in _TORCH_RNGS},
            "plan": [p.copy() for p in self._plan],
            "probe_round": self._probe_round.copy(),
            "at_init": self._at_init,
            "init_cache_keys": np.array(keys, dtype=np.int64).reshape(-1, 2),
            "init_cache_values": np.array([self._init_cache[k] for k in keys]).reshape(-1, 2),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; refuses one taken with other skills."""
        if list(state["skill_names"]) != self.skill_names:
            raise MosgymError(
                f"learner state is for skills {state['skill_names']}, not {self.skill_names}; "
                "resume with the same env config"
            )
        self.seed = state["seed"]
        sharded.load_full_weights(self._call, state["model"])
        self.optimizer = self._make_optimizer()
        sharded.load_full_optimizer_state(self.optimizer, state["optimizer"])
        self.step = int(state["step"])
        self.consumed = np.asarray(state["consumed"], dtype=np.int64).copy()
        self.tokens_seen = np.asarray(state["tokens_seen"], dtype=np.int64).copy()
        self._sampler.load_state_dict(state["sampler"])
        for k in _NP_RNGS:
            setattr(self, k, restore_generator(state["rngs"][k]))
        for k in _TORCH_RNGS:
            setattr(self, k, state["torch_rngs"][k].clone())
        self._plan = [np.asarray(p, dtype=np.int64).copy() for p in state["plan"]]
        self._probe_round = np.asarray(state["probe_round"], dtype=np.int64).copy()
        self._at_init = bool(state["at_init"])
        for key, value in zip(state["init_cache_keys"], state["init_cache_values"], strict=True):
            self._init_cache[(int(key[0]), int(key[1]))] = (float(value[0]), float(value[1]))
        self.model.train()

    # ----------------------------------------------------------------------------------------
    # Helpers


_NP_RNGS = ("_mix_rng", "_probe_rng", "_aux_rng")
_TORCH_RNGS = ("_torch_train", "_torch_aux")
