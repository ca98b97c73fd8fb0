"""mosgym inside a transformers Trainer / TRL SFTTrainer: the stream, the callback's rewards
against the environment's, training left as it is, resume, MLflow, torchrun, bad setups.

The 2-rank test runs this module as a script under torchrun (`python -m tests.test_integrations
ranks OUT`), as tests/test_distributed.py does.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

from mosgym.config import ModelConfig, SkillConfig, TrainConfig
from mosgym.data import Skill, load_skills
from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
from mosgym.errors import MosgymError
from mosgym.integrations import (
    STATE_FILE,
    MixtureCallback,
    MixtureDataset,
    skill_examples,
    tokenized_split,
)
from mosgym.integrations.trainloss import TrainLossTracker
from mosgym.learner.base import Learner
from mosgym.learner.collate import PackedSplit, response_nll
from mosgym.learner.hf import HFLearner
from mosgym.learner.model import load_model

REPO = Path(__file__).resolve().parents[1]
TINY = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, device="cpu")
SIZES = {"copy": 60, "reverse": 50, "sort": 40, "count": 30, "lookup": 24, "add": 16}
MOS_DIFF = {"kind": "mos", "reward": {"type": "diff", "ema": True}}


@functools.lru_cache(maxsize=1)
def _skills() -> tuple[Skill, ...]:
    """Six small built-in skills (8 dev, 8 probe examples each), tokenized once."""
    cfgs = [SkillConfig(name=n, task=n, n_train=k, n_dev=8, n_probe=8) for n, k in SIZES.items()]
    return tuple(load_skills(cfgs, load_model(TINY).tokenizer, 64, 0, cache_dir=""))


def _examples(split: str = "train", mask: str = "labels") -> dict[str, list[dict]]:
    return skill_examples(list(_skills()), split, mask)


def _trainer(
    out: Path, mixture: MixtureDataset, steps: int = 40, sft: bool = False, dropout: float = 0.0,
    **kw: Any,
):  # fmt: skip
    """A Trainer (or SFTTrainer, completion-only loss) on a fresh tiny model, CPU, batch 4."""
    loaded = load_model(dataclasses.replace(TINY, dropout=dropout), seed=0)
    settings: dict[str, Any] = {
        "output_dir": str(out),
        "max_steps": steps,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "logging_steps": 5,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        **kw,
    }
    if sft:
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**settings, completion_only_loss=True, max_length=64)
        data = mixture.as_hf_dataset()
        return SFTTrainer(loaded.model, args, train_dataset=data, processing_class=loaded.tokenizer)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer)
    return Trainer(loaded.model, TrainingArguments(**settings), collator, mixture)


def _losses(trainer: Trainer) -> list[tuple[int, float]]:
    return [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]


# --------------------------------------------------------------------------------------------
# The stream


def _take(data: MixtureDataset, n: int, changes: dict[int, list[float]] | None = None) -> list:
    """The first n (skill, example index) draws, changing the mixture at given positions."""
    out, draws = [], data._draws()
    for pos in range(n):
        if changes and pos in changes:
            data.set_mixture(changes[pos])
        out.append(next(draws))
    return out


def test_stream_follows_the_mixture_and_the_seed() -> None:
    data = MixtureDataset({"a": [{}] * 5, "b": [{}] * 7, "c": [{}] * 3}, [1, 0, 0], seed=1)
    draws = _take(data, 40, {20: [0, 0, 1]})
    assert {s for s, _ in draws[:20]} == {0} and {s for s, _ in draws[20:]} == {2}
    assert sorted(i for _, i in draws[:5]) == list(range(5))  # a seeded walk, epoch by epoch
    assert data.path[-1][0] == 20 and data.consumed.tolist() == [20, 0, 20]
    uniform = [MixtureDataset({"a": [{}] * 5, "b": [{}] * 7}, seed=s) for s in (3, 3, 4)]
    runs = [_take(d, 200) for d in uniform]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert abs(sum(s for s, _ in runs[0]) / 200 - 0.5) < 0.1


@pytest.mark.parametrize("replay", [True, False])
def test_stream_resumes_from_its_state(replay: bool) -> None:
    """Replay: a new iterator draws the saved path again from position 0 (what a Trainer that
    fast-forwards needs); otherwise it continues at the saved position."""
    skills = {"a": [{}] * 5, "b": [{}] * 7, "c": [{}] * 3}
    changes = {30: [0.2, 0.0, 0.8], 60: [0.5, 0.5, 0.0], 90: [0.1, 0.1, 0.8]}
    whole = _take(MixtureDataset(skills, seed=2), 120, changes)
    first = MixtureDataset(skills, seed=2)
    _take(first, 80, {k: v for k, v in changes.items() if k < 80})
    state = json.loads(json.dumps(first.state_dict()))
    again = MixtureDataset(skills, seed=2)
    again.load_state_dict(state, replay=replay)
    start = 0 if replay else 80
    assert (
        _take(again, 120 - start, {k - start: v for k, v in changes.items() if k >= 80})
        == (whole[start:])
    )


def test_ranks_get_disjoint_slices_of_one_stream() -> None:
    """Under accelerate every rank iterates the same stream and keeps its slice of each global
    batch (IterableDatasetShard), so both follow one mixture and never share a position."""
    from accelerate.data_loader import IterableDatasetShard

    skills = {k: [{"k": k, "i": i} for i in range(9)] for k in "abc"}
    stream = [(e["k"], e["i"]) for e in itertools.islice(MixtureDataset(skills, seed=5), 24)]
    shards = [IterableDatasetShard(MixtureDataset(skills, seed=5), 4, False, 2, r) for r in (0, 1)]
    ranks = [[(e["k"], e["i"]) for e in itertools.islice(shard, 12)] for shard in shards]
    for j in range(3):
        assert ranks[0][4 * j : 4 * j + 4] == stream[8 * j : 8 * j + 4]
        assert ranks[1][4 * j : 4 * j + 4] == stream[8 * j + 4 : 8 * j + 8]


# --------------------------------------------------------------------------------------------
# The callback in a Trainer


class Snapshots(TrainerCallback):
    """The model's weights at every `every`-th optimizer step."""

    def __init__(self, every: int) -> None:
        self.every, self.weights = every, {}

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        if state.global_step % self.every == 0:
            self.weights[state.global_step] = copy.deepcopy(model.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("reward", [{"type": "cossim", "ema": True}, {"type": "diff", "ema": True}])
def test_mos_moves_the_mixture_with_the_environments_rewards(tmp_path: Path, reward: dict) -> None:
    """40 Trainer steps, S = 10: the mixture moves, and at every update the rewards equal
    those the environment's RewardComputer computes on an HFLearner holding the same weights
    and probing the same examples (the skills' fixed probe splits)."""
    mixture = MixtureDataset(_examples(), seed=0)
    trainer = _trainer(tmp_path, mixture)
    callback = MixtureCallback(
        trainer, mixture, {"kind": "mos", "reward": reward}, interval=10, probe_size=8,
        probe=_examples("probe"), dev=_examples("dev"), eval_batch_size=16,
    )  # fmt: skip
    snaps = Snapshots(10)
    trainer.add_callback(callback)
    trainer.add_callback(snaps)
    trainer.train()
    assert isinstance(callback.s.learner, Learner)  # the protocol the rewards see
    updates = callback.history[1:]
    assert [h["step"] for h in updates] == [10, 20, 30, 40]
    assert np.abs(updates[-1]["mixture"] - 1 / 6).max() > 1e-3

    train = TrainConfig(total_steps=40, interval=10, batch_size=4, probe_size=8,
                        probe_source="probe", eval_batch_size=16)  # fmt: skip
    learner = HFLearner(list(_skills()), load_model(TINY, seed=0), train)
    env = MixtureOfSkillsEnv({"train": vars(train), "reward": reward}, learner=learner)
    env.rewards.reset()
    for h in updates:
        state = learner.state_dict()
        state["model"], state["at_init"] = snaps.weights[h["step"]], False
        learner.load_state_dict(state)
        result = env.rewards.compute(learner)
        np.testing.assert_allclose(h["raw_rewards"], result.raw, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(h["rewards"], result.smoothed, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(h["dev_loss"], learner.dev_loss(), rtol=1e-6)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast needs CUDA")


@pytest.mark.parametrize("precision", ["bf16", pytest.param("fp16", marks=[pytest.mark.gpu, CUDA])])
def test_the_callback_leaves_training_as_it_is(tmp_path: Path, precision: str) -> None:
    """Gradient accumulation 2, bf16 (CPU) or fp16 (CUDA) autocast, response-only labels,
    attention dropout: a run whose callback probes every 5 steps (with a static mixture) trains
    exactly like the same Trainer without mosgym's callback (the probes leave the training
    mode, the dropout RNG and the gradients as they were)."""
    settings: dict[str, Any] = {"gradient_accumulation_steps": 2, precision: True}
    if precision == "fp16":  # on the GPU, with deterministic kernels
        settings.update(use_cpu=False, full_determinism=True)
    losses = []
    for with_callback in (True, False):
        mixture = MixtureDataset(_examples(), seed=0)
        trainer = _trainer(tmp_path / str(with_callback), mixture, 20, dropout=0.1, **settings)
        if with_callback:
            static = {"kind": "static", "params": {"tau": "inf"}}
            callback = MixtureCallback(
                trainer, mixture, static, interval=5, probe_size=8, reward={"type": "cossim"}
            )
            trainer.add_callback(callback)
        batch = next(iter(trainer.get_train_dataloader()))
        assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
        trainer.train()
        losses.append(_losses(trainer))
    assert len(callback.history) == 5 and callback.s.learner.autocast_dtype == getattr(
        torch, {"bf16": "bfloat16", "fp16": "float16"}[precision]
    )
    assert len(losses[0]) == 4 and losses[0] == losses[1]


def test_sft_trainer_with_a_simulator_trained_policy(tmp_path: Path) -> None:
    """TRL's SFTTrainer, completion-only loss, the PPO policy trained in the simulator."""
    pytest.importorskip("trl")
    mixture = MixtureDataset(_examples(mask="completion_mask"), seed=0)
    trainer = _trainer(tmp_path, mixture, 20, sft=True)
    policy = REPO / "agents" / "ppo-from-sim.yaml"
    callback = MixtureCallback(
        trainer, mixture, policy, interval=5, probe_size=8, dev=_examples("dev")
    )
    trainer.add_callback(callback)
    batch = next(iter(trainer.get_train_dataloader()))
    prompt = batch["input_ids"][0] == 4  # the user token: the prompt is never a label
    assert (batch["labels"][0][prompt] == -100).all() and (batch["labels"][0] != -100).any()
    trainer.train()
    assert [h["step"] for h in callback.history] == [0, 5, 10, 15, 20]
    mixtures = np.array([h["mixture"] for h in callback.history])
    assert np.abs(mixtures[0] - 1 / 6).max() > 0.05  # the policy's own mixture, not uniform
    assert np.abs(np.diff(mixtures, axis=0)).max() > 1e-3  # ... that follows the observations
    assert len(_losses(trainer)) == 4


ODM = {"kind": "odm", "reward": {"type": "train_loss"}}


@pytest.mark.slow
@pytest.mark.parametrize("agent, save_at", [(MOS_DIFF, 20), (ODM, 15)], ids=["mos-diff", "odm"])
def test_resume_continues_the_same_mixture_path(tmp_path: Path, agent: dict, save_at: int) -> None:
    """A run resumed from a Trainer checkpoint draws the same data, trains the same losses and
    takes the same mixtures as the uninterrupted run (ODM: saved between two updates, so the
    interval's per-skill training-loss sums are restored too)."""
    runs = []
    for resume in (None, tmp_path / f"checkpoint-{save_at}"):
        mixture = MixtureDataset(_examples(), seed=0)
        trainer = _trainer(tmp_path, mixture, save_strategy="steps", save_steps=save_at)
        callback = MixtureCallback(
            trainer, mixture, agent, interval=10, probe_size=8, dev=_examples("dev")
        )
        trainer.add_callback(callback)
        trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
        runs.append((callback.history, _losses(trainer)))
    (whole, whole_losses), (resumed, resumed_losses) = runs
    assert (tmp_path / f"checkpoint-{save_at}" / STATE_FILE).is_file()
    after = [h for h in whole if h["step"] > save_at]
    assert [h["step"] for h in resumed] == [h["step"] for h in after]
    assert len(after) == (2 if save_at == 20 else 3)
    later = [x for x in whole_losses if x[0] > save_at]
    assert len(later) >= 4 and [x for x in resumed_losses if x[0] > save_at] == later
    for a, b in zip(after, resumed, strict=True):
        assert a["step"] == b["step"] and a["position"] == b["position"]
        np.testing.assert_array_equal(a["mixture"], b["mixture"])
        np.testing.assert_array_equal(a["rewards"], b["rewards"])
    if agent is MOS_DIFF:  # (ODM's EXP3 explores uniformly for its first 10 updates)
        assert np.abs(whole[-1]["mixture"] - 1 / 6).max() > 1e-3


def test_resuming_a_checkpoint_without_mixing_state_is_refused(tmp_path: Path) -> None:
    mixture = MixtureDataset(_examples(), seed=0)
    _trainer(tmp_path, mixture, 2, save_strategy="steps", save_steps=2).train()
    trainer = _trainer(tmp_path, mixture, 4)
    trainer.add_callback(MixtureCallback(trainer, mixture, MOS_DIFF, interval=2, probe_size=8))
    with pytest.raises(MosgymError, match="resume at step 2: no mosgym_mixture.json"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


@pytest.mark.slow
def test_mlflow_holds_the_weights_and_rewards(tmp_path: Path) -> None:
    """report_to='mlflow' (the temporary tracking URI of conftest): the callback's metrics
    land in the Trainer's MLflow run at the optimizer steps of the updates."""
    import mlflow

    mixture = MixtureDataset(_examples(), seed=0)
    trainer = _trainer(tmp_path, mixture, 20, report_to="mlflow", logging_steps=10)
    callback = MixtureCallback(
        trainer, mixture, MOS_DIFF, interval=10, probe_size=8, dev=_examples("dev")
    )
    trainer.add_callback(callback)
    trainer.train()
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])

    def steps(key: str) -> list[int]:
        return [m.step for m in client.get_metric_history(run.info.run_id, key)]

    assert steps("weight/add") == steps("dev_loss/copy") == [0, 10, 20]
    assert steps("reward/lookup") == steps("reward") == [10, 20]
    assert steps("loss") == [10, 20]  # the Trainer's own logging is untouched
    logged = client.get_metric_history(run.info.run_id, "weight/copy")[-1].value
    assert logged == pytest.approx(callback.history[-1]["mixture"][0])


def test_training_loss_hook_matches_the_learner_helpers() -> None:
    """ODM's per-skill training loss from the Trainer's forwards equals each example's mean
    response NLL computed by the learner's helpers (mosgym.learner.collate)."""
    loaded = load_model(TINY, seed=0)
    mixture = MixtureDataset(_examples(), seed=3)
    tracker = TrainLossTracker(loaded.model, mixture, micro_batch=4, chunk=4, rank=0)
    examples = list(itertools.islice(mixture, 8))
    collator = DataCollatorForSeq2Seq(loaded.tokenizer)
    loaded.model.train()
    for j in (0, 4):
        loaded.model(**collator(examples[j : j + 4]))
    with torch.no_grad():
        loaded.model.eval()
        loaded.model(**collator(examples[:4]))  # not a training forward: not counted
    stats = tracker.collect()
    skills = mixture.skills_at(np.arange(8))
    packed = PackedSplit([tokenized_split(examples, "all")])
    with torch.no_grad():
        nll = response_nll(loaded.model, packed.batch(np.arange(8), 0, torch.device("cpu")))
    mean = nll.double().numpy() / packed.n_response
    np.testing.assert_array_equal(stats.examples, np.bincount(skills, minlength=6))
    np.testing.assert_array_equal(stats.tokens, np.bincount(skills, packed.n_response, 6))
    np.testing.assert_allclose(stats.loss_sum, np.bincount(skills, mean, 6), rtol=1e-5)
    assert tracker.collect().examples.sum() == 0  # collected sums start again


# --------------------------------------------------------------------------------------------
# Bad setups


def _bad(case: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(callback arguments, Trainer settings, the error's text) of one bad setup."""
    dev, policy = _examples("dev"), REPO / "agents" / "ppo-from-sim.yaml"
    return {
        "dev missing a skill": (
            {"dev": {k: v for k, v in dev.items() if k != "add"}},
            {},
            "dev sets: skill 'add' of the dataset has none",
        ),
        "probe of an unknown skill": (
            {"probe": {**dev, "chess": dev["add"]}},
            {},
            "probe sets: 'chess' is not a skill of the dataset",
        ),
        "policy for 6 skills on 3": (
            {"agent": policy, "dev": dev, "skills": ("copy", "sort", "add")},
            {},
            "the policy was trained for observations Box",
        ),
        "weights for 2 skills on 6": (
            {"agent": {"kind": "static", "params": {"weights": [1, 2]}}},
            {},
            "params.weights has 2 entries but the env has 6 skills",
        ),
        "interval longer than the run": (
            {"interval": 50},
            {},
            "interval 50 is longer than the run \\(max_steps=40\\)",
        ),
        "data-loader workers": ({}, {"dataloader_num_workers": 2}, "dataloader_num_workers=2"),
        "online sb3": ({"agent": REPO / "agents" / "ppo.yaml"}, {}, "kind 'sb3' learns by"),
        "gradient reward": ({"reward": {"type": "multidds"}}, {}, "multidds: not available"),
        "policy without dev sets": ({"agent": policy}, {}, "per-skill dev loss is needed"),
    }[case]


@pytest.mark.parametrize(
    "case",
    [
        "dev missing a skill",
        "probe of an unknown skill",
        "policy for 6 skills on 3",
        "weights for 2 skills on 6",
        "interval longer than the run",
        "data-loader workers",
        "online sb3",
        "gradient reward",
        "policy without dev sets",
    ],
)
def test_bad_setups_are_one_clear_error(tmp_path: Path, case: str) -> None:
    kwargs, settings, message = _bad(case)
    names = kwargs.pop("skills", tuple(SIZES))
    mixture = MixtureDataset({k: v for k, v in _examples().items() if k in names})
    trainer = _trainer(tmp_path, mixture, **settings)
    if "dev" in kwargs:
        kwargs["dev"] = {k: v for k, v in kwargs["dev"].items() if k in names or k == "chess"}
    kwargs = {"agent": MOS_DIFF, "interval": 10, "probe_size": 8, **kwargs}
    with pytest.raises(MosgymError, match=message):
        MixtureCallback(trainer, mixture, **kwargs)


# --------------------------------------------------------------------------------------------
# Two ranks under torchrun (gloo)


MOS_TRAIN_LOSS = {"kind": "mos", "reward": {"type": "train_loss"}}


def run_ranks(out: Path) -> None:
    """What each torchrun rank runs: 20 Trainer steps (DDP on gloo), MoS with S = 5 learning
    from the per-skill training loss (each rank attributes its own rows, summed over ranks);
    every rank writes its mixtures, rewards, counts, the mixture path and its token rows."""
    mixture = MixtureDataset(_examples(), seed=0)
    trainer = _trainer(out / "run", mixture, 20, ddp_backend="gloo")
    callback = MixtureCallback(
        trainer, mixture, MOS_TRAIN_LOSS, interval=5, probe_size=8, dev=_examples("dev")
    )
    trainer.add_callback(callback)
    rows: list[list[list[int]]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if module.training and torch.is_grad_enabled():
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"].bool()
            rows.append([row[keep].tolist() for row, keep in zip(ids, mask, strict=True)])

    trainer.model.register_forward_hook(record, with_kwargs=True)
    trainer.train()
    record_ = {
        "world": trainer.args.world_size,
        "steps": [h["step"] for h in callback.history],
        "mixtures": [h["mixture"].tolist() for h in callback.history],
        "rewards": [h["rewards"].tolist() for h in callback.history[1:]],
        "examples": [h["examples"].tolist() for h in callback.history[1:]],
        "path": [[pos, p.tolist()] for pos, p in mixture.path],
        "rows": rows,
    }
    (out / f"rank{trainer.args.process_index}.json").write_text(json.dumps(record_))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_ranks_keep_one_mixture(tmp_path: Path) -> None:
    """Both ranks hold the same mixture and rewards at every update, and each trains its own
    slice of one stream drawn from that mixture path: rank r's micro-batch j is stream
    positions (2j + r) * 4 ... + 3, so no example position is trained twice at a step; the
    per-skill training-loss counts cover both ranks' rows."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--master-port", str(_free_port()), "-m", "tests.test_integrations", "ranks"]
    proc = subprocess.run(
        [*cmd, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and ranks[0]["steps"] == [0, 5, 10, 15, 20]
    for key in ("mixtures", "path", "rewards", "examples"):
        assert ranks[0][key] == ranks[1][key], key
    assert np.abs(np.array(ranks[0]["mixtures"][-1]) - 1 / 6).max() > 1e-3
    path = ranks[0]["path"]
    data = MixtureDataset(_examples(), seed=0)
    data.begin(path[0][1])
    draws = _take(data, 2 * 4 * 20, {pos: p for pos, p in path[1:]})
    train = list(_examples().values())
    stream = [train[s][i]["input_ids"] for s, i in draws]
    skills = np.array([s for s, _ in draws])
    for k, counts in enumerate(ranks[0]["examples"]):  # 5 steps x 2 ranks x 4 rows each
        assert counts == np.bincount(skills[40 * k : 40 * (k + 1)], minlength=6).tolist()
    for r, rank in enumerate(ranks):
        assert len(rank["rows"]) == 20
        for j, rows in enumerate(rank["rows"]):
            assert rows == stream[(2 * j + r) * 4 : (2 * j + r + 1) * 4], (r, j)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["hf_trainer.py", "trl_sft.py"])
def test_examples_run(tmp_path: Path, script: str) -> None:
    """The examples, on a tiny budget, in a subprocess."""
    if script == "trl_sft.py":
        pytest.importorskip("trl")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    cmd = [sys.executable, str(REPO / "examples" / script), "--steps", "10", "--interval", "5"]
    cmd += [
        "--scale",
        "0.01",
        *(["--out", str(tmp_path / "out")] if script == "hf_trainer.py" else []),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line.split() for line in proc.stdout.splitlines()]
    steps = [row[0] for row in table if len(row) == 8 and row[0].isdigit()]
    assert steps == ["0", "5", "10"], proc.stdout


if __name__ == "__main__":
    if sys.argv[1] == "ranks":
        run_ranks(Path(sys.argv[2]))
