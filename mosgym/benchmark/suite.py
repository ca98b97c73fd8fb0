"""A suite (a real env and its calibrated simulator) and the algorithms' benchmark entries.

A suite pairs the real env config with the simulator calibrated on it. A policy trained in the
simulator acts on the real env only if both envs mean the same thing by an observation and an
action: the same skills in the same order, the same number of decisions per run (total steps
and interval) and the same action mapping (logit scale, floor). Those are checked here, before
anything runs.

An entry is one algorithm's settings for one suite, rl-zoo style (one YAML per algorithm and
suite: agents/bench/<suite>/<algo>.yaml, else agents/bench/default/<algo>.yaml): the agent
config (as in agents/*.yaml) plus how it trains in the simulator.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosgym.agents.registry import AgentConfig, load_agent_config
from mosgym.agents.sb3 import ALGOS, build_kwargs
from mosgym.config import EnvConfig, from_dict, load_env_config, read_yaml, to_dict
from mosgym.errors import MosgymError
from mosgym.experiment.request import config_dirs, find_config
from mosgym.experiment.sim2real import cfg_skill_names

IN_EPISODE = ("mos", "odm")
"""Algorithms that learn within one episode only (their state resets with the env): there is
nothing to carry from the simulator to the real env but their knobs, which are tuned there."""
ALGORITHMS = (*ALGOS, *IN_EPISODE)
"""Every algorithm the benchmark knows; an SB3 one with the suffix '-dr' trains on randomised
simulators (domain randomisation)."""
DEFAULT_ALGOS = ("ppo", "a2c", "sac", "td3", "dqn", "mos", "odm")
DR_SUFFIX = "-dr"
PLUMBING = ("resume_from", "save_to")
"""SB3 agent settings that say where files go, not how the agent behaves."""
BASELINES = ("static-prop", "static-temp", "static-uni", "mos-cossim-ema", "mos-prior-tau1")
"""Deployed on the real env next to the trained policies: the static heuristics and MoS as
published (uniform prior) and with the PROP prior (the issue's target to beat)."""
STATIC = ("static-prop", "static-temp", "static-uni")


def digest(data: Any) -> str:
    """A short hash of plain data: equal settings give equal ids on a rerun."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def base_algo(algo: str) -> str:
    """'ppo-dr' -> 'ppo'."""
    return algo.removesuffix(DR_SUFFIX)


def check_algos(algos: list[str]) -> list[str]:
    """Known names, no repeats; a MosgymError naming the valid ones otherwise."""
    valid = [*ALGORITHMS, *(f"{a}{DR_SUFFIX}" for a in ALGOS)]
    for a in algos:
        if a not in valid:
            raise MosgymError(
                f"--algos {a}: unknown algorithm (valid: {', '.join(ALGORITHMS)}; an SB3 one "
                f"with '{DR_SUFFIX}' trains on randomised simulators, e.g. ppo{DR_SUFFIX})"
            )
    if len(set(algos)) != len(algos) or not algos:
        raise MosgymError(f"--algos {' '.join(algos)}: name each algorithm once, at least one")
    return list(algos)


# ------------------------------------------------------------------------------------ suite
@dataclass
class Suite:
    """A real env config and its calibrated simulator (learner 'sim'), checked compatible."""

    name: str
    real_path: Path
    sim_path: Path
    real: EnvConfig
    sim: EnvConfig
    sets: list[str]
    """Env overrides applied to both (e.g. train.total_steps=100 for a quick check)."""

    @property
    def skills(self) -> list[str]:
        return cfg_skill_names(self.real)


def load_suite(
    suite: str,
    real_env: str | None = None,
    sim_env: str | None = None,
    sets: list[str] | None = None,
) -> Suite:
    """The suite's two env configs: --real-env (default envs/SUITE.yaml) and --sim-env (default
    envs/sim-SUITE.yaml), with `sets` applied to both; every mismatch is one MosgymError."""
    sets = list(sets or [])
    real_path = find_config("envs", real_env or suite)
    if sim_env is None:
        try:
            sim_path = find_config("envs", f"sim-{suite}")
        except MosgymError:
            raise MosgymError(
                f"suite {suite}: no calibrated simulator (envs/sim-{suite}.yaml not found); "
                f"calibrate one with `mosgym calibrate` or pass --sim-env PATH"
            ) from None
    else:
        sim_path = find_config("envs", sim_env)
    real = load_env_config(real_path, sets)
    sim = load_env_config(sim_path, sets)
    if sim.learner != "sim":
        raise MosgymError(
            f"--sim-env {sim_path}: not a simulator (learner {sim.learner!r}); pass a calibrated "
            "config with learner: sim (see envs/sim-skills-tiny.yaml)"
        )
    from mosgym.sim.params import parse_sim_params

    parse_sim_params(sim.sim, len(cfg_skill_names(sim)), str(sim_path))
    check_same_task(real, sim, real_path, sim_path)
    return Suite(suite, real_path, sim_path, real, sim, sets)


def check_same_task(real: EnvConfig, sim: EnvConfig, real_path: Path, sim_path: Path) -> None:
    """Same skills (names and order), decisions per run and action mapping, else MosgymError."""
    a, b = cfg_skill_names(real), cfg_skill_names(sim)
    if a != b:
        raise MosgymError(
            f"simulator {sim_path} has skills {b} but the real env {real_path} has {a}; a "
            "policy's inputs and outputs are per skill, in order: calibrate a simulator on "
            "this env (mosgym calibrate) or pass the matching --sim-env"
        )
    pairs = {
        "train.total_steps": (real.train.total_steps, sim.train.total_steps),
        "train.interval": (real.train.interval, sim.train.interval),
        "action.logit_scale": (real.action.logit_scale, sim.action.logit_scale),
        "action.floor": (real.action.floor, sim.action.floor),
    }
    for key, (r, s) in pairs.items():
        if r != s:
            raise MosgymError(
                f"{key} is {s} in the simulator {sim_path} but {r} in the real env "
                f"{real_path}; they must match for a policy to transfer (or --set {key}=... "
                "sets both)"
            )


# ---------------------------------------------------------------------------------- entries
@dataclass
class BenchEntry:
    """One algorithm's settings for one suite (agents/bench/<suite>/<algo>.yaml)."""

    agent: dict[str, Any]
    """The agent config, as in agents/*.yaml: kind sb3 (params.algo ppo, a2c, sac, td3, dqn),
    mos or odm."""
    n_envs: int = 16
    """SB3: simulated runs stepped together while training (SimVecEnv)."""
    interval: int | None = None
    """The env's train.interval for this algorithm, in the simulator and on the real env
    (null: the suite's). A knob of MoS (its decisions per run), tuned like its others."""


@dataclass
class Entry:
    """A loaded entry: its file, settings and agent config (named bench-<algo>)."""

    algo: str
    path: Path
    settings: BenchEntry
    agent: AgentConfig

    @property
    def trains(self) -> bool:
        """True for SB3 algorithms (a policy is trained); False for in-episode learners."""
        return self.agent.kind == "sb3"

    @property
    def randomised(self) -> bool:
        return self.algo.endswith(DR_SUFFIX)

    @property
    def agent_name(self) -> str:
        return f"bench-{self.algo}"

    def env_sets(self) -> list[str]:
        """Env overrides the entry needs on both envs (its interval)."""
        s = self.settings.interval
        return [] if s is None else [f"train.interval={s}"]

    def sim_config(self, suite: Suite) -> EnvConfig:
        """The simulator as this algorithm sees it: its reward, action kind and interval."""
        return agent_env(suite.sim, self.agent, self.env_sets())

    def identity(self) -> dict[str, Any]:
        """What defines the entry's behaviour (for trial ids): settings and resolved agent.
        Unset file plumbing (an SB3 agent's resume_from / save_to) is left out, so that the ids
        of benchmarks run before those settings existed stay what they were."""
        agent = to_dict(self.agent)
        params = agent.get("params")
        if isinstance(params, dict):
            agent["params"] = {k: v for k, v in params.items() if not (k in PLUMBING and v is None)}
        return {"algo": self.algo, "settings": to_dict(self.settings), "agent": agent}


def entry_path(algo: str, suite: str, hparams: str | None) -> Path:
    """--hparams DIR/<algo>.yaml, else agents/bench/<suite>/<algo>.yaml, else .../default/."""
    name = f"{base_algo(algo)}.yaml"
    if hparams is not None:
        path = Path(hparams) / name
        if not path.is_file():
            raise MosgymError(f"--hparams {hparams}: no {name} in that folder")
        return path
    for folder in (suite, "default"):
        for d in config_dirs("agents"):
            if (d / "bench" / folder / name).is_file():
                return d / "bench" / folder / name
    raise MosgymError(f"no benchmark entry for {algo}: agents/bench/default/{name} not found")


def load_entry(algo: str, suite: str, hparams: str | None = None) -> Entry:
    """An algorithm's entry, checked: its kind fits the algorithm, its SB3 keys are valid."""
    path = entry_path(algo, suite, hparams)
    return parse_entry(algo, read_yaml(path), path)


def parse_entry(algo: str, data: dict[str, Any], path: Path) -> Entry:
    settings = from_dict(BenchEntry, data, str(path))
    agent_data = {"name": f"bench-{algo}", **dict(settings.agent)}
    agent_data["name"] = f"bench-{algo}"
    agent = load_agent_config(agent_data)
    want = "sb3" if base_algo(algo) in ALGOS else base_algo(algo)
    if agent.kind != want or (want == "sb3" and agent.params.algo != base_algo(algo)):
        got = agent.kind + (f" ({agent.params.algo})" if agent.kind == "sb3" else "")
        raise MosgymError(
            f"{path}: the entry of {algo} must hold an agent of kind {want}"
            + (f" with params.algo {base_algo(algo)}" if want == "sb3" else "")
            + f", got {got}"
        )
    if agent.kind == "sb3":
        build_kwargs(agent.params, f"{path}: agent")
    if settings.n_envs < 1:
        raise MosgymError(f"{path}: n_envs must be >= 1, got {settings.n_envs}")
    if settings.interval is not None and settings.interval < 1:
        raise MosgymError(f"{path}: interval must be >= 1 (or null), got {settings.interval}")
    return Entry(algo, path, settings, agent)


def agent_env(cfg: EnvConfig, agent: AgentConfig, sets: list[str] | None = None) -> EnvConfig:
    """`cfg` as `mosgym run` sets it up for `agent`: the agent's reward and action kind."""
    out = load_env_config(cfg, list(sets or []))
    if agent.reward is not None:  # the agent names the reward it learns from
        out = load_env_config(out, reward=to_dict(agent.reward))
    if agent.action_kind in ("continuous", "discrete"):
        out.action.kind = agent.action_kind
    return out


def baseline_agent(name: str) -> tuple[Path, AgentConfig]:
    """A baseline's agent YAML (agents/NAME.yaml) and config."""
    path = find_config("agents", name)
    return path, load_agent_config(path)
