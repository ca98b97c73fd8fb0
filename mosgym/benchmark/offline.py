"""The offline route: CQL and IQL (d3rlpy) trained on the real runs already in MLflow.

No simulator and no new fine-tuning runs for training: the transitions of every usable logged
run of the suite's real env (mosgym.benchmark.offline_data) are the whole training set. Each
algorithm x training seed learns from them for --offline-steps gradient steps, leaving out every
run on the real seed(s) its policy will be deployed on (with --pairing zip, seed i's policy is
scored on real seed i and has never seen an episode of it). The learned actor is written as an
SB3 SAC policy (the same network: two ReLU layers, a mean head, tanh; d3rlpy's deterministic
action is SAC's), checked to act the same on the data, and deployed frozen like a
simulator-trained policy, under the name ``<algo>-offline``.

d3rlpy pins gymnasium==1.0.0 and imports the unmaintained `gym`, so it is not a dependency: it
is installed without its pins (`INSTALL`: the `offline` extra, then d3rlpy and gym with
--no-deps, which also leaves out gym_notices, whose banner SB3's own `import gym` would print
in every run); it only trains, and nothing it writes is read back.

Hyperparameters are d3rlpy's defaults but for a smaller CQL action sample (4 instead of 10:
an update at batch 256 costs about 0.07 s instead of 0.13 s on one CPU thread) and are not
tuned (scoring each candidate would take real runs; tuning it in the simulator would leave
the offline setting). Resumable: the dataset is
collected once (offline/dataset.npz; delete it to collect again) and a policy whose record
(algorithm, settings, data hash) matches is not trained again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mosgym.benchmark import tracking as bt
from mosgym.benchmark.deploy import (
    Deployment,
    deploy_one,
    finished_deployments,
    paired_real_seeds,
    request,
    write_yaml,
)
from mosgym.benchmark.offline_data import OFFLINE_REWARD, Transitions, collect
from mosgym.benchmark.protocol import Settings
from mosgym.benchmark.train import StageCounts
from mosgym.config import to_dict
from mosgym.errors import MosgymError
from mosgym.experiment.sim2real import cfg_skill_names

log = logging.getLogger(__name__)

OFFLINE_ALGOS = ("cql", "iql")
HIDDEN = (256, 256)
"""The actor's (and critics') hidden layers: d3rlpy's default, rebuilt as SB3 SAC's net_arch."""
SETTINGS: dict[str, dict[str, Any]] = {
    "cql": {"batch_size": 256, "n_action_samples": 4},
    "iql": {"batch_size": 256},
}
"""Per algorithm: d3rlpy config fields that differ from its defaults."""
INSTALL = 'pip install "mosgym[offline]" && pip install --no-deps d3rlpy==2.8.1 gym==0.26.2'
_ACT_TOL = 1e-5


def check_algos(names: list[str]) -> list[str]:
    """Known offline algorithms, each once; one error line otherwise."""
    bad = [a for a in names if a not in OFFLINE_ALGOS]
    if bad or not names or len(set(names)) != len(names):
        raise MosgymError(
            f"--offline-algos {' '.join(names)}: name each of {', '.join(OFFLINE_ALGOS)} at most "
            "once, at least one"
        )
    return list(names)


def _d3rlpy() -> Any:
    try:
        import d3rlpy
    except ImportError as e:
        raise MosgymError(
            f"--stage offline needs d3rlpy ({e}); install it with: {INSTALL}"
        ) from None
    return d3rlpy


def dataset(client: Any, settings: Settings) -> Transitions:
    """The logged transitions of the suite's real env: collected once, then read back."""
    path = settings.out / "offline" / "dataset.npz"
    if path.is_file():
        return Transitions.load(path)
    data = collect(client, settings.suite.real)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".dataset.{os.getpid()}.npz")
    data.save(tmp)
    os.replace(tmp, path)
    log.info(
        "offline data: %d transitions of %d runs -> %s", len(data.rewards), len(data.run_ids), path
    )
    return data


def train(algo: str, data: Transitions, steps: int, seed: int) -> Any:
    """A d3rlpy algorithm fitted for `steps` gradient steps on `data` (seeded, quiet)."""
    import structlog

    d3rlpy = _d3rlpy()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    d3rlpy.seed(seed)  # random, numpy and torch
    mdp = d3rlpy.dataset.MDPDataset(
        data.observations, data.actions, data.rewards.astype(np.float32), data.terminals
    )
    enc = d3rlpy.models.VectorEncoderFactory(list(HIDDEN))
    config_cls = {"cql": d3rlpy.algos.CQLConfig, "iql": d3rlpy.algos.IQLConfig}[algo]
    extra = {"value_encoder_factory": enc} if algo == "iql" else {}  # IQL's V(s) network
    config = config_cls(
        actor_encoder_factory=enc, critic_encoder_factory=enc, **extra, **SETTINGS[algo]
    )
    model = config.create(device="cpu:0")
    model.fit(
        mdp,
        n_steps=steps,
        n_steps_per_epoch=steps,
        show_progress=False,
        save_interval=steps + 1,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    return model


class _Spaces(gym.Env):
    """Only spaces: what SB3 needs to build a policy it will not train."""

    def __init__(self, obs: gym.Space, act: gym.Space) -> None:
        self.observation_space, self.action_space = obs, act


def export_sac(model: Any, n: int, path: Path, check: np.ndarray) -> None:
    """Write the d3rlpy actor as an SB3 SAC policy at `path`; refuse if the two act differently
    on the observations `check` (K, D)."""
    import torch
    from stable_baselines3 import SAC

    from mosgym.agents.policy_file import mosgym_spaces

    sac = SAC(
        "MlpPolicy",
        _Spaces(*mosgym_spaces(n, "continuous")),
        policy_kwargs={"net_arch": list(HIDDEN)},
        buffer_size=1,
        device="cpu",
    )
    src = model.impl.modules.policy
    with torch.no_grad():
        for dst, layer in zip(
            (sac.actor.latent_pi[0], sac.actor.latent_pi[2], sac.actor.mu),
            (src._encoder._layers[0], src._encoder._layers[2], src._mu),
            strict=True,
        ):
            dst.weight.copy_(layer.weight)
            dst.bias.copy_(layer.bias)
    ours, _ = sac.predict(check, deterministic=True)
    gap = float(np.max(np.abs(ours - model.predict(check))))
    if gap > _ACT_TOL:
        raise MosgymError(f"offline export: the SAC policy acts {gap:.2g} off d3rlpy's; not saved")
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.zip")
    sac.save(tmp)
    os.replace(tmp, path)


def policy_file(settings: Settings, algo: str, seed: int) -> Path:
    return settings.out / "offline" / f"{algo}-s{seed}.zip"


def train_one(
    client: Any,
    parent: bt.Parent,
    settings: Settings,
    algo: str,
    seed: int,
    data: Transitions,
    steps: int,
) -> bool:
    """Train and export one policy unless its record matches; True when trained now."""
    held_out = paired_real_seeds(settings, seed)
    part = data.without_seeds(held_out)
    record = {
        "algo": algo,
        "seed": seed,
        "steps": steps,
        "settings": SETTINGS[algo],
        "hidden": list(HIDDEN),
        "data": part.digest(),
        "held_out_real_seeds": held_out,
    }
    path = policy_file(settings, algo, seed)
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        if {k: v for k, v in json.loads(meta.read_text()).items() if k in record} == record:
            return False
    if not part.run_ids:
        raise MosgymError(
            f"offline {algo} seed {seed}: no logged run left once the real seeds "
            f"{held_out} are held out"
        )
    tags = {bt.KIND: bt.OFFLINE_KIND, bt.BENCH: settings.bench_id, bt.ALGO: f"{algo}{bt.OFFLINE}",
            bt.TRAIN_SEED: str(seed)}  # fmt: skip
    with bt.child_run(client, parent, f"{algo}{bt.OFFLINE} s{seed}", tags) as run_id:
        start = time.perf_counter()
        model = train(algo, part, steps, seed)
        seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        export_sac(model, len(cfg_skill_names(settings.suite.real)), path, part.observations[:256])
        record.update(transitions=len(part.rewards), runs=len(part.run_ids), train_seconds=seconds)
        tmp = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, meta)  # last: a policy without its record is trained again
        bt.log_params(client, run_id, {k: v for k, v in record.items() if k != "settings"})
        bt.log_metrics(client, run_id, {"train_seconds": seconds, "transitions": len(part.rewards)})
    log.info("offline %s seed %d: %d transitions of %d runs, %d steps, %.0f s", algo, seed,
             len(part.rewards), len(part.run_ids), steps, seconds)  # fmt: skip
    return True


def policy_yaml(settings: Settings, algo: str, seed: int) -> Path:
    """The sb3-policy agent YAML of one offline policy."""
    path = policy_file(settings, algo, seed)
    out = path.with_suffix(".yaml")
    data = {
        "name": f"bench-{algo}{bt.OFFLINE}",
        "kind": "sb3-policy",
        "reward": to_dict(OFFLINE_REWARD),
        "action_kind": "continuous",
        "params": {"algo": "sac", "path": path.name},
    }
    header = (
        f"# Written by mosgym.benchmark --stage offline: {algo} (d3rlpy) trained on logged real "
        f"runs of {settings.suite.real.name}, seed {seed}; frozen, exported as an SB3 SAC actor.\n"
    )
    return write_yaml(out, data, header)


def run_offline_stage(
    client: Any,
    settings: Settings,
    algos: list[str],
    steps: int,
    shard: tuple[int, int] = (0, 1),
) -> StageCounts:
    """Train (unless done) and deploy every offline algorithm x training seed of the shard."""
    parent = bt.require_parent(client, settings.experiment, settings.bench_id)
    _d3rlpy()
    data = dataset(client, settings)
    counts = StageCounts()
    deployed = finished_deployments(client, settings)
    jobs = [(a, s) for a in algos for s in settings.seeds]
    for k, (algo, seed) in enumerate(jobs):
        if k % shard[1] != shard[0]:
            continue
        label = f"{algo}{bt.OFFLINE} seed {seed}"
        trained = train_one(client, parent, settings, algo, seed, data, steps)
        (counts.done if trained else counts.skipped).append(label)
        path = policy_yaml(settings, algo, seed)
        for real in paired_real_seeds(settings, seed):
            d = Deployment(f"{algo}{bt.OFFLINE}", path, seed, real, tuple(settings.suite.sets))
            deploy_one(settings, d, request(settings, d), deployed, counts)
    return counts
