"""Training sequences: (input, output) pairs with the loss on the output only, or TAPT blocks
with the loss on every token; and the batch collator (the step rule is bonito_repro.core.steps).

A sequence is stored as its token ids and ``prompt_length``, the number of leading tokens that
carry no loss; the collator turns that into labels, so a million-row set keeps one int column.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import datasets
import numpy as np
import pandas as pd
import torch

from ..runtime.models import encode_prompts
from ..core.steps import TrainDataError

IGNORE_INDEX = -100
# `none`: the input column is already the whole prompt (Bonito's ctga inputs)
PAIR_WRAPPERS = ("none", "io", "inst", "chat")


@dataclass
class Encoded:
    """Training sequences with what happened to the rows on the way (counts add up:
    rows_in == examples + sum(drops) for pairs)."""

    dataset: datasets.Dataset
    rows_in: int
    drops: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def format_pairs(df: pd.DataFrame, wrapper: str, origin: str) -> tuple[list[str], list[str], dict[str, int]]:
    """Prompt and target strings: ``none`` keeps both as they are (the Bonito input is already
    exact); otherwise both are stripped, as the paper's training script does, and the prompt is
    wrapped when encoded (``encode_pairs``). Rows with a blank side are dropped and counted by
    reason."""
    if wrapper not in PAIR_WRAPPERS:
        raise TrainDataError(f"unknown wrapper {wrapper!r}; use one of {PAIR_WRAPPERS}")
    prompts, targets = [], []
    drops = {"empty_input": 0, "empty_output": 0}
    for i, (prompt, target) in enumerate(zip(df["input"], df["output"])):
        if not isinstance(prompt, str) or not prompt.strip():
            drops["empty_input"] += 1
            continue
        if not isinstance(target, str) or not target.strip():
            drops["empty_output"] += 1
            continue
        if wrapper == "none":
            prompts.append(prompt)
            targets.append(target)
        else:
            prompts.append(prompt.strip())
            targets.append(target.strip())
    if not prompts:
        raise TrainDataError(f"{origin}: all {len(df)} rows have an empty input or output ({drops})")
    return prompts, targets, {k: v for k, v in drops.items() if v}


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode_pairs(prompts: list[str], targets: list[str], tokenizer, max_input_length: int,
                 max_output_length: int, wrapper: str = "none",
                 batch_size: int = 1000) -> tuple[datasets.Dataset, dict[str, int]]:
    """BOS + wrapped prompt (cut to max_input_length) then target + EOS (cut to
    max_output_length), tokenized apart as the paper's collator does; the loss skips the prompt
    part."""
    eos = [tokenizer.eos_token_id]

    def encode(batch: dict) -> dict:
        ids, prompt_lengths, lengths, cut_in, cut_out = [], [], [], [], []
        for prompt, target in zip(encode_prompts(tokenizer, batch["prompt"], wrapper), _ids(tokenizer, batch["target"])):
            target = target + eos
            cut_in.append(len(prompt) > max_input_length)
            cut_out.append(len(target) > max_output_length)
            prompt, target = prompt[:max_input_length], target[:max_output_length]
            ids.append(prompt + target)
            prompt_lengths.append(len(prompt))
            lengths.append(len(prompt) + len(target))
        return {"input_ids": ids, "prompt_length": prompt_lengths, "length": lengths,
                "cut_input": cut_in, "cut_output": cut_out}

    raw = datasets.Dataset.from_dict({"prompt": prompts, "target": targets})
    encoded = raw.map(encode, batched=True, batch_size=batch_size, remove_columns=["prompt", "target"],
                      features=_features(extra=True), desc="tokenizing")
    counts = {"truncated_input": int(np.sum(encoded["cut_input"])),
              "truncated_output": int(np.sum(encoded["cut_output"])),
              "tokens": int(np.sum(encoded["length"]))}
    return encoded.remove_columns(["cut_input", "cut_output"]), counts


def _features(extra: bool = False) -> datasets.Features:
    features = {"input_ids": datasets.Sequence(datasets.Value("int32")),
                "prompt_length": datasets.Value("int32"), "length": datasets.Value("int32")}
    if extra:
        features.update(cut_input=datasets.Value("bool"), cut_output=datasets.Value("bool"))
    return datasets.Features(features)


def pack_blocks(passages: list[str], tokenizer, block_size: int) -> tuple[datasets.Dataset, dict[str, int]]:
    """TAPT (docs/protocol.md, D9): passages joined with EOS, cut into blocks of block_size tokens, the
    loss on every token. The last, shorter block is kept, so no token is lost."""
    eos = np.array([tokenizer.eos_token_id], dtype=np.int32)
    pieces: list[np.ndarray] = []
    for start in range(0, len(passages), 1000):
        for ids in _ids(tokenizer, passages[start:start + 1000]):
            if pieces:
                pieces.append(eos)
            pieces.append(np.asarray(ids, dtype=np.int32))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    blocks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    dataset = datasets.Dataset.from_dict(
        {"input_ids": blocks, "prompt_length": [0] * len(blocks), "length": [len(b) for b in blocks]},
        features=_features())
    counts = {"tokens": int(len(stream)), "blocks": len(blocks),
              "short_last_block": int(bool(blocks) and len(blocks[-1]) < block_size)}
    return dataset, counts


def encode_tapt(df: pd.DataFrame, tokenizer, block_size: int, origin: str) -> Encoded:
    passages, blank = [], 0
    for value in df["input"]:
        if isinstance(value, str) and value.strip():
            passages.append(value.strip())
        else:
            blank += 1
    if not passages:
        raise TrainDataError(f"{origin}: no passage to train on ({len(df)} rows, {blank} blank)")
    dataset, counts = pack_blocks(passages, tokenizer, block_size)
    counts["passages"] = len(passages)
    return Encoded(dataset, rows_in=len(df), drops={"empty_input": blank} if blank else {}, counts=counts)


def encode_pair_rows(df: pd.DataFrame, tokenizer, wrapper: str, max_input_length: int,
                     max_output_length: int, origin: str) -> Encoded:
    if df.empty:
        raise TrainDataError(f"{origin}: no rows to train on (the set is empty)")
    prompts, targets, drops = format_pairs(df, wrapper, origin)
    dataset, counts = encode_pairs(prompts, targets, tokenizer, max_input_length, max_output_length, wrapper)
    return Encoded(dataset, rows_in=len(df), drops=drops, counts=counts)


@dataclass
class Collator:
    """Right-pads a batch; labels are the ids after each sequence's prompt, -100 elsewhere."""

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            n, start = len(ids), int(feature["prompt_length"])
            input_ids[row, :n] = ids
            attention_mask[row, :n] = 1
            labels[row, start:n] = ids[start:]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
