"""HFLearner: masking, determinism, sampling, probes, initial NLL, reset/resume, evaluation."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from mosgym.config import ModelConfig, TrainConfig
from mosgym.data.types import IGNORE_INDEX, Skill, TokenizedSplit
from mosgym.errors import MosgymError
from mosgym.learner.base import Learner
from mosgym.learner.collate import PackedSplit
from mosgym.learner.hf import HFLearner
from mosgym.learner.model import LoadedModel, load_model
from mosgym.learner.schedule import SkillSampler, lr_factor
from mosgym.learner.tokenizer import build_byte_tokenizer


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """Tiny models run fastest on one thread (and the test machine's cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
TOK = build_byte_tokenizer()


def make_split(pairs: list[tuple[str, str]], tag: str) -> TokenizedSplit:
    """Tokenize (prompt, response) pairs with the chat template; labels only on the response."""
    ids, labels, prompts = [], [], []
    for q, a in pairs:
        chat = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        full = np.array(TOK.apply_chat_template(chat, tokenize=True)["input_ids"])
        prompt = np.array(
            TOK.apply_chat_template(chat[:1], tokenize=True, add_generation_prompt=True)[
                "input_ids"
            ]
        )
        label = full.copy()
        label[: len(prompt)] = IGNORE_INDEX
        ids.append(full)
        labels.append(label)
        prompts.append(prompt)
    names = [f"{tag}/{i}" for i in range(len(pairs))]
    return TokenizedSplit(names, ids, labels, prompts, [a for _, a in pairs])


def make_skill(name: str, n_train: int, seed: int, exact: bool = True, n_dev: int = 8) -> Skill:
    """Arithmetic-like text of varied lengths (so padding matters)."""
    rng = np.random.default_rng(seed)

    def pairs(k: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(k):
            a, b = (int(x) for x in rng.integers(0, 10 ** rng.integers(1, 4), 2))
            out.append((f"{name} {a} {b}", str(a + b) if name == "add" else f"{b} {a}"))
        return out

    return Skill(
        name,
        make_split(pairs(n_train), f"{name}/train"),
        make_split(pairs(n_dev), f"{name}/dev"),
        make_split(pairs(8), f"{name}/probe"),
        exact_match=exact,
    )


def make_skills(sizes: tuple[int, ...] = (24, 16, 8)) -> list[Skill]:
    names = ["add", "swap", "chat"]
    return [make_skill(names[i], n, 10 + i, exact=i < 2) for i, n in enumerate(sizes)]


def make_learner(
    skills: list[Skill] | None = None, model: ModelConfig = TINY, seed: int = 0, **train
) -> HFLearner:
    defaults = dict(total_steps=40, interval=10, batch_size=8, probe_size=4, eval_batch_size=8)
    cfg = TrainConfig(**{**defaults, **train})
    return HFLearner(skills or make_skills(), load_model(model, seed=0), cfg, seed=seed)


def manual_response_nll(loaded: LoadedModel, ids: np.ndarray, labels: np.ndarray) -> float:
    """Mean NLL over response tokens of one example, straight from model(...).logits."""
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor(ids)[None]).logits[0, :-1]
    target = torch.tensor(labels[1:])
    keep = target != IGNORE_INDEX
    return float(F.cross_entropy(logits[keep], target[keep]))


def params(learner: HFLearner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.model.parameters()]


UNIFORM = np.ones(3) / 3


def test_protocol_and_attributes() -> None:
    learner = make_learner()
    assert isinstance(learner, Learner)
    assert learner.skill_names == ["add", "swap", "chat"]
    assert learner.train_sizes.tolist() == [24, 16, 8]
    learner.train(UNIFORM, 2)
    assert learner.step == 2 and learner.consumed.sum() == 16
    assert learner.tokens_seen.sum() > 0


def test_collate_pads_and_masks() -> None:
    split = make_split([("a", "bc"), ("long prompt", "d")], "t")
    packed = PackedSplit([split])
    batch = packed.batch(np.array([0, 1]), pad_id=0, device=torch.device("cpu"))
    n0, n1 = len(split.input_ids[0]), len(split.input_ids[1])
    assert batch.input_ids.shape == (2, max(n0, n1))
    assert batch.input_ids[0, :n0].tolist() == split.input_ids[0].tolist()
    assert batch.input_ids[0, n0:].eq(0).all() and batch.attention_mask[0, n0:].eq(0).all()
    assert batch.labels[0, n0:].eq(IGNORE_INDEX).all()
    # response "bc" + eos are trained tokens; the prompt is not.
    assert packed.n_response.tolist() == [3, 2]
    ids, mask = packed.prompt_batch(np.array([0, 1]), 0, torch.device("cpu"))
    p0 = split.prompt_ids[0]
    assert ids[0, -len(p0) :].tolist() == p0.tolist() and mask[0, : -len(p0)].eq(0).all()


def test_loss_is_response_only_by_hand() -> None:
    """One skill whose train split is exactly one batch: the step's loss (before the update)
    equals a manual cross-entropy over the response positions of a copy of the model."""
    skill = make_skill("add", 8, seed=3)
    loaded = load_model(TINY)
    reference = copy.deepcopy(loaded)
    cfg = TrainConfig(total_steps=10, batch_size=8, grad_accum=2, probe_size=4)
    stats = HFLearner([skill], loaded, cfg).train(np.ones(1), 1)
    split = skill.train
    per_ex = [
        manual_response_nll(reference, x, y)
        for x, y in zip(split.input_ids, split.labels, strict=True)
    ]
    n_resp = np.array([(y[1:] != IGNORE_INDEX).sum() for y in split.labels])
    assert stats.loss_sum[0] == pytest.approx(sum(per_ex), rel=1e-5)
    token_mean = float(np.dot(per_ex, n_resp) / n_resp.sum())
    assert stats.step_losses[0] == pytest.approx(token_mean, rel=1e-5)
    assert stats.tokens[0] == n_resp.sum() and stats.examples[0] == 8
    # The prompt-included loss is clearly different, so masking is what made them equal.
    with torch.no_grad():
        x = torch.tensor(split.input_ids[0])[None]
        full = float(F.cross_entropy(reference.model(input_ids=x).logits[0, :-1], x[0, 1:]))
    assert abs(full - per_ex[0]) > 1e-3


def test_same_seed_same_losses_other_seed_differs() -> None:
    a = make_learner(seed=1).train(UNIFORM, 3)
    b = make_learner(seed=1).train(UNIFORM, 3)
    c = make_learner(seed=2).train(UNIFORM, 3)
    assert np.array_equal(a.step_losses, b.step_losses)
    assert np.array_equal(a.loss_sum, b.loss_sum)
    assert not np.array_equal(a.step_losses, c.step_losses)


def test_step_changes_parameters_and_repeated_batch_lowers_loss() -> None:
    skill = make_skill("add", 8, seed=4)
    cfg = TrainConfig(total_steps=100, warmup_ratio=0.0, lr=1e-2, batch_size=8, probe_size=4)
    learner = HFLearner([skill], load_model(TINY), cfg)
    before = params(learner)
    first = learner.train(np.ones(1), 1).step_losses[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, params(learner), strict=True))
    later = learner.train(np.ones(1), 15).step_losses  # the same 8 examples every step
    assert later[-1] < 0.7 * first


def test_lr_schedule_by_hand_and_applied() -> None:
    expected = [0.5, 1.0, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0]
    assert [lr_factor(k, 10, 0.2) for k in range(11)] == pytest.approx(expected)
    learner = make_learner(total_steps=10, warmup_ratio=0.2, lr=0.01)
    learner.train(UNIFORM, 4)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 7 / 8)


def test_sampled_counts_follow_mixture() -> None:
    mixture = np.array([0.6, 0.3, 0.1])
    model = ModelConfig(hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8)
    learner = make_learner(model=model, batch_size=64)
    counts = learner.train(mixture, 25).examples
    assert counts.sum() == 1600 and np.array_equal(counts, learner.consumed)
    assert scipy.stats.chisquare(counts, mixture * counts.sum()).pvalue > 0.01
    wrong = np.array([0.5, 0.3, 0.2])  # the same statistic rejects a clearly different mixture
    assert scipy.stats.chisquare(counts, wrong * counts.sum()).pvalue < 0.01


def test_per_batch_sampling_uses_one_skill_per_step() -> None:
    model = ModelConfig(hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8)
    learner = make_learner(model=model, sampling="per_batch", batch_size=4)
    stats = learner.train(np.array([0.5, 0.5, 0.0]), 12)
    assert np.all(stats.examples % 4 == 0) and stats.examples[2] == 0
    assert stats.examples[0] > 0 and stats.examples[1] > 0


def test_sampler_epochs_are_permutations_and_independent() -> None:
    a = SkillSampler(np.array([5, 3]), seed=0)
    first = a.draw(0, 3)
    rest = a.draw(0, 4)  # crosses into the second epoch
    assert sorted(np.concatenate([first, rest[:2]]).tolist()) == list(range(5))
    assert a.epochs[0] == 1 and a.pos[0] == 2
    b = SkillSampler(np.array([5, 3]), seed=0)
    b.draw(1, 7)  # draws from another skill never change this skill's order
    assert np.array_equal(np.concatenate([b.draw(0, 3), b.draw(0, 4)]), np.r_[first, rest])


@pytest.mark.parametrize(
    "mixture, message",
    [
        ([0.5, -0.1, 0.6], "negative"),
        ([0.5, np.nan, 0.5], "nan"),
        ([0.5, np.inf, 0.5], "inf"),
        ([0.5, 0.5], "shape"),
        ([0.0, 0.0, 0.0], "sum to 0"),
        (["a", "b", "c"], "not numeric"),
    ],
)
def test_bad_mixture_raises(mixture: list, message: str) -> None:
    learner = make_learner()
    with pytest.raises(MosgymError, match=message):
        learner.train(np.array(mixture, dtype=object) if message == "not numeric" else mixture, 1)
    assert learner.step == 0


def test_bad_train_config_raises() -> None:
    with pytest.raises(MosgymError, match="grad_accum"):
        make_learner(batch_size=8, grad_accum=3)
    with pytest.raises(MosgymError, match="sampling"):
        make_learner(sampling="per_token")


def test_batched_probe_equals_one_at_a_time() -> None:
    loaded = load_model(TINY)
    skills = make_skills()
    cfg = dict(probe_source="probe", probe_size=8)
    batched = HFLearner(skills, loaded, TrainConfig(eval_batch_size=8, **cfg)).probe(0, 8)
    single = HFLearner(skills, loaded, TrainConfig(eval_batch_size=1, **cfg)).probe(0, 8)
    assert len(set(skills[0].probe.lengths.tolist())) > 1  # padding really happens
    assert batched.ids == single.ids and batched.n_skipped == 0
    for field in ("nll", "seq_nll", "embeddings", "init_nll"):
        np.testing.assert_allclose(getattr(batched, field), getattr(single, field), atol=1e-5)
    # and by hand: response NLL and mean-pooled last hidden state of example 0
    x, y = skills[0].probe.input_ids[0], skills[0].probe.labels[0]
    assert batched.nll[0] == pytest.approx(manual_response_nll(loaded, x, y), abs=1e-5)
    with torch.no_grad():
        out = loaded.model(input_ids=torch.tensor(x)[None], output_hidden_states=True)
    np.testing.assert_allclose(batched.embeddings[0], out.hidden_states[-1][0].mean(0), atol=1e-5)
    assert batched.embeddings.dtype == np.float32 and batched.embeddings.shape == (8, 32)


def test_probe_drops_examples_without_response() -> None:
    skills = make_skills()
    skills[1].probe.labels[2][:] = IGNORE_INDEX  # NaN response NLL
    result = make_learner(skills, probe_source="probe", probe_size=8).probe(1, 8)
    assert result.n_skipped == 1 and len(result.ids) == 7 and "swap/probe/2" not in result.ids
    assert np.isfinite(result.nll).all()


def test_probe_plan_is_seeded_fresh_and_from_train() -> None:
    a, b = make_learner(seed=3), make_learner(seed=3)
    r1, r2 = a.probe(0, 4), a.probe(0, 4)
    assert r1.ids == b.probe(0, 4).ids and r1.ids != r2.ids
    assert all(i.startswith("add/train/") for i in r1.ids + r2.ids)


def test_initial_nll_equals_fresh_initial_model() -> None:
    learner = make_learner(lr=1e-2, warmup_ratio=0.0)
    learner.train(UNIFORM, 5)
    fresh = load_model(TINY)
    on_plan, off_plan = learner.probe(2, 4), learner.probe(0, 3)  # off-plan: weights swapped in
    for result, skill in ((on_plan, 2), (off_plan, 0)):
        split = learner.skills[skill].train
        rows = [split.ids.index(i) for i in result.ids]
        manual = [manual_response_nll(fresh, split.input_ids[r], split.labels[r]) for r in rows]
        np.testing.assert_allclose(result.init_nll, manual, atol=1e-5)
        assert np.all(np.abs(result.nll - result.init_nll) > 1e-4)  # current model has moved


def test_probes_and_signals_do_not_disturb_training() -> None:
    """Off-plan probes (weight swap), MC dropout and gradients between train calls leave the
    training trajectory bit-identical, even with dropout on."""
    model = ModelConfig(**{**TINY.__dict__, "dropout": 0.2})
    a, b = make_learner(model=model), make_learner(model=model)
    first = a.train(UNIFORM, 2).step_losses
    assert np.array_equal(first, b.train(UNIFORM, 2).step_losses)
    a.probe(0, 3)
    a.gradient_alignment(4)
    a.uncertainty(4, samples=3)
    a.evaluate()
    assert a.model.training
    assert np.array_equal(a.train(UNIFORM, 3).step_losses, b.train(UNIFORM, 3).step_losses)


def test_reset_restores_exactly() -> None:
    learner = make_learner()
    initial = params(learner)
    losses = learner.train(UNIFORM, 3).step_losses
    probe = learner.probe(1, 4)
    learner.reset(0)
    assert all(torch.equal(a, b) for a, b in zip(initial, params(learner), strict=True))
    assert learner.step == 0 and learner.consumed.sum() == 0 and learner.tokens_seen.sum() == 0
    assert np.array_equal(learner.train(UNIFORM, 3).step_losses, losses)
    again = learner.probe(1, 4)
    assert again.ids == probe.ids and np.array_equal(again.nll, probe.nll)


def test_state_dict_round_trip_resumes_bit_exactly() -> None:
    model = ModelConfig(**{**TINY.__dict__, "dropout": 0.1})  # the torch RNG matters too
    learner = make_learner(model=model)
    learner.train(UNIFORM, 2)
    learner.probe(0, 4)
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    after = learner.train(UNIFORM, 3)
    after_probe = learner.probe(0, 4)
    other = make_learner(model=model, seed=9)  # a different object, seed and history
    other.train(UNIFORM, 1)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=False))
    resumed = other.train(UNIFORM, 3)
    assert np.array_equal(resumed.step_losses, after.step_losses)
    assert np.array_equal(resumed.loss_sum, after.loss_sum)
    assert np.array_equal(other.consumed, learner.consumed) and other.step == learner.step
    probe = other.probe(0, 4)
    assert probe.ids == after_probe.ids and np.array_equal(probe.init_nll, after_probe.init_nll)


def test_state_dict_refuses_other_skills() -> None:
    state = make_learner().state_dict()
    with pytest.raises(MosgymError, match="skills"):
        make_learner(make_skills()[:2]).load_state_dict(state)


def test_grad_accumulation_matches_one_big_batch() -> None:
    runs = [
        make_learner(batch_size=16, grad_accum=1, group_by_length=False),
        make_learner(batch_size=16, grad_accum=2, group_by_length=True),
        make_learner(batch_size=16, grad_accum=4, group_by_length=False),
    ]
    stats = [r.train(UNIFORM, 2) for r in runs]
    for other, s in zip(runs[1:], stats[1:], strict=True):
        assert np.array_equal(s.examples, stats[0].examples)  # grouping never changes the draw
        np.testing.assert_allclose(s.step_losses, stats[0].step_losses, rtol=1e-5)
        np.testing.assert_allclose(s.loss_sum, stats[0].loss_sum, rtol=1e-5)
        for a, b in zip(params(runs[0]), params(other), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_dev_loss_by_hand_and_evaluate() -> None:
    learner = make_learner()
    loaded = learner.loaded
    dev = learner.skills[1].dev
    manual = np.mean(
        [manual_response_nll(loaded, x, y) for x, y in zip(dev.input_ids, dev.labels, strict=True)]
    )
    result = learner.evaluate()
    assert result.dev_loss[1] == pytest.approx(manual, rel=1e-5)
    assert np.array_equal(result.dev_loss, learner.dev_loss())
    assert np.isnan(result.accuracy[2])  # not an exact-match skill
    assert np.all((result.accuracy[:2] >= 0) & (result.accuracy[:2] <= 1))
    assert np.isnan(learner.evaluate(generate=False).accuracy).all()


def test_exact_match_accuracy_after_learning_a_constant_answer() -> None:
    """A skill whose answer is always '7': 0 at init, 1 once learnt (decoding path works)."""
    pairs = [(f"q{i}", "7") for i in range(8)]
    split = make_split(pairs, "seven")
    skill = Skill("seven", split, split, split, exact_match=True)
    cfg = TrainConfig(total_steps=60, lr=1e-2, batch_size=8, probe_size=4, warmup_ratio=0.0)
    learner = HFLearner([skill], load_model(TINY), cfg)
    assert learner.evaluate().accuracy[0] == 0.0
    learner.train(np.ones(1), 60)
    assert learner.evaluate().accuracy[0] == 1.0


def test_gradient_alignment_by_hand() -> None:
    """With n >= every split size, all examples are used, so the cosine can be recomputed."""
    skills = make_skills((8, 8, 8))
    learner = make_learner(skills)
    got = learner.gradient_alignment(8)
    got_target = learner.gradient_alignment(8, target=1)
    model = learner.model
    ps = [p for p in model.parameters()]

    def grad(split: TokenizedSplit) -> torch.Tensor:
        rows = [
            (torch.tensor(x), torch.tensor(y))
            for x, y in zip(split.input_ids, split.labels, strict=True)
        ]
        model.eval()
        nll = torch.stack(
            [
                F.cross_entropy(model(input_ids=x[None]).logits[0, :-1], y[1:], reduction="sum")
                for x, y in rows
            ]
        )
        tokens = sum(int((y[1:] != IGNORE_INDEX).sum()) for _, y in rows)
        g = torch.autograd.grad(nll.sum() / tokens, ps)
        model.train()
        return torch.cat([t.reshape(-1) for t in g])

    dev = [grad(s.dev) for s in skills]
    train = [grad(s.train) for s in skills]
    all_dev = torch.stack(dev).mean(0)
    expect = [float(F.cosine_similarity(t, all_dev, dim=0)) for t in train]
    expect_target = [float(F.cosine_similarity(t, dev[1], dim=0)) for t in train]
    np.testing.assert_allclose(got, expect, atol=1e-4)
    np.testing.assert_allclose(got_target, expect_target, atol=1e-4)
    assert all(p.grad is None for p in ps)


def test_uncertainty_by_hand_and_mc_dropout() -> None:
    learner = make_learner()
    value = learner.uncertainty(4, samples=1)
    assert np.array_equal(value, learner.uncertainty(4, samples=3))  # no dropout: deterministic
    dev = learner.skills[0].dev
    ent, count = 0.0, 0
    learner.model.eval()
    with torch.no_grad():
        for x, y in zip(dev.input_ids[:4], dev.labels[:4], strict=True):
            logp = torch.log_softmax(learner.model(input_ids=torch.tensor(x)[None]).logits[0], -1)
            keep = torch.tensor(y[1:]) != IGNORE_INDEX
            ent += float(-(logp.exp() * logp).sum(-1)[:-1][keep].sum())
            count += int(keep.sum())
    learner.model.train()
    assert value[0] == pytest.approx(ent / count, rel=1e-5)
    model = ModelConfig(**{**TINY.__dict__, "dropout": 0.3})
    a, b = (make_learner(model=model, lr=1e-2, warmup_ratio=0.0) for _ in range(2))
    a.train(UNIFORM, 5)  # peaked predictions, so dropout visibly moves the entropy
    b.train(UNIFORM, 5)
    mc = a.uncertainty(4, samples=4)
    assert np.array_equal(mc, b.uncertainty(4, samples=4))  # seeded MC dropout
    assert np.all(np.abs(mc - a.uncertainty(4, samples=1)) > 1e-4)


def test_gradient_checkpointing_gives_the_same_training() -> None:
    plain = make_learner().train(UNIFORM, 2).step_losses
    model = ModelConfig(**{**TINY.__dict__, "gradient_checkpointing": True})
    np.testing.assert_allclose(make_learner(model=model).train(UNIFORM, 2).step_losses, plain)


def test_length_grouping_keeps_the_loss_sequence() -> None:
    """The padding optimisation (length-grouped micro-batches) must not change results."""
    grouped = make_learner(batch_size=16, grad_accum=4, group_by_length=True)
    plain = make_learner(batch_size=16, grad_accum=4, group_by_length=False)
    a = [grouped.train(UNIFORM, 1).step_losses[0] for _ in range(6)]
    b = [plain.train(UNIFORM, 1).step_losses[0] for _ in range(6)]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_bf16_mixed_precision_keeps_fp32_weights_and_small_updates() -> None:
    """bf16-mixed (the CUDA default) computes in bf16 but updates fp32 weights, so an lr-1e-5
    step is not lost to bf16 rounding; losses stay close to fp32."""
    mixed = make_learner(model=ModelConfig(**{**TINY.__dict__, "dtype": "bf16-mixed"}), lr=1e-5)
    full = make_learner(lr=1e-5)
    assert mixed.loaded.autocast_dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
    before = params(mixed)
    lm, lf = mixed.train(UNIFORM, 2), full.train(UNIFORM, 2)
    np.testing.assert_allclose(lm.step_losses, lf.step_losses, rtol=2e-2)
    changed = sum(int((a != b).sum()) for a, b in zip(before, params(mixed), strict=True))
    assert changed > 0.5 * sum(p.numel() for p in before)


def test_probe_without_initial_skips_the_initial_model() -> None:
    learner = make_learner()
    learner.train(UNIFORM, 2)
    light = learner.probe(0, 4, with_initial=False)
    assert np.isnan(light.init_nll).all() and np.isnan(light.init_seq_nll).all()
    assert learner._init_cache == {}  # the initial weights were never loaded
    assert len(light.nll) == 4 and np.isfinite(light.embeddings).all()


# ------------------------------------------------------------------------------------------------
# What is trained: frozen embeddings, LoRA adapters (model.freeze_embeddings, model.lora_r)


def trained_names(learner: HFLearner) -> set[str]:
    return {n for n, p in learner.model.named_parameters() if p.requires_grad}


def weights(learner: HFLearner) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in learner.model.named_parameters()}


def changed(before: dict[str, torch.Tensor], learner: HFLearner) -> set[str]:
    return {n for n, p in learner.model.named_parameters() if not torch.equal(p, before[n])}


def test_frozen_embeddings_stay_while_everything_else_trains() -> None:
    learner = make_learner(model=ModelConfig(**{**TINY.__dict__, "freeze_embeddings": True}))
    before = weights(learner)
    learner.train(UNIFORM, 3)
    moved = changed(before, learner)
    assert "model.embed_tokens.weight" not in trained_names(learner) | moved
    assert "lm_head.weight" in moved  # the tiny model's head is not tied: it trains
    assert len(moved) == len(before) - 1
    in_optimizer = sum(len(g["params"]) for g in learner.optimizer.param_groups)
    assert in_optimizer == len(before) - 1


def test_lora_trains_only_the_adapters_and_reset_and_resume_stay_exact() -> None:
    pytest.importorskip("peft")
    lora = ModelConfig(**{**TINY.__dict__, "lora_r": 4})
    learner = make_learner(model=lora)
    trained = trained_names(learner)
    assert trained and all(".lora_A." in n or ".lora_B." in n for n in trained)
    assert any("mlp.down_proj" in n for n in trained)  # 'all-linear' reaches the MLP too
    before = weights(learner)
    losses = learner.train(UNIFORM, 3).step_losses
    assert changed(before, learner) == trained  # the base weights never move
    learner.reset(0)
    assert not changed(before, learner)
    assert np.array_equal(learner.train(UNIFORM, 3).step_losses, losses)
    # The adapters' init is a function of the seed: a second learner trains identically, and
    # a saved state resumes bit-exactly on it.
    other = make_learner(model=lora)
    assert np.array_equal(other.train(UNIFORM, 3).step_losses, losses)
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    after = learner.train(UNIFORM, 2).step_losses
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=False))
    assert np.array_equal(other.train(UNIFORM, 2).step_losses, after)


def test_lora_only_on_attention_by_pattern() -> None:
    pytest.importorskip("peft")
    model = ModelConfig(**{**TINY.__dict__, "lora_r": 2, "lora_target_modules": r".*q_proj"})
    trained = trained_names(make_learner(model=model))
    assert trained and all("q_proj.lora_" in n for n in trained)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lora_r": -1}, "lora_r must be >= 0"),
        ({"lora_r": 2, "lora_target_modules": "nothing"}, "lora_target_modules 'nothing'"),
    ],
)
def test_bad_lora_settings_are_one_clear_error(change: dict, message: str) -> None:
    pytest.importorskip("peft")
    with pytest.raises(MosgymError, match=message):
        load_model(ModelConfig(**{**TINY.__dict__, **change}))


def test_lora_without_peft_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a)
    )
    with pytest.raises(MosgymError, match=r"mosgym\[lora\]"):
        load_model(ModelConfig(**{**TINY.__dict__, "lora_r": 2}))


def test_fused_adamw_is_opt_in_on_cpu_and_trains_alike() -> None:
    """null keeps CPU runs on the default AdamW kernel (their published numbers); true uses the
    fused kernel there too: the same training up to float rounding, not bit for bit."""
    default, fused = make_learner(), make_learner(fused_adamw=True)
    assert not default.optimizer.defaults.get("fused")
    assert fused.optimizer.defaults.get("fused") is True
    a = default.train(UNIFORM, 4).step_losses
    b = fused.train(UNIFORM, 4).step_losses
    np.testing.assert_allclose(a, b, rtol=1e-5)
