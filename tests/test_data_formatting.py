"""Chat formatting, response-only labels, truncation and the tokenization cache."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mosgym.data import formatting
from mosgym.data.formatting import tokenize_conversation, tokenize_split
from mosgym.data.types import IGNORE_INDEX
from mosgym.errors import MosgymError
from mosgym.learner.tokenizer import build_byte_tokenizer

DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "mos-demo"
BOS, EOS, USER, ASSISTANT = 1, 2, 4, 5  # special token ids of the byte tokenizer
A, B, C, D = 70, 71, 72, 73  # byte tokens of 'a', 'b', 'c', 'd'
M = IGNORE_INDEX


def chat(*turns: str) -> list[dict[str, str]]:
    """Alternating user / assistant messages."""
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


@pytest.fixture(scope="module")
def plain_tok(tok):
    t = copy.deepcopy(tok)
    t.chat_template = None
    return t


def test_byte_ids_used_below(tok):
    assert tok.encode("abcd", add_special_tokens=False) == [A, B, C, D]
    assert tok.convert_tokens_to_ids(["<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>"]) == [
        BOS,
        EOS,
        USER,
        ASSISTANT,
    ]


def test_single_turn_masking_by_hand(tok):
    ids, labels, prompt, cut = tokenize_conversation(tok, chat("ab", "cd"), max_length=64)
    # <|bos|> <|user|> a b <|assistant|> c d <|eos|>: only 'c d <|eos|>' (positions 5-7) trained.
    assert ids.tolist() == [BOS, USER, A, B, ASSISTANT, C, D, EOS]
    assert labels.tolist() == [M, M, M, M, M, C, D, EOS]
    assert prompt.tolist() == [BOS, USER, A, B, ASSISTANT]
    assert cut is False
    assert ids.dtype == labels.dtype == prompt.dtype == np.int64


def test_multi_turn_masking_by_hand(tok):
    ids, labels, prompt, _ = tokenize_conversation(tok, chat("a", "b", "c", "d"), 64)
    assert ids.tolist() == [BOS, USER, A, ASSISTANT, B, EOS, USER, C, ASSISTANT, D, EOS]
    assert labels.tolist() == [M, M, M, M, B, EOS, M, M, M, D, EOS]
    # The decoding prompt is everything before the LAST response.
    assert prompt.tolist() == [BOS, USER, A, ASSISTANT, B, EOS, USER, C, ASSISTANT]


def test_conversation_starting_with_assistant(tok):
    # The template refuses an empty prefix, so the span is found by content (fallback path).
    msgs = [{"role": "assistant", "content": "a"}, *chat("b", "c")]
    ids, labels, _, _ = tokenize_conversation(tok, msgs, 64)
    assert ids.tolist() == [BOS, ASSISTANT, A, EOS, USER, B, ASSISTANT, C, EOS]
    assert labels.tolist() == [M, M, A, EOS, M, M, M, C, EOS]


def test_trailing_user_turn_is_dropped(tok):
    ids, labels, _, _ = tokenize_conversation(tok, chat("a", "b", "c"), 64)
    assert ids.tolist() == [BOS, USER, A, ASSISTANT, B, EOS]
    assert labels.tolist() == [M, M, M, M, B, EOS]


def test_plain_template_without_chat_template(plain_tok):
    ids, labels, prompt, _ = tokenize_conversation(plain_tok, chat("ab", "cd"), 64)
    assert plain_tok.decode(ids) == "<|bos|>User: ab\nAssistant: cd<|eos|>"
    assert plain_tok.decode(prompt) == "<|bos|>User: ab\nAssistant: "
    n_prompt = len(prompt)
    assert (labels[:n_prompt] == M).all()
    assert labels[n_prompt:].tolist() == [C, D, EOS]


def _label_runs(labels: np.ndarray) -> list[list[int]]:
    """Maximal runs of trained (non-masked) positions."""
    runs: list[list[int]] = []
    prev = False
    for x in labels.tolist():
        if x != M:
            if not prev:
                runs.append([])
            runs[-1].append(x)
        prev = x != M
    return runs


def test_multi_turn_demo_row_trains_every_assistant_turn(tok):
    rows = [json.loads(line) for line in (DEMO / "general.jsonl").read_text().splitlines()]
    row = next(r for r in rows if len(r["conversations"]) >= 8)
    msgs = row["conversations"]
    ids, labels, _, cut = tokenize_conversation(tok, msgs, max_length=10**6)
    assert not cut
    runs = _label_runs(labels)
    answers = [m["content"] for m in msgs if m["role"] == "assistant"]
    assert [tok.decode(r) for r in runs] == [a + "<|eos|>" for a in answers]
    # Trained positions copy the input ids; user text is never trained on.
    trained = labels != M
    assert (labels[trained] == ids[trained]).all()
    n_answer_tokens = sum(len(tok.encode(a, add_special_tokens=False)) + 1 for a in answers)
    assert trained.sum() == n_answer_tokens


def test_truncation_flag_and_count(tok, caplog):
    ids, labels, prompt, cut = tokenize_conversation(tok, chat("ab", "cd"), max_length=6)
    assert cut is True
    assert ids.tolist() == [BOS, USER, A, B, ASSISTANT, C]
    assert labels.tolist() == [M, M, M, M, M, C]
    assert prompt.tolist() == [BOS, USER, A, B, ASSISTANT]
    convs = [chat("a", "b"), chat("abcd", "abcd"), chat("abc", "de")]  # 6, 12 and 9 tokens
    with caplog.at_level(logging.INFO, logger="mosgym.data.formatting"):
        split = tokenize_split(tok, convs, ["x", "y", "z"], max_length=8, name="skill 's' train")
    assert split.n_truncated == 2
    assert split.lengths.tolist() == [6, 8, 8]
    assert split.references == ["b", "abcd", "de"]
    assert "skill 's' train: 2 of 3 examples truncated at max_length=8" in caplog.text


def test_bad_max_length(tok):
    with pytest.raises(MosgymError, match="max_length"):
        tokenize_conversation(tok, chat("a", "b"), max_length=0)


def test_template_refusing_a_row_names_the_example(tok):
    t = copy.deepcopy(tok)
    t.chat_template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(MosgymError, match="example 'r1'.*roles must alternate"):
        tokenize_split(t, [chat("a", "b")], ["r1"], 16)


def test_no_assistant_turn(tok):
    with pytest.raises(MosgymError, match="no assistant turn"):
        tokenize_conversation(tok, [{"role": "user", "content": "a"}], 16)


CONVS = [chat("ab", "cd"), chat("a", "b", "c", "d"), chat("abcd", "dcba")]
IDS = ["e0", "e1", "e2"]


def _assert_same(a, b) -> None:
    assert a.ids == b.ids and a.references == b.references and a.n_truncated == b.n_truncated
    for field in ("input_ids", "labels", "prompt_ids"):
        xs, ys = getattr(a, field), getattr(b, field)
        assert len(xs) == len(ys)
        for x, y in zip(xs, ys, strict=True):
            assert x.dtype == y.dtype == np.int64
            np.testing.assert_array_equal(x, y)


def test_cache_hit_returns_identical_arrays(tok, tmp_path, monkeypatch, caplog):
    fresh = tokenize_split(tok, CONVS, IDS, 10, cache_dir=tmp_path)
    files = list((tmp_path / "tokenized").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp file left behind

    def boom(*args, **kwargs):
        raise AssertionError("re-tokenized despite a valid cache file")

    monkeypatch.setattr(formatting, "_tokenize_all", boom)
    with caplog.at_level(logging.INFO, logger="mosgym.data.formatting"):
        cached = tokenize_split(tok, CONVS, IDS, 10, cache_dir=tmp_path, name="c")
    assert "c: 2 of 3 examples truncated at max_length=10" in caplog.text  # reported on hits too
    _assert_same(fresh, cached)
    assert cached.n_truncated == 2  # e1 has 11 tokens, e2 12


def test_cache_key_changes_with_inputs(tok, plain_tok, tmp_path):
    tokenize_split(tok, CONVS, IDS, 10, cache_dir=tmp_path)
    tokenize_split(tok, CONVS, IDS, 11, cache_dir=tmp_path)  # max_length
    tokenize_split(plain_tok, CONVS, IDS, 10, cache_dir=tmp_path)  # chat template
    tokenize_split(tok, CONVS[:2], IDS[:2], 10, cache_dir=tmp_path)  # data
    assert len(list((tmp_path / "tokenized").glob("*.npz"))) == 4
    assert formatting.tokenizer_fingerprint(tok) != formatting.tokenizer_fingerprint(plain_tok)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupt_cache_file_is_not_trusted(tok, tmp_path, damage, caplog):
    fresh = tokenize_split(tok, CONVS, IDS, 10, cache_dir=tmp_path)
    (path,) = (tmp_path / "tokenized").glob("*.npz")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file")
    else:  # flip bytes inside the first stored array: its CRC no longer matches
        i = data.index(b"NUMPY") + 200
        path.write_bytes(data[:i] + bytes(255 - x for x in data[i : i + 8]) + data[i + 8 :])
    with caplog.at_level(logging.WARNING):
        again = tokenize_split(tok, CONVS, IDS, 10, cache_dir=tmp_path)
    _assert_same(fresh, again)
    assert "ignoring unreadable tokenization cache" in caplog.text
    assert path.read_bytes() == data  # rewritten whole


def test_cache_with_wrong_key_is_not_trusted(tok, tmp_path):
    fresh = tokenize_split(tok, CONVS, IDS, 10, cache_dir=tmp_path)
    (path,) = (tmp_path / "tokenized").glob("*.npz")
    other = tokenize_split(tok, CONVS[:1], IDS[:1], 10)
    formatting.save_cached_split(path, "some-other-key", other)
    assert formatting.load_cached_split(path, path.stem, len(IDS)) is None
    _assert_same(fresh, tokenize_split(tok, CONVS, IDS, 10, cache_dir=tmp_path))
