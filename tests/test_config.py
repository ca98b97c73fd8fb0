"""Typed configs: strict YAML round-trip, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosgym.config import (
    EnvConfig,
    apply_overrides,
    flatten,
    from_dict,
    load_env_config,
    read_yaml,
    to_dict,
)
from mosgym.errors import MosgymError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_round_trip() -> None:
    cfg = EnvConfig()
    assert from_dict(EnvConfig, to_dict(cfg)) == cfg


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    p = tmp_path / "env.yaml"
    p.write_text("train:\n  total_step: 100\n")
    with pytest.raises(MosgymError, match=r"env.yaml.*train.*unknown key 'total_step'"):
        load_env_config(p)


def test_wrong_type_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "env.yaml"
    p.write_text("train:\n  total_steps: many\n")
    with pytest.raises(MosgymError, match=r"train.total_steps: expected an integer"):
        load_env_config(p)
    with pytest.raises(MosgymError, match="expected true or false"):
        load_env_config({"reward": {"ema": "yes"}})


def test_int_is_accepted_for_float_but_bool_is_not() -> None:
    cfg = load_env_config({"train": {"lr": 1}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    with pytest.raises(MosgymError):
        load_env_config({"train": {"lr": True}})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(MosgymError, match="config file not found"):
        read_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(MosgymError, match=r"bad.yaml.*invalid YAML"):
        read_yaml(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- a\n- b\n")
    with pytest.raises(MosgymError, match="mapping"):
        read_yaml(notmap)


def test_overrides_set_nested_values_and_lists() -> None:
    data = {"train": {"lr": 0.1}, "skills": [{"name": "a"}, {"name": "b"}]}
    out = apply_overrides(data, ["train.lr=3e-4", "skills.1.name=c", "reward.type=diff"])
    assert out["train"]["lr"] == 3e-4
    assert out["skills"][1]["name"] == "c"
    assert out["reward"] == {"type": "diff"}
    assert data["train"]["lr"] == 0.1  # input untouched
    with pytest.raises(MosgymError, match="key=value"):
        apply_overrides(data, ["train.lr"])
    with pytest.raises(MosgymError, match="no list item"):
        apply_overrides(data, ["skills.5.name=x"])


def test_keyword_arguments_merge_into_file(tmp_path: Path) -> None:
    p = tmp_path / "env.yaml"
    p.write_text("reward:\n  type: diff\ntrain:\n  total_steps: 40\n  interval: 20\n")
    cfg = load_env_config(p, reward={"ema": True})
    assert cfg.reward.type == "diff" and cfg.reward.ema is True
    assert cfg.train.total_steps == 40


def test_relative_data_paths_resolve_against_the_config(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text("{}\n")
    p = tmp_path / "env.yaml"
    p.write_text("skills:\n  - {name: a, source: jsonl, path: data/a.jsonl}\n")
    cfg = load_env_config(p)
    assert Path(cfg.skills[0].path) == tmp_path / "data" / "a.jsonl"


def test_flatten() -> None:
    flat = flatten({"a": {"b": 1, "c": [1, {"d": 2}]}, "e": None, "f": []})
    assert flat == {"a.b": 1, "a.c.0": 1, "a.c.1.d": 2, "e": None, "f": []}


@pytest.mark.parametrize("path", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_env_yaml_loads(path: Path) -> None:
    cfg = load_env_config(path)
    assert cfg.train.total_steps % cfg.train.interval == 0
    names = [s.name for s in cfg.skills]
    assert len(names) == len(set(names))
