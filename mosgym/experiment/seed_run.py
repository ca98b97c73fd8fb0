"""One seed's episode: stepping (or resuming) it, logging every step, checkpoints, stops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mosgym import timing
from mosgym.errors import MosgymError
from mosgym.experiment import faults, launch, tracking
from mosgym.experiment.checkpoint import global_rng_state, set_global_rng_state
from mosgym.experiment.episode import EpisodeLog, RecordEpisode, run_episode
from mosgym.learner import distributed


class ProgressBar:
    """tqdm bar over env steps, showing the live mixture."""

    def __init__(self, total: int, desc: str, enabled: bool, initial: int = 0) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit="step", leave=True, dynamic_ncols=True
            )

    def __call__(self, ep: EpisodeLog) -> None:
        if self.bar is None or len(ep.steps) < 2:
            return
        mix = " ".join(
            f"{n[:6]}={p:.2f}" for n, p in zip(ep.skill_names, ep.mixture[-1], strict=True)
        )
        self.bar.set_postfix_str(f"dev={np.mean(ep.dev_loss[-1]):.3f} | {mix}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class SeedRun:
    """One seed's episode: steps it (or continues it from a checkpoint), logs every step,
    checks the loss, writes checkpoints, and stops cleanly on SIGINT/SIGTERM."""

    def __init__(
        self, ctx: Any, pos: int, seed: int, run_id: str, agent: Any, current: dict | None
    ) -> None:
        self.ctx, self.pos, self.seed, self.agent = ctx, pos, seed, agent
        self.current = current
        n = ctx.env.n_env_steps
        done_steps = 0 if current is None else len(current["episode"]["steps"]) - 1
        self.bar = ProgressBar(n, f"seed {seed}", ctx.req.progress, initial=done_steps)
        logged = -1 if current is None else tracking.last_logged_step(run_id)
        rewards = ctx.req.env["reward"]["type"] != "none"  # static agents: no zero lines
        self.step_logger = tracking.MlflowStepLogger(run_id, logged, rewards=rewards)
        env = launch.Lead(ctx.env) if distributed.active() else ctx.env
        self.recorder = RecordEpisode(env, on_step=self.on_step)
        self.run_id = run_id
        self.last_checkpoint: Path | None = None
        self.wall_before = 0.0 if current is None else float(current["wall_time_s"])
        self.timer = run_timer(ctx.env, current)
        self.t0 = time.perf_counter()
        self.timer.start()
        if hasattr(agent, "set_metrics_sink"):  # SB3's own logger goes into this run
            agent.set_metrics_sink(
                lambda values, step: tracking.log_sb3_metrics(run_id, values, step)
            )

    @property
    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def play(self) -> tuple[EpisodeLog, float]:
        """Run (the rest of) the episode; returns its log and wall time."""
        from mosgym.agents import SelfDrivingAgent

        env, agent = self.ctx.env, self.agent
        try:
            with timing.active(self.timer), faults.STOP.deferred():
                if isinstance(agent, SelfDrivingAgent):
                    # SB3 resets the env itself, seeded with the agent's seed; its own
                    # updates count as the agent's time, the env's phases as theirs.
                    with timing.phase(timing.AGENT):
                        agent.learn(self.recorder, env.n_env_steps)
                elif self.current is None:
                    obs, info = self.recorder.reset(seed=self.seed)
                    agent.reset(obs, info)
                    self.after_step(obs)
                    run_episode(self.recorder, agent, self.seed, (obs, info), self.after_step)
                else:
                    obs = self.restore(self.current)
                    if not self.recorder.log.done:
                        run_episode(self.recorder, agent, self.seed, (obs, {}), self.after_step)
        finally:
            self.timer.stop()
            self.bar.close()
        ep = self.recorder.last_complete
        if ep is None:
            raise MosgymError(f"agent {self.agent.name} stopped before the episode ended")
        return ep, self.wall

    def restore(self, state: dict[str, Any]) -> np.ndarray:
        """Env, agent, episode log and global RNGs as they were at the checkpoint."""
        launch.lead("restore")  # every rank loads the checkpoint it read itself
        self.ctx.env.load_state_dict(state["env"])
        self.agent.load_state_dict(state["agent"])
        self.recorder.resume(EpisodeLog.from_state(state["episode"]))
        set_global_rng_state(state["global_rng"])
        return np.asarray(state["obs"], dtype=np.float32)

    def on_step(self, ep: EpisodeLog) -> None:
        """After every env step, before the agent learns from it."""
        if self.recorder.finished:  # SB3's automatic reset after the last step: not logged
            return
        if len(ep.steps) > 1:
            last = None if self.last_checkpoint is None else str(self.last_checkpoint)
            faults.check_train_loss(ep.train_loss[-1], ep.steps[-1], last)
        with timing.phase(timing.LOGGING):
            self.step_logger(ep)
        self.bar(ep)
        if self.ctx.ckpt is None:
            stop_if_requested()

    def after_step(self, obs: np.ndarray) -> None:
        """After the agent learnt from the step: checkpoint when due, stop when asked."""
        ckpt = self.ctx.ckpt
        ep_steps = len(self.recorder.log.steps) - 1
        if ckpt is not None:
            due = ep_steps % self.ctx.req.checkpoint_every == 0 or self.recorder.log.done
            if due or faults.STOP.requested:
                self.save(obs, ep_steps)
        stop_if_requested()

    @timing.timed(timing.CHECKPOINT)
    def save(self, obs: np.ndarray, ep_steps: int) -> None:
        launch.lead("state")  # the other ranks take part in gathering a sharded model
        current = {
            "seed": self.seed,
            "run_id": self.run_id,
            "episode": self.recorder.log.to_state(),
            "obs": np.asarray(obs, dtype=np.float32),
            "env": self.ctx.env.state_dict(),
            "agent": self.agent.state_dict(),
            "global_rng": global_rng_state(),
            "wall_time_s": self.wall,
            "phase_seconds": self.timer.snapshot(),
        }
        self.last_checkpoint = self.ctx.save(self.pos, ep_steps, current)


def run_timer(env: Any, current: dict[str, Any] | None) -> timing.PhaseTimer:
    """The seed's phase timer: synchronising a CUDA learner's device at phase boundaries, and
    going on from a checkpoint's seconds when resuming."""
    timer = timing.PhaseTimer(sync=timing.device_sync(getattr(env.learner, "device", None)))
    if current is not None:  # checkpoints written before the timer existed have no seconds
        timer.load_state_dict(current.get("phase_seconds", {}))
    return timer


def stop_if_requested() -> None:
    """Honour a deferred stop at an env-step boundary (where every rank is between
    collectives): the other ranks are told to end, then this one raises."""
    if faults.STOP.requested:
        launch.lead("end")
    faults.STOP.raise_if_requested()
