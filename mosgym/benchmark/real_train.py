"""The real-training route: SB3 algorithms trained on the real env across episodes.

The simulator route trains a policy on many cheap simulated episodes and deploys it frozen. This
route is what it replaces: the same algorithm and entry learning on the real env itself, for
--real-episodes episodes per training seed, each episode a fresh fine-tuning run from the same
initial weights. Each episode is an ordinary `mosgym run` run in the real experiment (every step
in MLflow, tags ``mosgym.bench.role=real-train``, ``mosgym.bench.episode``), whose agent goes on
from the model the previous episode saved (`SB3Params.resume_from` / `save_to`: weights,
optimizer states, step count and an off-policy replay buffer, none of it unpickled). The final
model is then deployed frozen on the real seeds like a simulator-trained policy, under the name
``<algo>-real``, so that the leaderboard sets the two routes side by side with what each cost.

Episode k of training seed s runs with seed 10000 + 1000 s + k: disjoint from the deployment
seeds, so no policy is scored on an episode it trained on. On the real env, an on-policy
algorithm collects one whole episode per update (n_steps = the episode's decisions, PPO's
batch_size at most that) and an off-policy one starts learning after at most one episode
(learning_starts); everything else is the entry's.

Resumable between episodes: an episode is skipped when its run is FINISHED and its saved model
is on disk; a chain goes on from its first missing episode. Raising --real-episodes continues
the chains (an episode's id does not depend on how many follow it).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosgym.benchmark import tracking as bt
from mosgym.benchmark.deploy import (
    Deployment,
    deploy_one,
    entry_sets,
    finished_deployments,
    frozen_policy_yaml,
    paired_real_seeds,
    request,
    write_yaml,
)
from mosgym.benchmark.protocol import Settings
from mosgym.benchmark.suite import Entry, agent_env, digest
from mosgym.benchmark.train import StageCounts
from mosgym.config import to_dict
from mosgym.errors import MosgymError
from mosgym.experiment.request import RunRequest
from mosgym.records.runs import search_all

log = logging.getLogger(__name__)

EPISODE_SEED_BASE = 10_000
ON_POLICY = ("ppo", "a2c")


def episode_seed(train_seed: int, episode: int) -> int:
    """The real env's seed of one training episode (never a deployment seed)."""
    return EPISODE_SEED_BASE + 1000 * train_seed + episode


def trainable(settings: Settings, only: list[str] | None = None) -> list[Entry]:
    """The algorithms this route trains: the SB3 ones of --algos (or of `only`, a subset of
    them: --real-train-algos), without '-dr' (randomised simulators mean nothing on the real
    env). None, or a name not in --algos, is one error line."""
    for name in only or []:
        if name not in settings.entries:
            raise MosgymError(
                f"--real-train-algos {name}: not one of --algos ({' '.join(settings.entries)}); "
                "the route is part of a benchmark, so name algorithms it has"
            )
    wanted = [settings.entries[a] for a in only] if only else list(settings.entries.values())
    out = [e for e in wanted if e.trains and not e.randomised]
    skipped = [e.algo for e in wanted if e not in out]
    if skipped:
        log.info(
            "real-train: not trained on the real env: %s (in-episode learners already learn in "
            "each real run; '-dr' is a simulator setting)",
            ", ".join(skipped),
        )
    if not out:
        raise MosgymError(
            f"--stage real-train trains SB3 algorithms (ppo, a2c, sac, td3, dqn); "
            f"{' '.join(e.algo for e in wanted)} has none"
        )
    return out


def real_hyperparams(entry: Entry, decisions: int) -> dict[str, Any]:
    """The entry's SB3 settings, fitted to one real env of `decisions` steps per episode."""
    hp = dict(to_dict(entry.agent.params)["hyperparams"])
    if entry.agent.params.algo in ON_POLICY:
        hp["n_steps"] = decisions
        if "batch_size" in hp or entry.agent.params.algo == "ppo":
            hp["batch_size"] = min(int(hp.get("batch_size", 64)), decisions)
    else:
        hp["learning_starts"] = min(int(hp.get("learning_starts", 100)), decisions)
    return hp


@dataclass(frozen=True)
class Chain:
    """One algorithm x training seed trained on the real env, episode after episode."""

    entry: Entry
    train_seed: int
    folder: Path

    @property
    def label(self) -> str:
        return f"{self.entry.algo}{bt.ROUTE}"

    def model(self, episode: int) -> Path:
        return self.folder / f"episode{episode:03d}.zip"


def chains(settings: Settings, only: list[str] | None = None) -> list[Chain]:
    root = settings.out / "real-train"
    entries = trainable(settings, only)
    return [Chain(e, s, root / f"{e.algo}-s{s}") for e in entries for s in settings.seeds]


def episode_request(settings: Settings, chain: Chain, k: int, decisions: int) -> RunRequest:
    """The `mosgym run` request of episode k, tagged with its own id."""
    entry = chain.entry
    agent = to_dict(entry.agent)
    params = dict(agent["params"])
    params["hyperparams"] = real_hyperparams(entry, decisions)
    params["resume_from"] = None if k == 0 else str(chain.model(k - 1).resolve())
    params["save_to"] = str(chain.model(k).resolve())
    agent = {**agent, "name": f"bench-{chain.label}", "params": params}
    header = (
        f"# Written by mosgym.benchmark --stage real-train: {entry.algo} (entry {entry.path}), "
        f"training seed {chain.train_seed}, real episode {k}.\n"
    )
    path = write_yaml(chain.folder / f"episode{k:03d}.yaml", agent, header)
    seed = episode_seed(chain.train_seed, k)
    d = Deployment(chain.label, path, chain.train_seed, seed, entry_sets(settings, entry))
    req = request(settings, d)
    trial = digest(  # not the YAML: its paths differ between machines
        {
            "env": req.env,
            "entry": entry.identity(),
            "hyperparams": params["hyperparams"],
            "train_seed": chain.train_seed,
            "episode": k,
        }
    )
    tags = {bt.TRIAL: trial, bt.ROLE: bt.TRAIN_ROLE, bt.EPISODE: str(k)}
    return dataclasses.replace(req, extra_tags={**req.extra_tags, **tags})


def finished_episodes(client: Any, settings: Settings) -> set[str]:
    """Trial ids of the FINISHED training episodes of this benchmark."""
    exp_id = bt.experiment_id(client, settings.real_experiment, create=False)
    if exp_id is None:
        return set()
    query = f"tags.`{bt.BENCH}` = '{settings.bench_id}' and tags.`{bt.ROLE}` = '{bt.TRAIN_ROLE}'"
    return {
        r.data.tags[bt.TRIAL]
        for r in search_all(client, exp_id, query)
        if r.info.status == "FINISHED" and bt.TRIAL in r.data.tags
    }


def final_deployments(settings: Settings, chain: Chain, episodes: int) -> list[Deployment]:
    """The chain's last model, frozen, on its real seeds (as the pairing says)."""
    out = chain.folder / f"final-{episodes}.yaml"
    header = (
        f"# Written by mosgym.benchmark: {chain.entry.algo} trained on {episodes} real "
        f"episodes of {settings.suite.real.name}, training seed {chain.train_seed}; frozen.\n"
    )
    policy = chain.model(episodes - 1)
    path = frozen_policy_yaml(settings, chain.entry, policy, out, f"bench-{chain.label}", header)
    sets = entry_sets(settings, chain.entry)
    reals = paired_real_seeds(settings, chain.train_seed)
    return [Deployment(chain.label, path, chain.train_seed, s, sets) for s in reals]


def run_real_train_stage(
    client: Any,
    settings: Settings,
    episodes: int,
    shard: tuple[int, int] = (0, 1),
    only: list[str] | None = None,
) -> StageCounts:
    """Train every chain not finished yet (of the algorithms `only`, default all; with a shard
    (I, N): chains k with k % N == I) for `episodes` >= 1 episodes (the CLI checks it), then
    deploy its final model; returns what was done and what was found finished."""
    from mosgym.experiment.runner import run_request

    bt.require_parent(client, settings.experiment, settings.bench_id)
    todo = [c for k, c in enumerate(chains(settings, only)) if k % shard[1] == shard[0]]
    counts = StageCounts()
    done = finished_episodes(client, settings)  # chains are disjoint: read once
    deployed = finished_deployments(client, settings)
    for chain in todo:
        real = agent_env(settings.suite.real, chain.entry.agent, chain.entry.env_sets())
        decisions = real.train.total_steps // real.train.interval
        for k in range(episodes):
            req = episode_request(settings, chain, k, decisions)
            label = f"{chain.label} seed {chain.train_seed} episode {k}"
            if req.extra_tags[bt.TRIAL] in done and chain.model(k).is_file():
                counts.skipped.append(label)
                continue
            log.info("training %s on the real env (seed %d)", label, req.seeds[0])
            run_request(req)
            if not chain.model(k).is_file():
                raise MosgymError(f"{label}: the run ended without saving {chain.model(k)}")
            counts.done.append(label)
        for d in final_deployments(settings, chain, episodes):
            req = request(settings, d)
            req.extra_tags[bt.EPISODES] = str(episodes)  # the leaderboard keeps the longest
            deploy_one(settings, d, req, deployed, counts)
    return counts
