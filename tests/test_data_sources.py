"""Local jsonl files, Hugging Face datasets (offline, through local folders) and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from mosgym.config import SkillConfig
from mosgym.data import load_skills
from mosgym.data.sources import load_jsonl_examples
from mosgym.errors import MosgymError
from mosgym.learner.tokenizer import build_byte_tokenizer

DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "mos-demo"
DEMO_ROWS = {"general": 10, "math": 6, "medical": 4, "p3": 15}


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def load(tok, *cfgs: SkillConfig, seed: int = 0, max_length: int = 512):
    return load_skills(list(cfgs), tok, max_length, seed, cache_dir="")


def jsonl_skill(path: Path, **kw) -> SkillConfig:
    return SkillConfig(**{"name": "s", "source": "jsonl", "path": str(path), "n_dev": 1, **kw})


def decoded(tok, split) -> list[str]:
    return [tok.decode(x) for x in split.input_ids]


CHAT_ROWS = [
    {
        "conversations": [
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": f"a{i}"},
        ]
    }
    for i in range(4)
]
PR_ROWS = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(4)]
ALPACA_ROWS = [
    {"instruction": f"q{i}", "input": "" if i % 2 else "x", "output": f"a{i}"} for i in range(4)
]


@pytest.mark.parametrize("fmt", ["auto", "explicit"])
@pytest.mark.parametrize(
    "name,rows", [("chat", CHAT_ROWS), ("prompt_response", PR_ROWS), ("alpaca", ALPACA_ROWS)]
)
def test_each_file_format(tok, tmp_path, name, rows, fmt):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    (skill,) = load(tok, jsonl_skill(path, n_dev=0, format=name if fmt == "explicit" else "auto"))
    texts = decoded(tok, skill.train)
    want = {0: "q0\n\nx", 1: "q1"} if name == "alpaca" else {0: "q0", 1: "q1"}
    assert texts[0] == f"<|bos|><|user|>{want[0]}<|assistant|>a0<|eos|>"
    assert texts[1] == f"<|bos|><|user|>{want[1]}<|assistant|>a1<|eos|>"
    assert skill.train.references == ["a0", "a1", "a2", "a3"]
    assert skill.train.ids == ["s/train/0", "s/train/1", "s/train/2", "s/train/3"]
    assert not skill.exact_match


def test_column_mapping_and_sharegpt_turns(tmp_path, tok):
    rows = [{"uid": "r7", "q": "hi", "a": "yo"}, {"uid": "r8", "q": "x", "a": "y"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    cols = {"prompt": "q", "response": "a", "id": "uid"}
    examples = load_jsonl_examples(path, "auto", cols)
    assert [e.id for e in examples] == ["r7", "r8"]
    assert examples[0].messages == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    share = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}]
    path = write_jsonl(tmp_path / "s.jsonl", share)
    assert load_jsonl_examples(path)[0].messages == examples[0].messages


def byte_tokens(messages: list[dict]) -> int:
    """Token count with the byte tokenizer, by hand: <|bos|>, a role token per turn, the UTF-8
    bytes, and <|eos|> after each assistant turn (turns after the last answer are dropped)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return 1 + sum(
        1 + len(m["content"].encode()) + (m["role"] == "assistant") for m in messages[: last + 1]
    )


@pytest.mark.parametrize("name", sorted(DEMO_ROWS))
def test_demo_files_load(tok, name):
    path = DEMO / f"{name}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == DEMO_ROWS[name]
    cfg = jsonl_skill(path, name=name, n_dev=1, n_probe=3)
    # p3's one dev example has a 2,100-byte prompt: at 512 no answer token is left to measure.
    max_length = 2304 if name == "p3" else 512
    if name == "p3":
        with pytest.raises(MosgymError, match="cuts the response off every one of its 1"):
            load(tok, cfg, max_length=512)
    (skill,) = load(tok, cfg, max_length=max_length)
    assert (len(skill.train), len(skill.dev), len(skill.probe)) == (len(rows) - 1, 1, 3)
    assert sorted(skill.train.ids + skill.dev.ids) == sorted(r["id"] for r in rows)
    assert set(skill.probe.ids) <= set(skill.train.ids)
    by_id = {r["id"]: r["conversations"] for r in rows}
    n_long = sum(byte_tokens(by_id[i]) > max_length for i in skill.train.ids)
    assert skill.train.n_truncated == n_long
    for i, ids, labels, ref in zip(
        skill.train.ids,
        skill.train.input_ids,
        skill.train.labels,
        skill.train.references,
        strict=True,
    ):
        assert len(ids) == len(labels) == min(byte_tokens(by_id[i]), max_length)
        trained = labels != -100
        assert (labels[trained] == ids[trained]).all()
        if len(ids) < max_length:  # not truncated: the last trained tokens are the reference + eos
            n = len(ref.encode()) + 1
            assert tok.decode(ids[trained][-n:]) == ref + "<|eos|>"


def test_dev_holdout_fraction_seeded_and_disjoint(tok, tmp_path):
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(20)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = jsonl_skill(path, n_dev=0.25, n_probe=5)
    (a,) = load(tok, cfg, seed=1)
    (b,) = load(tok, cfg, seed=1)
    (c,) = load(tok, cfg, seed=2)
    assert (len(a.train), len(a.dev), len(a.probe)) == (15, 5, 5)
    assert a.dev.ids == b.dev.ids and a.probe.ids == b.probe.ids
    assert a.dev.ids != c.dev.ids
    assert not set(a.dev.ids) & set(a.train.ids)
    assert set(a.probe.ids) <= set(a.train.ids)
    # Splits keep the file's order.
    assert a.train.ids == sorted(a.train.ids, key=lambda s: int(s.rsplit("/", 1)[1]))
    (capped,) = load(tok, jsonl_skill(path, n_dev=5, n_train=4, n_probe=10), seed=1)
    assert (len(capped.train), len(capped.dev), len(capped.probe)) == (4, 5, 4)


def test_dev_path(tok, tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", PR_ROWS)
    dev = write_jsonl(tmp_path / "v.jsonl", [{"prompt": "dq", "response": "da"}])
    (s,) = load(tok, jsonl_skill(train, dev_path=str(dev)))
    assert (len(s.train), len(s.dev)) == (4, 1)
    assert s.dev.references == ["da"] and s.dev.ids == ["s/dev/0"]


def test_hf_source_offline_through_local_folders(tok, tmp_path):
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(6)]
    folder = tmp_path / "files"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows)
    cols = {"prompt": "question", "response": "answer"}
    common = {"columns": cols, "n_dev": 2, "n_probe": 2}
    (from_files,) = load(tok, SkillConfig(name="f", source="hf", dataset=str(folder), **common))
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))
    (from_disk,) = load(tok, SkillConfig(name="f", source="hf", dataset=str(saved), **common))
    dd = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(dd))
    (from_dict,) = load(tok, SkillConfig(name="f", source="hf", dataset=str(dd), **common))
    (from_jsonl,) = load(
        tok, SkillConfig(name="f", source="jsonl", path=str(folder / "train.jsonl"), **common)
    )
    for s in (from_files, from_disk, from_dict):
        assert (len(s.train), len(s.dev), len(s.probe)) == (4, 2, 2)
        assert s.train.ids == from_jsonl.train.ids and s.dev.ids == from_jsonl.dev.ids
        assert decoded(tok, s.train) == decoded(tok, from_jsonl.train)
    with pytest.raises(MosgymError, match="split 'test'.*no such split"):
        load(tok, SkillConfig(name="f", source="hf", dataset=str(dd), split="test", **common))
    with pytest.raises(MosgymError, match="hf dataset.*could not load"):
        load(tok, SkillConfig(name="f", source="hf", dataset=str(tmp_path / "missing"), **common))


# ------------------------------------------------------------------------------------------
# Bad input: one MosgymError line naming the file / line / field


def bad_file(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


GOOD = json.dumps({"prompt": "q", "response": "a"}).encode()


@pytest.mark.parametrize(
    "lines,pattern",
    [
        ([], r"bad\.jsonl: empty dataset"),
        ([b"", b"  "], r"bad\.jsonl: empty dataset"),
        ([GOOD, b'{"prompt": "q"}'], r"bad\.jsonl:2: row has no field 'response'"),
        ([GOOD, b"\xff\xfe" + GOOD], r"bad\.jsonl:2: not valid UTF-8"),
        ([GOOD, GOOD, b"{not json"], r"bad\.jsonl:3: invalid JSON"),
        ([b"[1, 2]"], r"bad\.jsonl:1: expected a JSON object"),
        ([b'{"text": "x"}'], r"bad\.jsonl:1: cannot tell the row format"),
        (
            [b'{"conversations": [{"role": "bot", "content": "x"}]}'],
            r"bad\.jsonl:1: .*unknown role",
        ),
        (
            [b'{"conversations": [{"role": "user", "content": "x"}]}'],
            r"bad\.jsonl:1: .*no assistant",
        ),
        ([b'{"prompt": "q", "response": 3}'], r"bad\.jsonl:1: field 'response' must be a string"),
    ],
)
def test_bad_file_rows(tok, tmp_path, lines, pattern):
    with pytest.raises(MosgymError, match=pattern):
        load(tok, jsonl_skill(bad_file(tmp_path, lines), n_dev=0))


def test_utf8_bom_is_accepted(tok, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\n" + GOOD + b"\n")
    assert [e.messages[1]["content"] for e in load_jsonl_examples(path)] == ["a", "a"]


def test_missing_file(tok, tmp_path):
    with pytest.raises(MosgymError, match=r"nope\.jsonl: data file not found"):
        load(tok, jsonl_skill(tmp_path / "nope.jsonl"))


def test_format_mismatch_names_the_line(tok, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", PR_ROWS)
    with pytest.raises(MosgymError, match=r"d\.jsonl:1: row has no field 'instruction'"):
        load(tok, jsonl_skill(path, format="alpaca"))


@pytest.mark.parametrize(
    "cfgs,pattern",
    [
        ([], "skills: the list is empty"),
        (
            [SkillConfig(name="a", task="copy"), SkillConfig(name="a", task="add")],
            r"skills\[1\]\.name: duplicate skill name 'a' \(also skills\[0\]\)",
        ),
        ([SkillConfig(name="x", task="juggle")], r"skills\[0\] \(x\)\.task: unknown builtin task"),
        ([SkillConfig(name="x", source="ftp")], r"skills\[0\] \(x\)\.source: unknown source 'ftp'"),
        (
            [SkillConfig(name="x", source="jsonl", path="p", format="csv")],
            r"skills\[0\] \(x\)\.format: unknown format 'csv'",
        ),
        ([SkillConfig(name="x", source="jsonl")], r"skills\[0\] \(x\)\.path: .*needs a path"),
        ([SkillConfig(name="x", source="hf")], r"skills\[0\] \(x\)\.dataset: .*needs a dataset"),
    ],
)
def test_bad_skill_configs(tok, cfgs, pattern):
    with pytest.raises(MosgymError, match=pattern):
        load(tok, *cfgs)


@pytest.mark.parametrize(
    "n_dev,pattern",
    [
        (4, r"n_dev: holding out 4 dev rows leaves no training rows \(4 rows"),
        (64, r"n_dev: holding out 64 dev rows leaves no training rows"),
        (1.0, r"n_dev: a fraction must be in \(0, 1\)"),
        (-1, r"n_dev: must be >= 0"),
    ],
)
def test_dev_split_leaving_no_training_rows(tok, tmp_path, n_dev, pattern):
    path = write_jsonl(tmp_path / "d.jsonl", PR_ROWS)
    with pytest.raises(MosgymError, match=r"skills\[0\] \(s\)\." + pattern):
        load(tok, jsonl_skill(path, n_dev=n_dev))


def test_unknown_column_key(tok, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", PR_ROWS)
    with pytest.raises(MosgymError, match=r"d\.jsonl: unknown key 'answer' in columns"):
        load(tok, jsonl_skill(path, columns={"answer": "a"}))


def test_load_skills_cache_roundtrip_and_default_dir(tok, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", PR_ROWS)
    cfg = jsonl_skill(path, n_probe=2)
    cache = tmp_path / "cache"
    (a,) = load_skills([cfg], tok, 64, 0, cache_dir=str(cache))
    assert len(list((cache / "tokenized").glob("*.npz"))) == 3  # train, dev, probe
    (b,) = load_skills([cfg], tok, 64, 0, cache_dir=str(cache))
    for split in ("train", "dev", "probe"):
        x, y = getattr(a, split), getattr(b, split)
        assert x.ids == y.ids and x.references == y.references
        assert [t.tolist() for t in x.labels] == [t.tolist() for t in y.labels]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_skills([cfg], tok, 64, 0)  # cache_dir None: the default folder
    assert len(list((tmp_path / "xdg" / "mosgym" / "tokenized").glob("*.npz"))) == 3
