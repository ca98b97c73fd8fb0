"""A run request: the command line resolved into validated configs, seeds and an experiment.

Everything the user can get wrong is checked here, before any model, data or MLflow run is
made; mosgym.experiment.runner then executes the request.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The lookup of config names lives in mosgym.config, so that gym.make(config=NAME) shares it.
from mosgym.config.lookup import config_dirs, find_config, list_configs  # noqa: F401
from mosgym.errors import MosgymError

log = logging.getLogger("mosgym.run")

DEFAULT_ENV = "skills-tiny"
DEFAULT_AGENT = "mos-cossim-ema"
# Used when the configs folder is not at hand (package installed elsewhere): the same settings
# as envs/skills-tiny.yaml and agents/mos-cossim-ema.yaml.
EMBEDDED_AGENT: dict[str, Any] = {
    "name": "mos-cossim-ema",
    "kind": "mos",
    "reward": {"type": "cossim", "ema": True},
}


def parse_seeds(text: str) -> list[int]:
    """'3' -> [3]; '0-4' -> [0..4]; '0,2,7' -> [0, 2, 7]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            if sep:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(lo))
    except ValueError:
        raise MosgymError(
            f"--seeds {text!r}: expected a seed, a range like 0-4, or a list like 0,2,7"
        ) from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise MosgymError(f"--seeds {text!r}: seeds must be distinct non-negative integers")
    return seeds


def _split_overrides(sets: list[str]) -> tuple[list[str], list[str]]:
    """--set keys starting with 'agent.' go to the agent config, others ('env.' optional) to the
    env config."""
    env, agent = [], []
    for s in sets:
        if s.startswith("agent."):
            agent.append(s[len("agent.") :])
        else:
            env.append(s[len("env.") :] if s.startswith("env.") else s)
    return env, agent


@dataclass
class RunRequest:
    """A resolved command line: configs as plain data, seeds, MLflow experiment."""

    env: dict[str, Any]
    env_name: str
    agent: dict[str, Any]
    seeds: list[int]
    experiment: str
    progress: bool = True
    extra_tags: dict[str, str] = field(default_factory=dict)
    checkpoint_dir: str | None = None
    """None: no checkpoints (the CLI always names one)."""
    checkpoint_every: int = 1
    """Env steps between checkpoints (0: none)."""
    keep: int = 2
    """Checkpoints kept while the run goes on."""
    keep_checkpoints: bool = False
    """Keep the last checkpoints once the run has finished (default: removed then)."""

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs the same run: configs and seeds (see checkpoint.check_fresh)."""
        return {"env": self.env, "agent": self.agent, "seeds": self.seeds}


def resolve_request(args: argparse.Namespace) -> RunRequest:
    """Turn CLI arguments into validated configs (all errors before any training)."""
    from mosgym.agents import load_agent_config
    from mosgym.config import load_env_config, to_dict

    env_over, agent_over = _split_overrides(args.sets)
    if args.steps is not None:
        env_over.append(f"train.total_steps={args.steps}")
    env_src: Any
    if args.env is None and not config_dirs("envs"):
        env_src = None
    else:
        env_src = find_config("envs", args.env or DEFAULT_ENV)
    agent_src: Any
    if args.agent is None and not config_dirs("agents"):
        agent_src = EMBEDDED_AGENT
    else:
        agent_src = find_config("agents", args.agent or DEFAULT_AGENT)
    agent_cfg = load_agent_config(agent_src, agent_over)
    env_cfg = load_env_config(env_src, env_over)
    if agent_cfg.reward is not None:  # the agent names the reward it learns from
        env_cfg = load_env_config(env_cfg, reward=to_dict(agent_cfg.reward))
    _choose_action_kind(env_cfg, agent_cfg, env_src, env_over)
    from mosgym.envs.mixture_of_skills import check_config

    check_config(env_cfg)
    if not env_cfg.skills and env_cfg.learner == "hf":  # record the suite actually used
        from mosgym.data import default_skill_configs

        env_cfg.skills = default_skill_configs()
    seeds = parse_seeds(args.seeds or "0")
    run_name = f"{env_cfg.name}__{agent_cfg.name}" + (f"__s{seeds[0]}" if len(seeds) == 1 else "")
    req = RunRequest(
        env=to_dict(env_cfg),
        env_name=env_cfg.name,
        agent=to_dict(agent_cfg),
        seeds=seeds,
        experiment=_experiment(args.experiment, env_cfg.name),
        progress=not args.no_progress,
        checkpoint_dir=str(Path(args.checkpoint_dir or Path("checkpoints") / run_name).resolve()),
    )
    _apply_checkpoint_args(req, args)
    req.keep_checkpoints = bool(getattr(args, "keep_checkpoints", False))
    if req.checkpoint_every > 0:
        from mosgym.experiment.checkpoint import check_fresh

        check_fresh(Path(req.checkpoint_dir), req.fingerprint())
    return req


def _experiment(given: str | None, env_name: str) -> str:
    if given is not None and not given.strip():
        raise MosgymError("--experiment: must be a non-empty name")
    return given or env_name


def _apply_checkpoint_args(req: RunRequest, args: argparse.Namespace) -> None:
    if args.checkpoint_every is not None:
        if args.checkpoint_every < 0:
            raise MosgymError(
                f"--checkpoint-every {args.checkpoint_every}: must be >= 0 (0: no checkpoints)"
            )
        req.checkpoint_every = args.checkpoint_every
    if args.keep is not None:
        if args.keep < 1:
            raise MosgymError(f"--keep {args.keep}: must be >= 1 (checkpoints kept)")
        req.keep = args.keep


def resolve_resume(args: argparse.Namespace) -> tuple[RunRequest, dict[str, Any]]:
    """The request and state saved in the checkpoint `--resume` names."""
    from mosgym.experiment.checkpoint import load_state, resolve_resume_dir

    given = {
        "--env": args.env,
        "--agent": args.agent,
        "--seeds": args.seeds,
        "--steps": args.steps,
        "--set": args.sets,
        "--experiment": args.experiment,
        "--checkpoint-dir": args.checkpoint_dir,
    }
    extra = [flag for flag, value in given.items() if value]
    if extra:
        raise MosgymError(
            f"--resume continues a run with the configs saved in its checkpoint; drop "
            f"{', '.join(extra)}"
        )
    from mosgym.learner import distributed

    ckpt, folder = resolve_resume_dir(args.resume)
    state = load_state(folder)  # under torchrun every rank reads the checkpoint rank 0 wrote
    try:
        req = RunRequest(**state["request"])
    except (KeyError, TypeError) as e:
        raise MosgymError(f"{folder}: checkpoint without a valid run request ({e})") from None
    req.checkpoint_dir = str(ckpt.root)
    req.progress = not args.no_progress
    _apply_checkpoint_args(req, args)
    req.keep_checkpoints = req.keep_checkpoints or bool(getattr(args, "keep_checkpoints", False))
    if distributed.is_main():
        ckpt.drop_newer(folder)
    log.info("resuming from %s", folder)
    return req, state


def _choose_action_kind(env_cfg: Any, agent_cfg: Any, env_src: Any, env_over: list[str]) -> None:
    """The env takes the agent's action kind unless the env config sets one explicitly; an
    explicit mismatch is the user's to resolve."""
    from mosgym.agents import check_compatible
    from mosgym.config import read_yaml

    explicit = any(o.startswith("action.kind=") for o in env_over)
    if isinstance(env_src, Path):
        explicit = explicit or "kind" in (read_yaml(env_src).get("action") or {})
    if agent_cfg.action_kind in ("continuous", "discrete") and not explicit:
        env_cfg.action.kind = agent_cfg.action_kind
    check_compatible(agent_cfg, env_cfg.action.kind)
