"""MixtureCallback: a mosgym agent choosing the data mixture inside a transformers Trainer.

Every S optimizer steps the callback does what one step of MixtureOfSkillsEnv does after its
training: per-skill dev loss, the configured reward from `RewardComputer` (the environment's
code) over a `TrainerLearner` on the Trainer's own model, the env's observation and info, then
`agent.observe` and `agent.act`, and the new mixture goes to the MixtureDataset. The agent acts
on rank 0; its mixture is broadcast so every rank samples from the same one. Weights, rewards
and dev losses go through `Trainer.log`, so every `report_to` integration records them.

    trainer = Trainer(model=model, args=args, train_dataset=mixture, data_collator=collator)
    trainer.add_callback(MixtureCallback(trainer, mixture, "agents/mos-cossim-ema.yaml"))
    trainer.train()
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from mosgym.agents.registry import AgentConfig
from mosgym.envs.mixing import action_to_mixture
from mosgym.errors import MosgymError
from mosgym.integrations.dataset import MixtureDataset
from mosgym.integrations.setup import Setup, build_setup
from mosgym.learner import distributed
from mosgym.learner.base import TrainStats

logger = logging.getLogger(__name__)

STATE_FILE = "mosgym_mixture.json"
"""The callback's state in each Trainer checkpoint folder."""


class MixtureCallback(TrainerCallback):
    """Lets a mosgym agent (mos, odm, static, sb3-policy) set `dataset`'s mixture every
    `interval` optimizer steps of `trainer`.

    `agent`: an agent YAML path, a mapping in that format, or an AgentConfig. `reward` replaces
    the agent config's reward (default: its own, else COSSIM). `probe_size` examples per skill
    are probed at each update: the first ones of `probe[skill]` when given, else a fresh seeded
    draw from the skill's training examples (the paper). `dev[skill]` (tokenized examples) gives
    the per-skill dev loss (logged, and needed by agents that observe it). `seed` (default: the
    Trainer's) seeds the agent and the probe draws. `resume_from`: the checkpoint folder to read
    this callback's state from on a resume, when it is not `output_dir/checkpoint-<step>`.
    """

    def __init__(
        self,
        trainer: Trainer,
        dataset: MixtureDataset,
        agent: str | Path | Mapping[str, Any] | AgentConfig,
        *,
        interval: int = 100,
        probe_size: int = 64,
        reward: Mapping[str, Any] | None = None,
        dev: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        probe: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        eval_batch_size: int = 64,
        logit_scale: float = 5.0,
        floor: float = 0.0,
        seed: int | None = None,
        resume_from: str | Path | None = None,
    ) -> None:
        self.trainer = trainer
        self.dataset = dataset
        self.resume_from = resume_from
        self.s: Setup = build_setup(
            trainer,
            dataset,
            agent,
            interval=interval,
            probe_size=probe_size,
            reward=reward,
            dev=dev,
            probe=probe,
            eval_batch_size=eval_batch_size,
            logit_scale=logit_scale,
            floor=floor,
            seed=trainer.args.seed if seed is None else seed,
        )
        n = len(dataset.skill_names)
        self.history: list[dict[str, Any]] = []
        """Every decision on this rank: step, mixture used, new mixture, rewards, dev loss."""
        self._init_dev = self._dev = np.ones(n)
        self._mixture = np.full(n, 1.0 / n)
        self._action: np.ndarray | int = self._mixture.copy()
        self._last_reward = np.zeros(n)
        self._train_loss = np.ones(n)
        self._consumed_mark = np.zeros(n, dtype=np.int64)

    @property
    def mixture(self) -> np.ndarray:
        """(N,) the mixture in force now."""
        return self.dataset.mixture

    # ----------------------------------------------------------------------------------------
    # Trainer events

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if state.max_steps != self.s.max_steps:
            raise MosgymError(
                f"MixtureCallback was set up for max_steps={self.s.max_steps}, the run has "
                f"{state.max_steps}; build the callback after the final TrainingArguments"
            )
        if state.global_step > 0:
            self._resume(args, state)
        else:
            self._start()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        step = state.global_step
        if step % self.s.interval == 0 or step == state.max_steps:
            # Trainer.log clears the flag that asks the Trainer to log its loss at this step.
            should_log = control.should_log
            self._decide(step)
            control.should_log = should_log

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        blob = self.state_dict(state.global_step)  # a collective: every rank takes part
        if not args.should_save:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(blob, default=_plain))
        os.replace(tmp, folder / STATE_FILE)

    # ----------------------------------------------------------------------------------------
    # The loop

    def _start(self) -> None:
        """What env.reset does, then the agent's first decision."""
        s, n = self.s, len(self.dataset.skill_names)
        s.learner.reset(s.seed)
        s.rewards.reset()
        if s.learner.has_dev:
            self._init_dev = s.learner.dev_loss()
        self._dev = self._init_dev.copy()
        self._train_loss = self._init_dev.copy()
        self._last_reward = np.zeros(n)
        self._mixture = np.full(n, 1.0 / n)
        self._consumed_mark = np.zeros(n, dtype=np.int64)
        if s.needs_initial:
            s.learner.prepare_initial()
        if s.tracker is not None:
            s.tracker.start(0, 0)
        info = {
            "skill_names": list(self.dataset.skill_names),
            "dev_loss": self._dev.copy(),
            "mixture": self._mixture.copy(),
            "train_sizes": self.dataset.train_sizes.copy(),
        }
        action = None
        if distributed.is_main():
            s.agent.reset(self._obs(0), info)
            action = s.agent.act(self._obs(0))
        self._set_next(action, 0)
        self.dataset.begin(self._mixture)
        self._log(0, {})

    def _decide(self, step: int) -> None:
        """One env step's bookkeeping after the interval that ends at optimizer step `step`."""
        s = self.s
        if self.dataset.cursor == 0:
            raise MosgymError(
                "MixtureCallback: the Trainer has not read a single example from this "
                "MixtureDataset; pass it as train_dataset (its as_hf_dataset() to SFTTrainer)"
            )
        s.learner.step = step
        stats = self._interval_stats()
        dev = s.learner.dev_loss() if s.learner.has_dev else np.ones_like(self._dev)
        result = s.rewards.compute(s.learner, stats, dev, self._dev, self._init_dev)
        if s.tracker is not None:
            self._train_loss = np.where(stats.examples > 0, stats.mean_loss, self._train_loss)
        used = self._mixture
        self._dev, self._last_reward = dev, np.asarray(result.smoothed, dtype=np.float64)
        info = {
            "mixture": used.copy(),
            "skill_rewards": self._last_reward.copy(),
            "raw_skill_rewards": np.asarray(result.raw, dtype=np.float64),
            "dev_loss": dev.copy(),
            "train_loss": self._train_loss.copy(),
            "train_examples": np.asarray(stats.examples).copy(),
            "step_loss": float(np.mean(stats.step_losses)),
            "examples_seen": self.dataset.consumed.copy(),
            "tokens_seen": s.learner.tokens_seen.copy(),
            "step": step,
            "probe_skipped": int(result.probe_skipped),
            "reward_fallback": np.asarray(result.fallback, dtype=bool).copy(),
            "skill_names": list(self.dataset.skill_names),
        }
        reward = float(used @ self._last_reward)
        terminated = step >= s.max_steps
        obs = self._obs(step)
        action = None
        if distributed.is_main():
            s.agent.observe(self._action, reward, obs, terminated, False, info)
            if not terminated:
                action = s.agent.act(obs)
        if not terminated:
            self._set_next(action, step)
            self.dataset.set_mixture(self._mixture)
        self._log(step, info, reward)

    def _interval_stats(self) -> TrainStats:
        """Per-skill stats of the interval: from the forward hook when the agent or reward
        needs training losses, else the examples drawn (no loss)."""
        if self.s.tracker is not None:
            stats = self.s.tracker.collect()
            self.s.learner.tokens_seen += stats.tokens
            self.s.learner.consumed += stats.examples
            return stats
        drawn = self.dataset.consumed - self._consumed_mark
        self._consumed_mark = self.dataset.consumed.copy()
        n = len(drawn)
        return TrainStats(drawn, np.zeros(n, np.int64), np.full(n, np.nan), np.array([np.nan]))

    def _set_next(self, action: Any, step: int) -> None:
        """Rank 0's action, as a mixture, on every rank."""
        s = self.s
        if distributed.is_main():
            mixture = action_to_mixture(
                action, s.spec.action_kind, len(self._mixture), s.spec.logit_scale, s.spec.floor
            )
            action, mixture = distributed.broadcast_object((action, mixture))
        else:
            action, mixture = distributed.broadcast_object(None)
        self._action, self._mixture = action, np.asarray(mixture, dtype=np.float64)

    def _obs(self, step: int) -> np.ndarray:
        """The env's observation: dev-loss ratio, mixture, epochs consumed, last reward,
        progress."""
        epochs = self.dataset.consumed / np.maximum(self.dataset.train_sizes, 1)
        parts = [
            self._dev / self._init_dev,
            self._mixture,
            epochs,
            self._last_reward,
            [step / self.s.max_steps],
        ]
        return np.concatenate(parts).astype(np.float32)

    def _log(self, step: int, info: dict[str, Any], reward: float | None = None) -> None:
        """Record the decision and send it through Trainer.log (report_to integrations):
        `weight/<skill>` is the mixture in force from this step on."""
        metrics = _per_skill("weight", self.dataset.skill_names, self._mixture)
        if self.s.learner.has_dev:
            metrics.update(_per_skill("dev_loss", self.dataset.skill_names, self._dev))
            metrics["dev_loss_mean"] = float(np.mean(self._dev))
        if info:
            metrics.update(_per_skill("reward", self.dataset.skill_names, info["skill_rewards"]))
            metrics["reward"] = float(np.nan if reward is None else reward)
            if self.s.tracker is not None:
                fresh = info["train_examples"] > 0
                loss = np.where(fresh, info["train_loss"], np.nan)
                metrics.update(_per_skill("train_loss", self.dataset.skill_names, loss))
        self.history.append(
            {
                "step": step,
                "mixture": self._mixture.copy(),
                "used": info.get("mixture"),
                "rewards": info.get("skill_rewards"),
                "raw_rewards": info.get("raw_skill_rewards"),
                "dev_loss": self._dev.copy(),
                "examples": info.get("train_examples"),
                "position": self.dataset.cursor,
            }
        )
        self.trainer.log(metrics)

    # ----------------------------------------------------------------------------------------
    # Checkpoints

    def state_dict(self, step: int) -> dict[str, Any]:
        """Plain data to continue this run from optimizer step `step` (a collective under
        torchrun, for the training-loss sums)."""
        s = self.s
        return {
            "step": step,
            "settings": s.fingerprint(),
            "data": self.dataset.state_dict(),
            "agent": s.agent.state_dict(),
            "rewards": s.rewards.state_dict(),
            "learner": s.learner.state_dict(),
            "tracker": None if s.tracker is None else s.tracker.state_dict(),
            "init_dev": self._init_dev,
            "dev": self._dev,
            "mixture": self._mixture,
            "action": self._action,
            "last_reward": self._last_reward,
            "train_loss": self._train_loss,
            "consumed_mark": self._consumed_mark,
            "tokens_seen": s.learner.tokens_seen,
            "learner_consumed": s.learner.consumed,
        }

    def _resume(self, args: TrainingArguments, state: TrainerState) -> None:
        blob = None
        if distributed.is_main():
            blob = json.loads(self._checkpoint_file(args, state.global_step).read_text())
        blob = distributed.broadcast_object(blob)
        s = self.s
        if blob["settings"] != s.fingerprint():
            raise MosgymError(
                f"resume: the checkpoint's mixing run used {blob['settings']}, this callback "
                f"{s.fingerprint()}; resume with the same agent, reward, skills and interval"
            )
        replay = not args.ignore_data_skip
        self.dataset.load_state_dict(blob["data"], replay=replay)
        s.agent.load_state_dict(blob["agent"])
        s.rewards.load_state_dict(blob["rewards"])
        s.learner.load_state_dict(blob["learner"])
        s.learner.tokens_seen = np.asarray(blob["tokens_seen"], dtype=np.int64)
        s.learner.consumed = np.asarray(blob["learner_consumed"], dtype=np.int64)
        self._init_dev, self._dev = _floats(blob["init_dev"]), _floats(blob["dev"])
        self._mixture, self._last_reward = _floats(blob["mixture"]), _floats(blob["last_reward"])
        self._train_loss = _floats(blob["train_loss"])
        self._consumed_mark = np.asarray(blob["consumed_mark"], dtype=np.int64)
        action = blob["action"]
        self._action = action if isinstance(action, int) else np.asarray(action)
        if s.tracker is not None:
            s.tracker.load_state_dict(blob["tracker"])
            if replay:  # the Trainer fast-forwards the batches already trained
                s.tracker.start(0, state.global_step * args.gradient_accumulation_steps * s.rows)
            else:
                s.tracker.start(int(blob["data"]["position"]), 0)

    def _checkpoint_file(self, args: TrainingArguments, step: int) -> Path:
        """This callback's state file of the checkpoint being resumed (at optimizer `step`)."""
        places = [self.resume_from, args.resume_from_checkpoint]
        places = [*(p for p in places if isinstance(p, str | Path)), None]
        places[-1] = Path(args.output_dir) / f"checkpoint-{step}"
        for place in places:
            file = Path(place) / STATE_FILE
            if file.is_file():
                saved = json.loads(file.read_text())["step"]
                if saved != step:
                    raise MosgymError(
                        f"resume: {file} was saved at step {saved}, the Trainer resumes at "
                        f"step {step}; pass the same checkpoint to both"
                    )
                return file
        raise MosgymError(
            f"resume at step {step}: no {STATE_FILE} in {', '.join(map(str, places))}; resume "
            "from a checkpoint saved with this callback, or pass "
            "MixtureCallback(resume_from=<checkpoint folder>)"
        )


def _per_skill(prefix: str, names: list[str], values: Any) -> dict[str, float]:
    """{prefix/skill: value} for the finite values."""
    out = {f"{prefix}/{k}": float(v) for k, v in zip(names, values, strict=True)}
    return {k: v for k, v in out.items() if np.isfinite(v)}


def _floats(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _plain(obj: Any) -> Any:
    """JSON for numpy values."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
