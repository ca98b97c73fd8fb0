"""Chat formatting and tokenization with response-only labels, cached on disk.

A conversation is rendered with the tokenizer's chat template (or a plain 'User: / Assistant: '
template when it has none) and cut into text segments, each flagged as trained (an assistant
turn, with the end-of-turn tokens the template adds) or not (everything else). Segments are
tokenized separately and concatenated, so label masks line up with tokens exactly and the
generation prompt of the last turn is a true prefix of the training sequence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mosgym.data.types import IGNORE_INDEX, TokenizedSplit
from mosgym.errors import MosgymError

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when tokenization changes meaning, so old cache files are not reused."""

Message = dict[str, str]
Segment = tuple[str, bool]
"""(text, trained)."""
_SENTINEL = "\ue000mosgym-response\ue001"
"""Stand-in content (private-use characters) used to locate a response in a rendering."""


# --------------------------------------------------------------------------------------------
# Rendering


def _render(tokenizer: Any, messages: list[Message], gen: bool) -> str | None:
    """The chat template's text, or None when the template refuses this message list."""
    if not messages:
        return None
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    except Exception:  # noqa: BLE001 - any template error means "use the fallback"
        return None
    return text if isinstance(text, str) else None


def _assistant_span(
    tokenizer: Any, msgs: list[Message], k: int, full: str, cursor: int, where: str
) -> tuple[int, int]:
    """Character span of assistant turn k in `full` (its content plus end-of-turn tokens).

    Preferred: the difference between rendering msgs[:k] with the generation prompt and
    msgs[:k+1]. Templates for which that is not a prefix (or that refuse a conversation
    starting with the assistant) fall back to rendering turn k with a sentinel as its content.
    """
    pre = _render(tokenizer, msgs[:k], gen=True)
    upto = _render(tokenizer, msgs[: k + 1], gen=False)
    if (
        pre is not None
        and upto is not None
        and cursor <= len(pre) <= len(upto)
        and upto.startswith(pre)
        and full.startswith(upto)
    ):
        return len(pre), len(upto)
    content = msgs[k]["content"]
    marked = _render(
        tokenizer, [*msgs[:k], {**msgs[k], "content": _SENTINEL}, *msgs[k + 1 :]], False
    )
    start = -1 if marked is None else marked.find(_SENTINEL)
    if start < cursor or full[:start] != marked[:start] or not full.startswith(content, start):
        raise MosgymError(
            f"{where}: the chat template does not reproduce assistant turn {k} verbatim; "
            "use a tokenizer whose template keeps message content as is"
        )
    end = start + len(content)
    eos = getattr(tokenizer, "eos_token", None)
    if eos and full.startswith(eos, end):
        end += len(eos)
    return start, end


def _template_segments(tokenizer: Any, msgs: list[Message], where: str) -> list[Segment]:
    full = _render(tokenizer, msgs, gen=False)
    if full is None:
        try:
            tokenizer.apply_chat_template(msgs, tokenize=False)
        except Exception as e:  # noqa: BLE001 - reported to the user as one line
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        else:
            reason = "it did not return text"
        raise MosgymError(f"{where}: the tokenizer's chat template refused the row ({reason})")
    segments: list[Segment] = []
    cursor = 0
    for k, m in enumerate(msgs):
        if m["role"] == "assistant":
            start, end = _assistant_span(tokenizer, msgs, k, full, cursor, where)
            segments += [(full[cursor:start], False), (full[start:end], True)]
            cursor = end
    return segments


def _plain_segments(tokenizer: Any, msgs: list[Message]) -> list[Segment]:
    """'User: ...' / 'Assistant: ...' turns for tokenizers without a chat template."""
    eos = getattr(tokenizer, "eos_token", None) or ""
    segments: list[Segment] = [(getattr(tokenizer, "bos_token", None) or "", False)]
    for k, m in enumerate(msgs):
        if m["role"] == "system":
            segments.append((m["content"] + "\n\n", False))
        elif m["role"] == "user":
            segments.append((f"User: {m['content']}\n", False))
        else:
            segments.append(("Assistant: ", False))
            segments.append((m["content"] + (eos or "\n"), True))
            if k + 1 < len(msgs):
                segments.append(("\n", False))
    return segments


def conversation_segments(
    tokenizer: Any, messages: list[Message], where: str = "conversation"
) -> list[Segment]:
    """Text segments of `messages` up to the last assistant turn, flagged trained or not."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if last < 0:
        raise MosgymError(f"{where}: conversation has no assistant turn (nothing to train on)")
    msgs = messages[: last + 1]
    if getattr(tokenizer, "chat_template", None):
        return _template_segments(tokenizer, msgs, where)
    return _plain_segments(tokenizer, msgs)


# --------------------------------------------------------------------------------------------
# Tokenization


def _assemble(
    seg_ids: Sequence[Sequence[int]], flags: Sequence[bool], max_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Concatenate tokenized segments into (input_ids, labels, prompt_ids, truncated)."""
    ids = np.fromiter((t for s in seg_ids for t in s), dtype=np.int64)
    labels = np.concatenate(
        [
            np.asarray(s, dtype=np.int64) if trained else np.full(len(s), IGNORE_INDEX, np.int64)
            for s, trained in zip(seg_ids, flags, strict=True)
        ]
    )
    last_trained = max(i for i, trained in enumerate(flags) if trained)
    prompt_len = sum(len(s) for s in seg_ids[:last_trained])
    truncated = len(ids) > max_length
    return (
        ids[:max_length],
        labels[:max_length],
        ids[: min(prompt_len, max_length)].copy(),
        truncated,
    )


def _check_max_length(max_length: int) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise MosgymError(f"train.max_length: must be an integer >= 2, got {max_length!r}")


def tokenize_conversation(
    tokenizer: Any, messages: list[Message], max_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(input_ids, labels, prompt_ids, truncated) for one conversation.

    labels hold the token id on every assistant-turn token and IGNORE_INDEX elsewhere;
    prompt_ids is everything before the last assistant response (the greedy decoding input).
    """
    _check_max_length(max_length)
    segments = conversation_segments(tokenizer, messages)
    seg_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text, _ in segments]
    return _assemble(seg_ids, [trained for _, trained in segments], max_length)


def _tokenize_texts(tokenizer: Any, texts: list[str], chunk: int = 4096) -> list[list[int]]:
    """Batch-tokenize (fast tokenizers parallelise), without adding special tokens."""
    out: list[list[int]] = []
    for i in range(0, len(texts), chunk):
        out += tokenizer(texts[i : i + chunk], add_special_tokens=False)["input_ids"]
    return out


def _tokenize_all(
    tokenizer: Any, conversations: Sequence[list[Message]], ids: Sequence[str], max_length: int
) -> TokenizedSplit:
    segments = [
        conversation_segments(tokenizer, m, f"example '{i}'")
        for m, i in zip(conversations, ids, strict=True)
    ]
    flat = _tokenize_texts(tokenizer, [text for segs in segments for text, _ in segs])
    input_ids, labels, prompt_ids = [], [], []
    n_truncated, pos = 0, 0
    for segs in segments:
        x, y, p, cut = _assemble(flat[pos : pos + len(segs)], [t for _, t in segs], max_length)
        pos += len(segs)
        input_ids.append(x)
        labels.append(y)
        prompt_ids.append(p)
        n_truncated += cut
    references = [
        [m for m in msgs if m["role"] == "assistant"][-1]["content"] for msgs in conversations
    ]
    return TokenizedSplit(list(ids), input_ids, labels, prompt_ids, references, n_truncated)


def tokenize_split(
    tokenizer: Any,
    conversations: Sequence[list[Message]],
    ids: Sequence[str],
    max_length: int,
    cache_dir: str | Path | None = None,
    fingerprint: str | None = None,
    name: str = "split",
) -> TokenizedSplit:
    """Tokenize a list of conversations once; reuse the cached result when `cache_dir` is set.

    The cache key hashes the tokenizer (vocabulary, special tokens, chat template), the data and
    max_length, so any change re-tokenizes. `fingerprint` lets callers hash the tokenizer once.
    """
    _check_max_length(max_length)
    if len(conversations) != len(ids):
        raise ValueError("conversations and ids must have the same length")
    path = key = None
    split = None
    if cache_dir:
        key = _cache_key(
            fingerprint or tokenizer_fingerprint(tokenizer), conversations, ids, max_length
        )
        path = Path(cache_dir) / "tokenized" / f"{key}.npz"
        split = load_cached_split(path, key, len(ids))
        if split is not None:
            logger.debug("%s: tokenized split read from cache %s", name, path)
    if split is None:
        split = _tokenize_all(tokenizer, conversations, ids, max_length)
        if path is not None and key is not None:
            save_cached_split(path, key, split)
    if split.n_truncated:
        logger.info(
            "%s: %d of %d examples truncated at max_length=%d",
            name,
            split.n_truncated,
            len(split),
            max_length,
        )
    return split


# --------------------------------------------------------------------------------------------
# On-disk cache: one .npz per split, ragged arrays stored flat with offsets (no pickle)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of what decides tokenization: vocabulary/model, special tokens, chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = (
        backend.to_str()
        if backend is not None
        else json.dumps(sorted(tokenizer.get_vocab().items()))
    )
    meta = {
        "class": type(tokenizer).__name__,
        "name": getattr(tokenizer, "name_or_path", ""),
        "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    h = hashlib.sha256(body.encode("utf-8"))
    h.update(json.dumps(meta, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()


def _cache_key(
    fingerprint: str, conversations: Sequence[list[Message]], ids: Sequence[str], max_length: int
) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{fingerprint}|{max_length}|".encode())
    h.update(json.dumps([list(ids), list(conversations)], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()[:32]


def _pack(arrays: Sequence[np.ndarray], dtype: Any = np.int64) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    flat = np.concatenate(list(arrays)).astype(dtype) if arrays else np.zeros(0, dtype)
    return flat, offsets


def _unpack(flat: np.ndarray, offsets: np.ndarray, n: int) -> list[np.ndarray]:
    if (
        offsets.shape != (n + 1,)
        or offsets[0] != 0
        or offsets[-1] != len(flat)
        or np.any(np.diff(offsets) < 0)
    ):
        raise ValueError("inconsistent offsets")
    return [flat[offsets[i] : offsets[i + 1]].copy() for i in range(n)]


def _pack_text(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return _pack([np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts], np.uint8)


def _unpack_text(flat: np.ndarray, offsets: np.ndarray, n: int) -> list[str]:
    return [a.tobytes().decode("utf-8") for a in _unpack(flat, offsets, n)]


def save_cached_split(path: Path, key: str, split: TokenizedSplit) -> None:
    """Write atomically: a temp file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "key": np.array(key),
        "n_truncated": np.array(split.n_truncated),
    }
    for field in ("input_ids", "labels", "prompt_ids"):
        arrays[field], arrays[f"{field}_offsets"] = _pack(getattr(split, field))
    for field in ("ids", "references"):
        arrays[field], arrays[f"{field}_offsets"] = _pack_text(getattr(split, field))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cached_split(path: Path, key: str, n: int) -> TokenizedSplit | None:
    """The cached split, or None when the file is missing, partial, corrupt or for other data."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                raise ValueError("cache key mismatch")
            fields = {
                f: _unpack(z[f], z[f"{f}_offsets"], n)
                for f in ("input_ids", "labels", "prompt_ids")
            }
            texts = {f: _unpack_text(z[f], z[f"{f}_offsets"], n) for f in ("ids", "references")}
            n_truncated = int(z["n_truncated"])
        if any(
            len(x) != len(y) for x, y in zip(fields["input_ids"], fields["labels"], strict=True)
        ):
            raise ValueError("labels and input_ids differ in length")
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        logger.warning("ignoring unreadable tokenization cache %s (%s); re-tokenizing", path, e)
        return None
    return TokenizedSplit(
        ids=texts["ids"],
        input_ids=fields["input_ids"],
        labels=fields["labels"],
        prompt_ids=fields["prompt_ids"],
        references=texts["references"],
        n_truncated=n_truncated,
    )
