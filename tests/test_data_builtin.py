"""The built-in procedural skill suite: determinism, disjoint splits, correct answers, sizes."""

from __future__ import annotations

import pytest

from mosgym.config import SkillConfig
from mosgym.data import TASKS, default_skill_configs, generate_splits, load_skills
from mosgym.data.builtin import generate_examples
from mosgym.errors import MosgymError
from mosgym.learner.tokenizer import build_byte_tokenizer


def solve(task: str, prompt: str) -> str:
    """Independent reference solutions, parsed from the prompt text."""
    if task == "copy":
        return prompt.removeprefix("copy ")
    if task == "reverse":
        return prompt.removeprefix("rev ")[::-1]
    if task == "sort":
        return "".join(sorted(prompt.removeprefix("sort ")))
    if task == "count":
        _, letter, _, text = prompt.split(" ")
        return str(text.count(letter))
    if task == "lookup":
        query, table = prompt.removeprefix("get ").split(": ")
        return dict(pair.split("=") for pair in table.split(" "))[query]
    if task == "add":
        a, b = prompt.removesuffix("=").split("+")
        return str(int(a) + int(b))
    raise AssertionError(task)


def test_suite_has_six_known_tasks():
    assert set(TASKS) >= {"copy", "reverse", "sort", "count", "lookup", "add"}
    names = [c.name for c in default_skill_configs()]
    assert len(names) >= 6 and len(set(names)) == len(names)
    assert all(c.source == "builtin" and c.task in TASKS for c in default_skill_configs())


@pytest.mark.parametrize("task", sorted(TASKS))
def test_answers_are_correct(task):
    for prompt, response in generate_examples(task, 300, seed=3):
        assert response == solve(task, prompt)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_splits_deterministic_and_disjoint(task):
    a = generate_splits(task, 200, 30, 20, seed=0)
    assert a == generate_splits(task, 200, 30, 20, seed=0)
    assert a != generate_splits(task, 200, 30, 20, seed=1)
    assert [len(a[s]) for s in ("train", "dev", "probe")] == [200, 30, 20]
    prompts = [p for s in ("train", "dev", "probe") for p, _ in a[s]]
    assert len(set(prompts)) == len(prompts)  # no prompt twice, within or across splits
    # dev and probe do not move when n_train changes
    b = generate_splits(task, 50, 30, 20, seed=0)
    assert b["dev"] == a["dev"] and b["probe"] == a["probe"] and b["train"] == a["train"][:50]


def test_default_sizes_are_very_unequal_and_hard_skills_small():
    sizes = {c.name: c.n_train for c in default_skill_configs()}
    assert max(sizes.values()) / min(sizes.values()) >= 20
    # Easy skills large, hard skills small: copy is the largest, addition the smallest.
    assert sizes["copy"] == max(sizes.values()) and sizes["add"] == min(sizes.values())


def test_default_suite_loads_short_exact_match_examples():
    tok = build_byte_tokenizer()
    skills = load_skills(default_skill_configs(), tok, max_length=64, data_seed=0, cache_dir="")
    for cfg, skill in zip(default_skill_configs(), skills, strict=True):
        assert skill.name == cfg.name and skill.exact_match
        assert (len(skill.train), len(skill.dev), len(skill.probe)) == (
            cfg.n_train,
            cfg.n_dev,
            cfg.n_probe,
        )
        for split in (skill.train, skill.dev, skill.probe):
            assert split.n_truncated == 0
            assert split.lengths.max() <= 40  # short enough for fast CPU runs
        # prompt_ids + the reference + eos is exactly the training sequence.
        for prompt, ids, ref in zip(
            skill.dev.prompt_ids, skill.dev.input_ids, skill.dev.references, strict=True
        ):
            assert tok.decode(ids[len(prompt) :]) == ref + "<|eos|>"
            assert (ids[: len(prompt)] == prompt).all()
        assert skill.train.ids[0] == f"{cfg.name}/train/0"
        assert all(skill.train.references)


def test_load_skills_is_deterministic_and_uses_data_seed():
    tok = build_byte_tokenizer()
    cfg = [SkillConfig(name="adder", task="add", n_train=20, n_dev=5, n_probe=5)]
    a, b = (load_skills(cfg, tok, 32, data_seed=7, cache_dir="")[0] for _ in range(2))
    c = load_skills(cfg, tok, 32, data_seed=8, cache_dir="")[0]
    assert [x.tolist() for x in a.train.input_ids] == [x.tolist() for x in b.train.input_ids]
    assert [x.tolist() for x in a.train.input_ids] != [x.tolist() for x in c.train.input_ids]
    assert a.train.ids[:2] == ["adder/train/0", "adder/train/1"]


def test_task_defaults_to_name_and_default_size():
    tok = build_byte_tokenizer()
    (s,) = load_skills([SkillConfig(name="add", n_dev=2, n_probe=2)], tok, 32, 0, cache_dir="")
    assert len(s.train) == 250


def test_unknown_task_and_exhausted_space():
    with pytest.raises(MosgymError, match="unknown builtin task 'juggle'"):
        generate_splits("juggle", 1, 1, 1, seed=0)
    # two-digit addition has 90 * 90 = 8100 distinct prompts
    with pytest.raises(MosgymError, match="could not draw 9000 distinct examples"):
        generate_splits("add", 9000, 0, 0, seed=0)
    with pytest.raises(MosgymError, match=r"skills\[0\] \(a\).*n_dev: builtin skills need a count"):
        load_skills([SkillConfig(name="a", task="add", n_dev=0.1)], None, 32, 0, cache_dir="")
