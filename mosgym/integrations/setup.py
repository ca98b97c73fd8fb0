"""Checking a Trainer + MixtureDataset + agent combination and building what the callback uses.

Every mistake that can be seen before training (a run without max_steps, an interval longer
than the run, skills missing from the dev or probe sets, an agent built for another number of
skills, a reward that cannot be computed inside a Trainer) is one MosgymError here, raised when
the callback is created.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from mosgym.agents.base import Agent
from mosgym.agents.registry import AgentConfig, load_agent_config, make_agent
from mosgym.config import RewardConfig, from_dict
from mosgym.envs.spec import EnvSpec
from mosgym.errors import MosgymError
from mosgym.integrations.dataset import MixtureDataset, tokenized_split
from mosgym.integrations.learner import NEEDS_INITIAL, TrainerLearner
from mosgym.integrations.trainloss import TrainLossTracker
from mosgym.learner.schedule import child_seed, draw_probe_plan
from mosgym.rewards import RewardComputer

logger = logging.getLogger(__name__)

UNSUPPORTED_REWARDS = ("multidds", "multiuat")
"""Rewards that need gradients or MC-dropout passes of the learner: not inside a Trainer."""
DEV_REWARDS = ("learning_progress", "mean_progress", "excess_loss")
"""Rewards computed from per-skill dev losses."""


@dataclass
class Setup:
    """What MixtureCallback works with, checked against the Trainer and the dataset."""

    agent: Agent
    agent_cfg: AgentConfig
    reward_cfg: RewardConfig
    spec: EnvSpec
    rewards: RewardComputer
    learner: TrainerLearner
    tracker: TrainLossTracker | None
    interval: int
    probe_size: int
    max_steps: int
    seed: int
    rows: int
    """Rows of one training forward on each rank (per_device_train_batch_size)."""

    @property
    def needs_initial(self) -> bool:
        return self.reward_cfg.type in NEEDS_INITIAL

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must share to be resumed by this callback."""
        return {
            "skills": list(self.spec.skill_names),
            "train_sizes": self.spec.train_sizes.tolist(),
            "agent": self.agent_cfg.name,
            "kind": self.agent_cfg.kind,
            "reward": dataclasses.asdict(self.reward_cfg),
            "interval": self.interval,
            "probe_size": self.probe_size,
            "seed": self.seed,
        }


def build_setup(
    trainer: Trainer,
    dataset: MixtureDataset,
    agent: str | Path | Mapping[str, Any] | AgentConfig,
    *,
    interval: int,
    probe_size: int,
    reward: Mapping[str, Any] | RewardConfig | None,
    dev: Mapping[str, Sequence[Mapping[str, Any]]] | None,
    probe: Mapping[str, Sequence[Mapping[str, Any]]] | None,
    eval_batch_size: int,
    logit_scale: float,
    floor: float,
    seed: int,
) -> Setup:
    """Check everything, then build agent, rewards, learner adapter and loss tracker."""
    args = trainer.args
    max_steps = _check_run(trainer, interval)
    names = list(dataset.skill_names)
    if isinstance(agent, Mapping) and "name" not in agent:  # a mapping written inline
        agent = {"name": str(agent.get("kind", "agent")), **agent}
    cfg = load_agent_config(agent)
    if cfg.kind == "sb3":
        raise MosgymError(
            f"agent {cfg.name}: kind 'sb3' learns by stepping an env itself; inside a Trainer "
            "use a saved policy (kind 'sb3-policy', e.g. one trained in the simulator), or mos, "
            "odm or static"
        )
    reward_cfg = from_dict(RewardConfig, reward if reward is not None else cfg.reward, "reward")
    if reward_cfg.type in UNSUPPORTED_REWARDS:
        raise MosgymError(
            f"reward {reward_cfg.type}: not available inside a Trainer (it needs the learner's "
            "own gradients or dropout passes); use cossim, diff, train_loss, learning_progress, "
            "mean_progress or excess_loss"
        )
    rewards = RewardComputer(reward_cfg, names, probe_size)
    _check_names(dev, names, "dev")
    _check_names(probe, names, "probe")
    observes_dev = cfg.kind == "sb3-policy"
    if dev is None and (reward_cfg.type in DEV_REWARDS or observes_dev):
        why = f"reward {reward_cfg.type}" if not observes_dev else f"agent {cfg.name} observes it"
        raise MosgymError(
            f"per-skill dev loss is needed ({why}): pass MixtureCallback(dev={{skill: "
            "tokenized dev examples}) for every skill of the dataset"
        )
    if not (math.isfinite(logit_scale) and logit_scale > 0) or not 0 <= floor <= 1 / len(names):
        raise MosgymError(
            f"logit_scale must be > 0 and floor in [0, 1/N = {1 / len(names):.4g}], got "
            f"{logit_scale} and {floor}"
        )
    kind = cfg.action_kind if cfg.action_kind in ("continuous", "discrete") else "continuous"
    n_updates = math.ceil(max_steps / interval)
    spec = EnvSpec(names, dataset.train_sizes.copy(), kind, n_updates, interval, logit_scale, floor)
    built = make_agent(cfg)
    built.setup(spec, seed)
    learner = _learner(trainer, dataset, probe, dev, probe_size, n_updates + 1, seed)
    learner.autocast_dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    learner.eval_batch_size = eval_batch_size
    tracker = None
    if cfg.kind == "odm" or reward_cfg.type == "train_loss":
        tracker = _tracker(trainer, dataset)
    rows = int(args.per_device_train_batch_size)
    return Setup(
        built, cfg, reward_cfg, spec, rewards, learner, tracker, interval, probe_size, max_steps,
        seed, rows,
    )  # fmt: skip


def _check_run(trainer: Trainer, interval: int) -> int:
    """The Trainer settings the mixing loop needs; returns max_steps."""
    args = trainer.args
    if args.max_steps is None or args.max_steps <= 0:
        raise MosgymError(
            "a MixtureDataset is endless: set TrainingArguments(max_steps=...) (the number of "
            "optimizer steps)"
        )
    if not isinstance(interval, int) or interval < 1:
        raise MosgymError(f"interval must be a positive number of optimizer steps, got {interval}")
    if interval > args.max_steps:
        raise MosgymError(
            f"interval {interval} is longer than the run (max_steps={args.max_steps}): the agent "
            f"would never act; use an interval of at most {args.max_steps} steps"
        )
    if args.dataloader_num_workers > 0:
        raise MosgymError(
            f"dataloader_num_workers={args.dataloader_num_workers}: data-loader workers hold "
            "copies of the MixtureDataset that never see a new mixture; set it to 0"
        )
    if args.n_gpu > 1:
        raise MosgymError(
            f"{args.n_gpu} GPUs in one process (DataParallel): launch one process per GPU "
            "with torchrun or accelerate instead"
        )
    if args.world_size > 1 and trainer.accelerator.dispatch_batches is not False:
        # Every rank iterates the same stream and keeps its slice (IterableDatasetShard);
        # dispatching would also concatenate differently padded batches. TRL does the same.
        logger.info("MixtureDataset: setting accelerate's dispatch_batches=False")
        trainer.accelerator.dataloader_config.dispatch_batches = False
        args.accelerator_config.dispatch_batches = False
    return int(args.max_steps)


def _check_names(sets: Mapping[str, Any] | None, names: list[str], what: str) -> None:
    """`sets` (dev or probe examples by skill) must cover exactly the dataset's skills."""
    if sets is None:
        return
    missing = [n for n in names if n not in sets]
    extra = [k for k in sets if k not in names]
    if missing:
        raise MosgymError(
            f"{what} sets: skill '{missing[0]}' of the dataset has none (skills: "
            f"{', '.join(names)}); give {what} examples for every skill"
        )
    if extra:
        raise MosgymError(
            f"{what} sets: '{extra[0]}' is not a skill of the dataset (skills: {', '.join(names)})"
        )
    empty = [n for n in names if len(sets[n]) == 0]
    if empty:
        raise MosgymError(f"{what} sets: skill '{empty[0]}' has no examples")


def _learner(
    trainer: Trainer,
    dataset: MixtureDataset,
    probe: Mapping[str, Sequence[Mapping[str, Any]]] | None,
    dev: Mapping[str, Sequence[Mapping[str, Any]]] | None,
    probe_size: int,
    rounds: int,
    seed: int,
) -> TrainerLearner:
    """The adapter over the Trainer's model with every planned probe example tokenized."""
    names = dataset.skill_names
    splits, plan = [], []
    if probe is not None:  # a fixed probe set: its first probe_size examples every time
        for name in names:
            k = min(probe_size, len(probe[name]))
            splits.append(tokenized_split(probe[name], name, range(k)))
            plan.append(np.tile(np.arange(k), (rounds, 1)))
    else:  # fresh training examples each round, drawn up front (only they are tokenized)
        rng = np.random.default_rng(child_seed(seed, 2))
        full = draw_probe_plan(rng, dataset.train_sizes.tolist(), probe_size, rounds)
        for s, name in enumerate(names):
            rows = np.unique(full[s])
            splits.append(tokenized_split(dataset.examples[s], name, rows))
            plan.append(np.searchsorted(rows, full[s]))
    dev_splits = None if dev is None else [tokenized_split(dev[n], n) for n in names]
    return TrainerLearner(
        trainer.model,
        list(names),
        dataset.train_sizes,
        splits,
        plan,
        dev_splits,
        _pad_id(trainer),
        eval_batch_size=64,
    )


def _pad_id(trainer: Trainer) -> int:
    """The tokenizer's pad token (padding is masked out: any valid id would do)."""
    tok = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
    pad = getattr(tok, "pad_token_id", None)
    if pad is None:
        pad = getattr(trainer.model.config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _tracker(trainer: Trainer, dataset: MixtureDataset) -> TrainLossTracker:
    args = trainer.args
    if args.world_size > 1 and trainer.accelerator.split_batches:
        raise MosgymError(
            "per-skill training loss (agent odm, reward train_loss) under several processes "
            "needs accelerate's split_batches=False"
        )
    rows = int(args.per_device_train_batch_size)
    return TrainLossTracker(
        trainer.model, dataset, rows, rows * args.world_size, args.process_index
    )
