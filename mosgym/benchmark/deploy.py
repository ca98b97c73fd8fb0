"""The real stage: every final policy, frozen, on the real env, beside the baselines.

A deployment is an ordinary `mosgym run` run: an agent YAML (kind sb3-policy pointing at the
saved policy, or the in-episode learner's tuned config, or a baseline's file) resolved by
`resolve_request` and run by `run_request`, in the real experiment, with the benchmark's tags
(``mosgym.bench.id``, ``mosgym.bench.algo``, ``mosgym.bench.train_seed``, ``mosgym.bench.trial``)
added. Each one can be repeated by hand with the command `deploy_command` prints.

Resumable: a FINISHED run of the real experiment with the same benchmark and trial id (a hash of
the resolved env and agent configs, the policy file's content and the seed) is not run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mosgym.benchmark import tracking as bt
from mosgym.benchmark.protocol import Settings
from mosgym.benchmark.suite import Entry, baseline_agent, digest
from mosgym.benchmark.train import StageCounts, policy_path
from mosgym.config import to_dict
from mosgym.errors import MosgymError
from mosgym.experiment.request import RunRequest, resolve_request
from mosgym.records.runs import search_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """One real run: an agent YAML on the real env with one seed."""

    algo: str
    """The algorithm or baseline (tag mosgym.bench.algo)."""
    agent_yaml: Path
    train_seed: int | None
    seed: int
    sets: tuple[str, ...] = ()
    """Env overrides (the suite's, then the entry's interval)."""


def write_yaml(path: Path, data: dict[str, Any], header: str) -> Path:
    """Written under a temporary name, then renamed: a shard reading it never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def policy_yaml(settings: Settings, entry: Entry, seed: int) -> Path:
    """The sb3-policy agent YAML of one trained policy (written next to the policies)."""
    policy = policy_path(settings, entry.algo, seed, settings.trial_id(entry, seed))
    if not policy.is_file():
        raise MosgymError(
            f"no trained policy for {entry.algo} seed {seed} at {policy}: run the simulator "
            "stage first (--stage sim, same settings)"
        )
    header = (
        f"# Written by mosgym.benchmark: {entry.algo} trained {settings.budget} simulated "
        f"env steps on {settings.suite.sim.name}, seed {seed}; frozen.\n"
    )
    out = settings.out / "deploy" / f"{entry.algo}-s{seed}.yaml"
    return frozen_policy_yaml(settings, entry, policy, out, entry.agent_name, header)


def frozen_policy_yaml(
    settings: Settings, entry: Entry, policy: Path, out: Path, name: str, header: str
) -> Path:
    """An sb3-policy agent YAML at `out` acting with `policy`, which `entry` trained."""
    sim = entry.sim_config(settings.suite)
    data = {
        "name": name,
        "kind": "sb3-policy",
        "reward": to_dict(sim.reward),  # the observation carries the reward it trained with
        "action_kind": sim.action.kind,
        "params": {
            "algo": entry.agent.params.algo,
            "path": os.path.relpath(policy.resolve(), out.resolve().parent),
        },
    }
    return write_yaml(out, data, header)


def learner_yaml(settings: Settings, entry: Entry) -> Path:
    """An in-episode learner's agent YAML (its entry's tuned config), named bench-<algo>."""
    data = {k: v for k, v in to_dict(entry.agent).items() if v is not None}
    header = f"# Written by mosgym.benchmark from {entry.path}.\n"
    return write_yaml(settings.out / "deploy" / f"{entry.algo}.yaml", data, header)


def paired_real_seeds(settings: Settings, train_seed: int) -> list[int]:
    """The real seeds a policy of `train_seed` is deployed on ('zip': one, 'cross': all)."""
    if settings.pairing == "zip":
        return [settings.real_seeds[settings.seeds.index(train_seed)]]
    return list(settings.real_seeds)


def entry_sets(settings: Settings, entry: Entry) -> tuple[str, ...]:
    """Env overrides of an entry's real runs: the suite's, then the entry's interval."""
    return tuple(settings.suite.sets) + tuple(entry.env_sets())


def plan(settings: Settings) -> list[Deployment]:
    """Every deployment of the benchmark, algorithms first, then the baselines."""
    sets = tuple(settings.suite.sets)
    out: list[Deployment] = []
    for algo, entry in settings.entries.items():
        extra = entry_sets(settings, entry)
        if not entry.trains:
            path = learner_yaml(settings, entry)
            out += [Deployment(algo, path, None, s, extra) for s in settings.real_seeds]
            continue
        for seed in settings.seeds:
            path = policy_yaml(settings, entry, seed)
            reals = paired_real_seeds(settings, seed)
            out += [Deployment(algo, path, seed, s, extra) for s in reals]
    for name in settings.baselines:
        path, _ = baseline_agent(name)
        out += [Deployment(name, path, None, s, sets) for s in settings.real_seeds]
    return out


def request(settings: Settings, d: Deployment) -> RunRequest:
    """The `mosgym run` request of a deployment, with the benchmark's tags."""
    args = argparse.Namespace(
        env=str(settings.suite.real_path),
        agent=str(d.agent_yaml),
        seeds=str(d.seed),
        steps=None,
        sets=list(d.sets),
        experiment=settings.real_experiment,
        no_progress=True,
        checkpoint_dir=None,
        checkpoint_every=0,
        keep=None,
    )
    req = resolve_request(args)
    tags = {bt.BENCH: settings.bench_id, bt.ALGO: d.algo, bt.TRIAL: deployment_id(req, d)}
    if d.train_seed is not None:
        tags[bt.TRAIN_SEED] = str(d.train_seed)
    return dataclasses.replace(req, extra_tags={**req.extra_tags, **tags})


def deployment_id(req: RunRequest, d: Deployment) -> str:
    """Resolved configs and seed, with a policy's path replaced by its content's hash."""
    agent = dict(req.agent)
    if agent.get("kind") == "sb3-policy":
        params = dict(agent["params"])
        params["path"] = hashlib.sha256(Path(params["path"]).read_bytes()).hexdigest()
        agent["params"] = params
    return digest({"env": req.env, "agent": agent, "seed": d.seed, "algo": d.algo})


def deploy_command(settings: Settings, d: Deployment) -> str:
    """The `mosgym run` command line of a deployment (without the benchmark's tags)."""
    sets = " ".join(f"--set {s}" for s in d.sets)
    return (
        f"mosgym run --env {settings.suite.real_path} --agent {d.agent_yaml} --seeds {d.seed} "
        f"--experiment {settings.real_experiment} --checkpoint-every 0 {sets}"
    ).strip()


def finished_deployments(client: Any, settings: Settings) -> dict[str, Any]:
    """trial id -> the FINISHED real run of this benchmark that holds it."""
    exp_id = bt.experiment_id(client, settings.real_experiment, create=False)
    if exp_id is None:
        return {}
    runs = search_all(client, exp_id, f"tags.`{bt.BENCH}` = '{settings.bench_id}'")
    return {
        r.data.tags[bt.TRIAL]: r
        for r in runs
        if r.info.status == "FINISHED" and bt.TRIAL in r.data.tags
    }


def run_real_stage(client: Any, settings: Settings, shard: tuple[int, int] = (0, 1)) -> StageCounts:
    """Run every deployment not finished yet, one `run_request` at a time; with a shard (I, N)
    only deployments k with k % N == I, so N processes can share the work."""
    bt.require_parent(client, settings.experiment, settings.bench_id)  # before any real run
    counts = StageCounts()
    deployments = plan(settings)
    requests = [request(settings, d) for d in deployments]  # every config error before a run
    done = finished_deployments(client, settings)
    for k, (d, req) in enumerate(zip(deployments, requests, strict=True)):
        if k % shard[1] == shard[0]:
            deploy_one(settings, d, req, done, counts)
    return counts


def deploy_one(
    settings: Settings, d: Deployment, req: RunRequest, done: dict[str, Any], counts: StageCounts
) -> None:
    """Run deployment `d` (request `req`) unless its trial is in `done` (finished before)."""
    from mosgym.experiment.runner import run_request

    label = f"{d.algo} on real seed {d.seed}" + (
        "" if d.train_seed is None else f" (policy of seed {d.train_seed})"
    )
    if req.extra_tags[bt.TRIAL] in done:
        counts.skipped.append(label)
        return
    log.info("deploying %s: %s", label, deploy_command(settings, d))
    run_request(req)
    counts.done.append(label)
