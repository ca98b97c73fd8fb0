"""Bad input, tried systematically: generated malformed configs, arguments and data files.

Every case must end in our one error type: MosgymError from the loaders; from the CLI exit
status 2, one stderr line 'mosgym: error: ...', nothing on stdout, no MLflow run and no
checkpoint folder created, and no hang (a per-example alarm). Most examples call the loaders
and `mosgym.run.main` in-process; a few go through a real subprocess. Also here: the security
rules (safe YAML, weights_only torch.load, no pickle, no shell, no remote code by default).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import signal
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from mosgym.config import SkillConfig
from mosgym.data import load_skills
from mosgym.errors import MosgymError
from mosgym.experiment.run import main
from mosgym.learner.tokenizer import build_byte_tokenizer
from tests.test_checkpoint import TINY_ENV

PACKAGE = Path(__file__).resolve().parents[1] / "mosgym"
SETTINGS = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
}
EXAMPLE_TIMEOUT_S = 60
NAN = float("nan")

# --------------------------------------------------------------------------------------------
# Building blocks

words = st.text(string.ascii_lowercase, min_size=1, max_size=8)
unknown_words = words.map(lambda w: f"zz{w}")  # never a valid name, choice or key


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


not_numbers = st.text(string.ascii_letters + " _-", min_size=1, max_size=8).filter(
    lambda s: not _is_number(s)
)
containers = st.lists(st.integers(0, 9), max_size=3) | st.dictionaries(
    words, st.integers(), min_size=1, max_size=2
)
WRONG_TYPE = {
    "int": not_numbers
    | st.floats(0.5, 99.5).filter(lambda x: x != int(x))
    | st.booleans()
    | containers,
    "float": not_numbers | st.booleans() | containers,
    "str": st.integers() | st.floats(allow_nan=False) | st.booleans() | containers,
    "bool": st.integers() | not_numbers | containers,
}
FIELDS = {
    "int": [
        "data_seed", "model.hidden_size", "model.num_layers", "model.num_heads",
        "model.intermediate_size", "train.total_steps", "train.interval", "train.batch_size",
        "train.grad_accum", "train.max_length", "train.probe_size", "train.eval_batch_size",
        "train.eval_max_new_tokens", "train.n_eval_generate", "skills.0.n_probe",
        "skills.1.n_train",
    ],
    "float": [
        "train.lr", "train.weight_decay", "train.warmup_ratio", "train.max_grad_norm",
        "action.logit_scale", "action.floor", "model.dropout",
    ],
    "str": [
        "name", "learner", "model.name", "model.arch", "model.device", "model.dtype",
        "model.attn_implementation", "train.sampling", "train.probe_source", "action.kind",
        "skills.0.name", "skills.0.source", "skills.0.format", "skills.2.task",
    ],
    "bool": [
        "model.trust_remote_code", "model.gradient_checkpointing", "model.compile",
        "train.group_by_length", "reward.ema",
    ],
}  # fmt: skip
negative = st.floats(max_value=-1e-6, allow_nan=False)
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "train.total_steps": st.integers(-5, 0) | st.sampled_from([3, 5, 7, 9]),  # interval is 2
    "train.interval": st.integers(-5, 0),
    "train.batch_size": st.integers(-5, 0),
    "train.grad_accum": st.integers(-3, 0) | st.integers(3, 9),  # batch_size is 2
    "train.lr": negative | st.just(NAN),
    "train.weight_decay": negative,
    "train.warmup_ratio": negative | st.floats(1.001, 1e6),
    "train.max_grad_norm": negative | st.just(NAN),
    "train.max_length": st.integers(-3, 1),
    "train.probe_size": st.integers(-3, 0),
    "train.eval_batch_size": st.integers(-3, 0),
    "train.eval_max_new_tokens": st.integers(-3, 0),
    "train.n_eval_generate": st.integers(-5, -1),
    "train.sampling": unknown_words,
    "train.probe_source": unknown_words,
    "action.kind": unknown_words,
    "action.logit_scale": st.floats(max_value=0.0) | st.just(NAN),
    "action.floor": negative | st.floats(0.34, 10.0),  # 3 skills: at most 1/3
    "model.arch": unknown_words,
    "model.dtype": unknown_words,
    "model.device": unknown_words,
    "model.attn_implementation": unknown_words,
    "model.name": words.map(lambda w: f"/nonexistent/{w}/model"),
    "model.hidden_size": st.integers(-3, 0),
    "model.num_layers": st.integers(-3, 0),
    "model.num_heads": st.integers(-3, 0) | st.sampled_from([3, 5, 7]),  # hidden_size is 32
    "model.intermediate_size": st.integers(-3, 0),
    "model.dropout": negative | st.floats(1.0, 5.0),
    "learner": unknown_words,
    "data_seed": st.integers(max_value=-1) | st.integers(min_value=2**63, max_value=2**80),
    "name": st.sampled_from(["", " ", "\t"]),
    "skills.0.name": unknown_words | st.just(""),  # an unknown builtin task, or empty
    "skills.1.name": st.sampled_from(["copy", "add"]),  # a duplicate
    "skills.0.source": unknown_words | st.sampled_from(["jsonl", "hf"]),  # no path / dataset
    "skills.0.format": unknown_words,
    "skills.0.task": unknown_words,
    "skills.0.n_train": st.integers(-5, 0),
    "skills.0.n_dev": st.integers(-5, -1) | st.floats(0.01, 0.99),  # builtin: a count
    "skills.0.n_probe": st.integers(-5, -1),
}
SECTIONS = ["", "model", "train", "action", "reward", "skills.0"]


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".") if dotted else []
    node: Any = data
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
    last = keys[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def _section(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for k in dotted.split(".") if dotted else []:
        node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
    return node


def _base() -> dict[str, Any]:
    return copy.deepcopy(TINY_ENV)


@st.composite
def bad_env_documents(draw: st.DrawFn) -> bytes:
    """An env config file that is wrong in exactly one way (raw bytes as written to disk)."""
    data = _base()
    kind = draw(st.sampled_from(["type", "value", "unknown_key", "structure", "text"]))
    if kind == "type":
        group = draw(st.sampled_from(sorted(FIELDS)))
        _set(data, draw(st.sampled_from(FIELDS[group])), draw(WRONG_TYPE[group]))
    elif kind == "value":
        path = draw(st.sampled_from(sorted(BAD_VALUES)))
        _set(data, path, draw(BAD_VALUES[path]))
    elif kind == "unknown_key":
        _section(data, draw(st.sampled_from(SECTIONS)))[f"x_{draw(words)}"] = draw(st.integers())
    elif kind == "structure":
        data = draw(_structural(data))
    if kind == "text":
        return draw(_broken_text(yaml.safe_dump(data, sort_keys=False)))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()


@st.composite
def _structural(draw: st.DrawFn, data: dict[str, Any]) -> Any:
    how = draw(st.sampled_from(["section", "skills", "skill", "no_name", "top"]))
    scalar = st.integers() | unknown_words | st.lists(st.integers(), min_size=1, max_size=3)
    if how == "section":
        data[draw(st.sampled_from(["model", "train", "action", "reward"]))] = draw(scalar)
    elif how == "skills":
        data["skills"] = draw(st.integers() | unknown_words | st.just({"name": "copy"}))
    elif how == "skill":
        data["skills"][draw(st.integers(0, 2))] = draw(scalar)
    elif how == "no_name":
        del data["skills"][draw(st.integers(0, 2))]["name"]
    else:
        return draw(st.lists(st.integers(), min_size=1, max_size=3) | unknown_words)
    return data


@st.composite
def _broken_text(draw: st.DrawFn, text: str) -> bytes:
    lines = text.splitlines()
    at = draw(st.integers(0, len(lines)))
    bad = draw(
        st.sampled_from(
            [
                "model: {hidden_size: [1, 2",  # unclosed flow collection
                "\tname: x",  # a tab as indentation
                "train: [1, 2]: 3",
                "key: 'unterminated",
                "- a\nb: c",  # list item, then a mapping at the same level
                "&a [*a",
                "bad: *nope",  # an undefined alias
            ]
        )
    )
    if draw(st.booleans()):
        encoded = "\n".join(lines[:at] + [bad] + lines[at:]).encode()
    else:  # not UTF-8
        encoded = "\n".join(lines[:at] + ["# caf\udcff"] + lines[at:]).encode(
            "utf-8", "surrogateescape"
        )
    return encoded


AGENT_BAD: list[dict[str, Any]] = [
    {"kind": "mos", "params": {"scorer": "zzz"}},
    {"kind": "mos", "params": {"lr": -1e-3}},
    {"kind": "mos", "params": {"update_steps": 0}},
    {"kind": "mos", "params": {"prior_tau": -1}},
    {"kind": "mos", "params": {"prior_tau": "hot"}},
    {"kind": "mos", "params": {"hidden_size": 0, "scorer": "mlp"}},
    {"kind": "mos", "reward": {"type": "zzz"}},
    {"kind": "mos", "reward": {"type": "cossim", "ema_beta": 1.5}},
    {"kind": "mos", "reward": {"type": "cossim", "target": "zzz"}},
    {"kind": "mos", "reward": {"type": "multiuat", "uat_samples": 0}},
    {"kind": "mos", "reward": {"type": "diff", "diff_scope": "zzz"}},
    {"kind": "mos", "action_kind": "zzz"},
    {"kind": "static", "params": {}},
    {"kind": "static", "params": {"weights": [1, 2]}},
    {"kind": "static", "params": {"weights": [-1, 1, 1]}},
    {"kind": "static", "params": {"weights": [0, 0, 0]}},
    {"kind": "static", "params": {"tau": 0}},
    {"kind": "odm", "params": {"alpha": -1}},
    {"kind": "sb3", "params": {"algo": "zzz"}},
    {"kind": "sb3", "params": {"hyperparams": {"zzz": 1}}},
    {"kind": "sb3", "params": {"algo": "dqn"}, "action_kind": "continuous"},
    {"kind": "sb3-policy", "params": {"path": "/nonexistent/policy.zip"}},
    {"kind": "zzz"},
]


@st.composite
def bad_agent_documents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["known", "unknown_key", "type", "top"]))
    if kind == "known":
        data: Any = copy.deepcopy(draw(st.sampled_from(AGENT_BAD)))
    elif kind == "unknown_key":
        data = {"kind": draw(st.sampled_from(["mos", "static", "odm"])), "params": {}}
        target = data if draw(st.booleans()) else data["params"]
        target[f"x_{draw(words)}"] = draw(st.integers())
        if data["kind"] == "static":
            data["params"]["tau"] = 1.0
    elif kind == "type":
        key = draw(st.sampled_from(["lr", "update_steps", "warmup_tol", "reset_each_episode"]))
        data = {"kind": "mos", "params": {key: draw(not_numbers | containers)}}
    else:
        data = draw(st.lists(st.integers(), min_size=1, max_size=3) | unknown_words)
    return yaml.safe_dump(data).encode()


bad_seeds = st.one_of(
    st.tuples(st.integers(1, 9), st.integers(0, 8))
    .filter(lambda t: t[1] < t[0])
    .map(
        lambda t: f"{t[0]}-{t[1]}"  # a reversed range
    ),
    st.integers(0, 9).map(lambda s: f"{s},{s}"),  # a duplicate
    words,
    st.integers(0, 9).map(lambda s: f"{s},,"),
    st.integers(0, 9).map(lambda s: f"{s}-"),
)
bad_argv = st.one_of(
    bad_seeds.map(lambda s: ["--seeds", s]),
    words.map(lambda w: ["--set", w]),  # no '='
    unknown_words.map(lambda w: ["--set", f"train.{w}=1"]),
    unknown_words.map(lambda w: ["--set", f"agent.params.{w}=1"]),
    not_numbers.map(lambda w: ["--set", f"train.batch_size={w}"]),
    not_numbers.map(lambda w: ["--steps", w]),
    st.integers(-9, -1).map(lambda k: ["--checkpoint-every", str(k)]),
    st.integers(-9, 0).map(lambda k: ["--keep", str(k)]),
    unknown_words.map(lambda w: [f"--{w}"]),
    words.map(lambda w: ["--resume", f"/nonexistent/{w}"]),
    st.sampled_from([" ", "\t"]).map(lambda w: ["--experiment", w]),
    unknown_words.map(lambda w: ["--env", w]),
    unknown_words.map(lambda w: ["--agent", w]),
)


# --------------------------------------------------------------------------------------------
# The checks


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """A hang fails the example instead of the whole suite."""

    def _raise(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _no_runs() -> None:
    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    assert not (ids and client.search_runs(ids)), "an MLflow run was created"


def _assert_one_clean_error(argv: list[str], capsys: pytest.CaptureFixture, cwd: Path) -> None:
    with _deadline(EXAMPLE_TIMEOUT_S):
        code = main(["--no-progress", *argv])
    out, err = capsys.readouterr()
    assert code == 2, (argv, err)
    assert err.startswith("mosgym: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert not (cwd / "checkpoints").exists()
    _no_runs()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@settings(max_examples=150, **SETTINGS)
@given(doc=bad_env_documents())
def test_malformed_env_configs(doc: bytes, workdir: Path, capsys) -> None:
    path = workdir / "env.yaml"
    path.write_bytes(doc)
    _assert_one_clean_error(["--env", str(path)], capsys, workdir)


@settings(max_examples=50, **SETTINGS)
@given(doc=bad_agent_documents())
def test_malformed_agent_configs(doc: bytes, workdir: Path, capsys) -> None:
    env = workdir / "env.yaml"
    env.write_text(yaml.safe_dump(_base()))
    agent = workdir / "agent.yaml"
    agent.write_bytes(doc)
    _assert_one_clean_error(["--env", str(env), "--agent", str(agent)], capsys, workdir)


@settings(max_examples=50, **SETTINGS)
@given(argv=bad_argv)
def test_malformed_arguments(argv: list[str], workdir: Path, capsys) -> None:
    env = workdir / "env.yaml"
    env.write_text(yaml.safe_dump(_base()))
    _assert_one_clean_error(["--env", str(env), *argv], capsys, workdir)


# --------------------------------------------------------------------------------------------
# Data files


text_value = st.text(string.ascii_letters + " ", min_size=1, max_size=10)
ROW_FORMATS = {
    "prompt_response": st.fixed_dictionaries({"prompt": text_value, "response": text_value}),
    "alpaca": st.fixed_dictionaries({"instruction": text_value, "output": text_value}),
    "chat": st.builds(
        lambda q, a: {
            "conversations": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        },
        text_value,
        text_value,
    ),
}
REQUIRED = {"prompt_response": ["prompt", "response"], "alpaca": ["instruction", "output"]}
not_text = st.integers() | st.booleans() | st.none() | containers


@st.composite
def _bad_row(draw: st.DrawFn, fmt: str, good: dict[str, Any]) -> bytes:
    """One line that cannot be a row of a `fmt` file."""
    row = copy.deepcopy(good)
    how = draw(st.sampled_from(["json", "not_object", "missing", "type", "utf8"]))
    if how == "json":
        text = json.dumps(row)
        return text[: draw(st.integers(1, len(text) - 1))].encode()  # cut short
    if how == "not_object":
        return json.dumps(
            draw(st.lists(st.integers(), max_size=2) | st.integers() | words)
        ).encode()
    if how == "utf8":
        return json.dumps(row).encode()[:-2] + b'\xff"}'
    if fmt == "chat":
        return json.dumps(draw(_bad_chat(row))).encode()
    field = draw(st.sampled_from(REQUIRED[fmt]))
    if how == "missing":
        del row[field]
    else:
        row[field] = draw(not_text)
    return json.dumps(row).encode()


@st.composite
def _bad_chat(draw: st.DrawFn, row: dict[str, Any]) -> dict[str, Any]:
    turns = row["conversations"]
    how = draw(st.sampled_from(["not_list", "empty", "turn", "role", "content", "no_answer"]))
    if how == "not_list":
        row["conversations"] = draw(st.integers() | words | st.none())
    elif how == "empty":
        row["conversations"] = []
    elif how == "turn":
        turns[draw(st.integers(0, 1))] = draw(st.integers() | words)
    elif how == "role":
        turns[draw(st.integers(0, 1))]["role"] = draw(unknown_words)
    elif how == "content":
        turns[draw(st.integers(0, 1))]["content"] = draw(not_text)
    else:
        row["conversations"] = turns[:1]
    return row


@st.composite
def bad_data_files(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """(file content, SkillConfig keys) that must be refused."""
    fmt = draw(st.sampled_from(sorted(ROW_FORMATS)))
    rows = [
        json.dumps(r).encode() for r in draw(st.lists(ROW_FORMATS[fmt], min_size=2, max_size=6))
    ]
    cfg: dict[str, Any] = {"n_dev": 1, "format": draw(st.sampled_from([fmt, "auto"]))}
    how = draw(st.sampled_from(["row", "row", "row", "empty", "too_few", "mixed", "config"]))
    if how == "row":
        rows.insert(draw(st.integers(0, len(rows))), draw(_bad_row(fmt, json.loads(rows[0]))))
    elif how == "empty":
        rows = [b""] * draw(st.integers(0, 3))
    elif how == "too_few":
        rows, cfg["n_dev"] = rows[:1], draw(st.integers(1, 3))
    elif how == "mixed":  # the format is read from the first row; a later row has another
        other = draw(st.sampled_from(sorted(set(ROW_FORMATS) - {fmt})))
        rows.insert(draw(st.integers(1, len(rows))), json.dumps(draw(ROW_FORMATS[other])).encode())
    else:
        key, value = draw(
            st.sampled_from(["format", "columns", "n_dev", "n_train", "n_probe"]).flatmap(
                lambda k: st.tuples(st.just(k), _bad_skill_value(k))
            )
        )
        cfg[key] = value
    return b"\n".join(rows), cfg


def _bad_skill_value(key: str) -> st.SearchStrategy[Any]:
    return {
        "format": unknown_words,
        "columns": unknown_words.map(lambda w: {w: "prompt"}),
        "n_dev": st.floats(1.0, 5.0).filter(lambda x: x != int(x)) | st.integers(-5, -1),
        "n_train": st.integers(-5, 0),
        "n_probe": st.integers(-5, -1),
    }[key]


@pytest.fixture(scope="module")
def byte_tokenizer() -> Any:
    return build_byte_tokenizer()


@settings(max_examples=120, **SETTINGS)
@given(case=bad_data_files())
def test_malformed_data_files(case: tuple[bytes, dict[str, Any]], tmp_path: Path, byte_tokenizer):
    content, cfg = case
    path = tmp_path / "skill.jsonl"
    path.write_bytes(content)
    skill = SkillConfig(name="s", source="jsonl", path=str(path), **cfg)
    with _deadline(EXAMPLE_TIMEOUT_S), pytest.raises(MosgymError) as e:
        load_skills([skill], byte_tokenizer, max_length=64, data_seed=0, cache_dir="")
    assert "\n" not in str(e.value) and str(e.value)


def test_the_data_generator_makes_valid_files_when_not_corrupted(tmp_path: Path, byte_tokenizer):
    """The corruptions above are what fails, not the base rows (else the test proves nothing)."""
    for fmt, rows in (
        ("prompt_response", [{"prompt": "a b", "response": "c"}] * 3),
        ("alpaca", [{"instruction": "a", "output": "b"}] * 3),
        ("chat", [{"conversations": [{"role": "user", "content": "a"},
                                     {"role": "assistant", "content": "b"}]}] * 3),
    ):  # fmt: skip
        path = tmp_path / f"{fmt}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))
        skill = SkillConfig(name="s", source="jsonl", path=str(path), n_dev=1, format="auto")
        (loaded,) = load_skills([skill], byte_tokenizer, max_length=64, data_seed=0, cache_dir="")
        assert len(loaded.train) == 2 and len(loaded.dev) == 1


# --------------------------------------------------------------------------------------------
# A few through a real process


@pytest.mark.slow
@settings(max_examples=3, **SETTINGS)
@given(doc=bad_env_documents(), data=bad_data_files(), use_data=st.booleans())
def test_malformed_input_through_the_real_cli(
    doc: bytes, data: tuple[bytes, dict[str, Any]], use_data: bool, tmp_path: Path
) -> None:
    env = tmp_path / "env.yaml"
    if use_data:  # the same TINY model, one skill read from the bad file
        (tmp_path / "skill.jsonl").write_bytes(data[0])
        skill = {"name": "s", "source": "jsonl", "path": str(tmp_path / "skill.jsonl"), **data[1]}
        env.write_text(yaml.safe_dump({**_base(), "skills": [skill]}))
    else:
        env.write_bytes(doc)
    res = subprocess.run(
        [sys.executable, "-m", "mosgym.run", "--no-progress", "--env", str(env)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.startswith("mosgym: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert res.stdout == "" and not (tmp_path / "checkpoints").exists()


# --------------------------------------------------------------------------------------------
# Security rules, checked on the package source


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))]


def test_yaml_is_only_read_with_the_safe_loader() -> None:
    for path, text in _sources():
        for m in re.finditer(r"yaml\.(\w+)\(", text):
            assert m.group(1) in ("safe_load", "safe_dump"), f"{path}: yaml.{m.group(1)}"
        assert "yaml.Loader" not in text and "yaml.FullLoader" not in text, path


def test_torch_load_always_uses_weights_only() -> None:
    calls = 0
    for path, text in _sources():
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start() : text.find("\n\n", m.start())]
            assert "weights_only=True" in call.split(")")[0] + ")", f"{path}: {call[:80]}"
            calls += 1
    assert calls >= 1  # the checkpoint reader


def test_no_pickle_no_shell_no_eval_in_the_package() -> None:
    banned = [
        r"^\s*import (c?pickle|dill|marshal|shelve)\b",
        r"^\s*from (c?pickle|dill|marshal|shelve) import",
        r"shell\s*=\s*True",
        r"\bos\.system\(",
        r"\bos\.popen\(",
        r"(?<![\w.])eval\(",
        r"(?<![\w.])exec\(",
        r"allow_pickle\s*=\s*True",
    ]
    for path, text in _sources():
        for pattern in banned:
            assert not re.search(pattern, text, re.MULTILINE), f"{path}: matches {pattern}"


def test_remote_code_in_a_checkpoint_never_runs_unless_allowed(tmp_path: Path) -> None:
    """A local model folder whose config asks for its own Python code: without
    model.trust_remote_code that code must not run, and the user gets one clear line."""
    from mosgym.config import ModelConfig
    from mosgym.learner.model import load_model

    marker = tmp_path / "ran"
    (tmp_path / "configuration_evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    )
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil",
                "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"},
                "architectures": ["EvilForCausalLM"],
            }
        )
    )
    with pytest.raises(MosgymError, match="could not load") as e:
        load_model(ModelConfig(name=str(tmp_path)))
    assert "\n" not in str(e.value)
    assert not marker.exists()
    with pytest.raises(MosgymError):  # the control: allowed, the folder's code does run
        load_model(ModelConfig(name=str(tmp_path), trust_remote_code=True))
    assert marker.exists()
