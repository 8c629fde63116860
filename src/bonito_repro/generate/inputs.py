"""What the generate stage reads: the passages of an unannotated parquet (fitted to the model's
context under each generator kind's prompt), or a published synthetic set in their place."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..core.errors import InputError
from ..core.io import read_json, read_parquet, seeded_subset
from ..core.origins import load_origin
from ..core.schemas import UNANNOTATED_FIELDS, validate_rows


def read_passages(path: str | Path, max_passages: int | None, seed: int) -> tuple[list[str], list[int], dict]:
    """(passages, context_ids, counts) from an unannotated parquet: context_id is the row index
    in that file; blank passages are skipped and counted; ``max_passages`` takes a seeded random
    subset (kept in file order), as the experiment code's --max_eval_samples with --shuffle."""
    table = read_parquet(path, list(UNANNOTATED_FIELDS))
    frame = table.to_pandas()
    validate_rows(table.to_pylist(), Path(path).stem, "unannotated", str(path), columns=table.column_names)
    for row, value in enumerate(frame["input"]):  # the data stage writes no null passage
        if not isinstance(value, str):
            raise InputError(f"{path}: row {row} (0-based): field 'input': missing")
    ids = [i for i, text in enumerate(frame["input"]) if text.strip()]
    counts = {"passages_in_file": len(frame), "blank_passages": len(frame) - len(ids)}
    ids = [ids[i] for i in seeded_subset(len(ids), max_passages, seed)]
    counts["passages"] = len(ids)
    return [frame["input"].iloc[i] for i in ids], ids, counts


def load_published(origin: dict) -> pd.DataFrame:
    """A published synthetic set (``BatsResearch/bonito-experiment``, config ``bonito_<key>``, or
    files of the same schema: ``input``, ``output``) as funnel input; its passages are unknown."""
    rows = load_origin(origin, "synthetic").to_pandas()
    missing = {"input", "output"} - set(rows.columns)
    if missing:
        raise InputError(f"published set {origin}: missing columns {sorted(missing)}")
    return pd.DataFrame({"context_id": pd.array([None] * len(rows), dtype="Int64"), "sample": 0,
                         "input": rows["input"], "output": rows["output"], "passage": ""})


def model_positions(model_dir: str | Path) -> int | None:
    """The positions a model's config gives it (``max_position_embeddings``), or None."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{model_dir}: no config.json; expected a model directory")
    return read_json(path).get("max_position_embeddings")


def position_limit(model_dir: str | Path, max_model_len: int | None) -> int | None:
    """The positions a generation may take: the model's, cut to the config's
    ``generation.max_model_len`` (which bounds vLLM's KV cache on a small GPU); None if neither
    says."""
    limits = [n for n in (model_positions(model_dir), max_model_len) if n]
    return min(limits) if limits else None


def fit_passages(texts: Sequence[str], context_ids: Sequence[int], tokenizer, limit: int, params: dict,
                 positions: Callable[[list[str]], list[int]]) -> tuple[list[str], list[int], dict[str, int]]:
    """Passages that fit ``limit`` positions, where ``positions(passages)`` says what each needs:
    its generator's prompt (Bonito's input, a prompted generator's request under the chat
    template, backtranslation's rating prompt) and the tokens generated after it. The others are
    dropped, or split into pieces of the passage's tokens that fit, each overlapping the one
    before by ``split_overlap`` tokens, as ``params["long_passages"]`` (``drop`` | ``split``)
    says. A piece keeps the ``context_id`` of its passage. Returns (passages, context_ids, counts
    of long passages and pieces)."""
    mode, overlap = params["long_passages"], params["split_overlap"]
    counts = {"long_passages": 0, "long_passage_pieces": 0}
    kept_texts: list[str] = []
    kept_ids: list[int] = []
    for text, context_id, need in zip(texts, context_ids, positions(list(texts))):
        if need <= limit:
            kept_texts.append(text)
            kept_ids.append(context_id)
            continue
        counts["long_passages"] += 1
        if mode == "drop":
            continue
        # the prompt's own tokens and the generated ones stay; the passage gets the rest
        pieces = split_passage(text, tokenizer, window=limit - (need - _passage_tokens(tokenizer, text)),
                               overlap=overlap, context_id=context_id)
        kept_texts += pieces
        kept_ids += [context_id] * len(pieces)
        counts["long_passage_pieces"] += len(pieces)
    return kept_texts, kept_ids, counts


def _passage_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def split_passage(text: str, tokenizer, window: int, overlap: int, context_id: int) -> list[str]:
    """``text`` in pieces of at most ``window`` tokens, each starting ``overlap`` tokens before
    the end of the one before (the last may be shorter). A margin of a few tokens is kept: a piece
    decoded and encoded again inside the prompt may take a token or two more at its edges."""
    window -= 4
    if window <= overlap:
        raise InputError(f"passage context_id={context_id}: no room to split it: {max(window, 0)} tokens of the "
                         "model's context are left beside the prompt and generation.max_new_tokens, and "
                         f"generation.split_overlap is {overlap}; lower either")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    starts = range(0, max(len(ids) - overlap, 1), window - overlap)
    return [tokenizer.decode(ids[start:start + window]).strip() for start in starts]
