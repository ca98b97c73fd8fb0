"""Reading rows from local jsonl files and Hugging Face datasets into chat messages.

Three row formats are understood, each mapped to a list of {role, content} messages:
- 'chat': the paper's format, {"conversations": [{"role": ..., "content": ...}, ...]}
  (ShareGPT's {"from": "human"/"gpt", "value": ...} turns are accepted too);
- 'prompt_response': {"prompt": ..., "response": ...};
- 'alpaca': {"instruction": ..., "input": ... (optional), "output": ...}.
'auto' picks the format from the first row's keys. Extra keys (such as the demo files'
"Qwen/Qwen1.5-0.5B_ppl") are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosgym.errors import MosgymError

FORMATS = ("auto", "chat", "prompt_response", "alpaca")
FIELDS = ("conversations", "prompt", "response", "instruction", "input", "output", "id")
"""Our field names; `columns` maps them to a source's column names."""

_ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
}

Message = dict[str, str]


@dataclass
class Example:
    """One conversation with a stable id."""

    id: str
    messages: list[Message]


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) for every non-blank line of a jsonl file, with clear errors."""
    p = Path(path)
    if not p.is_file():
        raise MosgymError(f"{p}: data file not found (check the skill's path / dev_path)")
    rows: list[tuple[int, dict[str, Any]]] = []
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise MosgymError(
                    f"{p}:{lineno}: not valid UTF-8 (byte {e.start}); save the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise MosgymError(
                    f"{p}:{lineno}: invalid JSON ({e.msg} at column {e.colno}); "
                    "each line must be one JSON object"
                ) from None
            if not isinstance(row, dict):
                raise MosgymError(f"{p}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append((lineno, row))
    if not rows:
        raise MosgymError(f"{p}: empty dataset (no rows); give a jsonl file with one row per line")
    return rows


def _col(columns: Mapping[str, str], name: str) -> str:
    return columns.get(name, name)


def check_columns(columns: Mapping[str, str], where: str) -> None:
    """Refuse column mappings for fields we do not know (a typo would be silently ignored)."""
    for key in columns:
        if key not in FIELDS:
            raise MosgymError(
                f"{where}: unknown key '{key}' in columns (valid: {', '.join(FIELDS)})"
            )


def detect_format(row: Mapping[str, Any], columns: Mapping[str, str], where: str) -> str:
    """The row format implied by the first row's keys."""
    if _col(columns, "conversations") in row:
        return "chat"
    if _col(columns, "prompt") in row and _col(columns, "response") in row:
        return "prompt_response"
    if _col(columns, "instruction") in row and _col(columns, "output") in row:
        return "alpaca"
    keys = ", ".join(sorted(map(str, row))[:10])
    raise MosgymError(
        f"{where}: cannot tell the row format from the keys ({keys}); expected 'conversations', "
        "'prompt'+'response' or 'instruction'+'output' (or set format and columns)"
    )


def _text(row: Mapping[str, Any], field: str, columns: Mapping[str, str], where: str) -> str:
    col = _col(columns, field)
    if col not in row:
        keys = ", ".join(sorted(map(str, row))[:10])
        raise MosgymError(f"{where}: row has no field '{col}' (found: {keys})")
    value = row[col]
    if not isinstance(value, str):
        raise MosgymError(f"{where}: field '{col}' must be a string, got {type(value).__name__}")
    return value


def _chat_messages(row: Mapping[str, Any], columns: Mapping[str, str], where: str) -> list[Message]:
    col = _col(columns, "conversations")
    turns = row.get(col)
    if not isinstance(turns, list) or not turns:
        raise MosgymError(f"{where}: field '{col}' must be a non-empty list of messages")
    messages: list[Message] = []
    for j, turn in enumerate(turns):
        at = f"{where}: {col}[{j}]"
        if not isinstance(turn, Mapping):
            raise MosgymError(f"{at} must be an object with 'role' and 'content'")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in _ROLE_ALIASES:
            raise MosgymError(f"{at}: unknown role {role!r} (expected user, assistant or system)")
        if not isinstance(content, str):
            raise MosgymError(f"{at}: 'content' must be a string")
        messages.append({"role": _ROLE_ALIASES[role], "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise MosgymError(f"{where}: conversation has no assistant turn (nothing to train on)")
    return messages


def row_to_messages(
    row: Mapping[str, Any], fmt: str, columns: Mapping[str, str], where: str
) -> list[Message]:
    """Chat messages for one row in format `fmt` ('chat', 'prompt_response' or 'alpaca')."""
    if fmt == "chat":
        return _chat_messages(row, columns, where)
    if fmt == "prompt_response":
        prompt = _text(row, "prompt", columns, where)
        response = _text(row, "response", columns, where)
    elif fmt == "alpaca":
        prompt = _text(row, "instruction", columns, where)
        response = _text(row, "output", columns, where)
        extra = row.get(_col(columns, "input"))
        if extra is not None and not isinstance(extra, str):
            raise MosgymError(f"{where}: field '{_col(columns, 'input')}' must be a string")
        if extra:
            prompt = f"{prompt}\n\n{extra}"
    else:
        raise MosgymError(f"{where}: unknown format '{fmt}' (choose one of: {', '.join(FORMATS)})")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def rows_to_examples(
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    fmt: str,
    columns: Mapping[str, str],
    default_id: str,
) -> list[Example]:
    """Examples from (where, row) pairs; ids from the `id` column or `default_id` + row index."""
    if fmt not in FORMATS:
        raise MosgymError(f"format: unknown format '{fmt}' (choose one of: {', '.join(FORMATS)})")
    examples: list[Example] = []
    id_col = _col(columns, "id")
    for i, (where, row) in enumerate(rows):
        if fmt == "auto":
            fmt = detect_format(row, columns, where)
        rid = row.get(id_col)
        ex_id = str(rid) if isinstance(rid, str | int) and rid != "" else f"{default_id}/{i}"
        examples.append(Example(ex_id, row_to_messages(row, fmt, columns, where)))
    return examples


def load_jsonl_examples(
    path: str | Path,
    fmt: str = "auto",
    columns: Mapping[str, str] | None = None,
    default_id: str | None = None,
) -> list[Example]:
    """All rows of a local jsonl file as examples (ids default to '<default_id>/<row index>')."""
    columns = columns or {}
    check_columns(columns, str(path))
    rows = read_jsonl(path)
    return rows_to_examples(
        ((f"{path}:{lineno}", row) for lineno, row in rows),
        fmt,
        columns,
        default_id or Path(path).stem,
    )


def load_hf_examples(
    dataset: str,
    subset: str | None = None,
    split: str = "train",
    fmt: str = "auto",
    columns: Mapping[str, str] | None = None,
    default_id: str | None = None,
) -> list[Example]:
    """Rows of a Hugging Face dataset: a hub name (needs network), a local folder of data
    files, or a folder written by `Dataset.save_to_disk`."""
    columns = columns or {}
    where = f"hf dataset '{dataset}'" + (f" ({subset})" if subset else "") + f" split '{split}'"
    check_columns(columns, where)
    ds = _open_hf(dataset, subset, split, where)
    if len(ds) == 0:
        raise MosgymError(f"{where}: empty dataset (no rows)")
    return rows_to_examples(
        ((f"{where} row {i}", row) for i, row in enumerate(ds)),
        fmt,
        columns,
        default_id or dataset,
    )


def _open_hf(dataset: str, subset: str | None, split: str, where: str) -> Any:
    """datasets.Dataset for one split; errors become one MosgymError line."""
    import datasets

    local = Path(dataset)
    try:
        if local.is_dir() and (local / "dataset_dict.json").is_file():
            dd = datasets.load_from_disk(str(local))
            if split not in dd:
                raise MosgymError(f"{where}: no such split (available: {', '.join(dd)})")
            return dd[split]
        if local.is_dir() and (local / "state.json").is_file():
            return datasets.load_from_disk(str(local))
        return datasets.load_dataset(dataset, subset, split=split)
    except MosgymError:
        raise
    except (OSError, ValueError, KeyError, ConnectionError, datasets.exceptions.DatasetsError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MosgymError(
            f"{where}: could not load ({type(e).__name__}: {first}); check the name, subset, "
            "split and your network (hub datasets need one)"
        ) from None
