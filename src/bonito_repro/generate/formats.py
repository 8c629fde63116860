"""A synthetic set in bagel's four prompt formats, as JSONL files other trainers can read.

The strings follow bagel's own code (jondurbin/bagel, ``bagel/data.py``: ``alpaca_io``,
``vicuna_io``, ``chatml_io``, ``llama2_io``) for a single-turn item without a system prompt
(bagel adds a default one at random; an export has to be deterministic). chat-ml is bagel's
"sort of" chat-ml: BOS and EOS instead of ``<|im_start|>``/``<|im_end|>``; they default to
``<s>``/``</s>``, the tokens of the paper's Mistral and Llama-2 targets.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..core.io import atomic_path

ALPACA_PREAMBLE = ("Below is an instruction that describes a task.  "
                   "Write a response that appropriately completes the request.")


def alpaca(instruction: str) -> str:
    return "\n\n".join([ALPACA_PREAMBLE, "\n".join(["### Instruction: ", instruction.strip()]),
                        "### Response:\n"])


def vicuna(instruction: str) -> str:
    return "\n".join(["USER: " + instruction.strip(), "ASSISTANT: "])


def chatml(instruction: str, bos: str = "<s>", eos: str = "</s>") -> str:
    return "\n".join([f"user\n{instruction.rstrip()}\n{eos}", f"{bos}assistant\n"])


def llama2(instruction: str) -> str:
    return f"[INST] {instruction} [/INST]"


FORMATS = {"alpaca": alpaca, "vicuna": vicuna, "chatml": chatml, "llama2": llama2}


def export_formats(rows: Iterable[dict], out_dir: str | Path, dataset: str) -> dict[str, int]:
    """Write ``out_dir/<format>.jsonl`` for every format (fields ``input``, ``output``, bagel's
    ``source``: ``<dataset>_<format>``, and ``context_id``); bagel strips the response's leading
    whitespace. Returns rows per file."""
    rows = list(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, render in FORMATS.items():
        with atomic_path(out_dir / f"{name}.jsonl") as tmp, open(tmp, "w") as f:
            for row in rows:
                record = {"input": render(row["input"]), "output": row["output"].lstrip(),
                          "source": f"{dataset}_{name}", "context_id": row.get("context_id")}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {name: len(rows) for name in FORMATS}
