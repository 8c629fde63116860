"""A quality profile per (generator, dataset), one table across generators: what each synthetic
set looks like before any adaptation runs, to explain the F1 differences between generators.

Per cell: tasks generated and kept, dropped by reason, and the funnel's duplicate and
contamination counts (all read from the generation manifest); from the kept tasks, the share
whose response occurs in the passage (extractive QA), the label balance of the responses
(yes / no / maybe / other, for yes-no QA and NLI), the mean instruction and response lengths in
words, and distinct-2 of the instructions. An instruction is measured with its passage taken out
(Bonito writes the passage into it; backtranslation does not), where the passage is known.

    python -m bonito_repro quality-profile --synthetic S1 ... --manifests M1 ... --passages U1 ...
        --params JSON --out-csv P.csv --out-md P.md
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.config import COMPARABLE_SCALES
from ..core.io import parse_params, read_json, setup_logging, write_csv, write_text
from ..core.metrics import normalize_answer
from ..core.tasks import task_type_spec
from ..generate.funnel import without_passage

log = logging.getLogger(__name__)

# a response's label, by its normalised text (normalize_answer: lower case, no punctuation or
# articles): the words yes-no QA and NLI tasks answer with; anything else is `other`
LABEL_WORDS = {
    "yes": ("yes", "true", "correct", "entailment", "entails", "supports"),
    "no": ("no", "false", "incorrect", "contradiction", "contradicts", "refutes"),
    "maybe": ("maybe", "neutral", "neither", "unknown", "inconclusive", "not enough info",
              "it is not possible to tell", "cannot be determined"),
}
_LABEL_OF = {word: label for label, words in LABEL_WORDS.items() for word in words}
LABELS = (*LABEL_WORDS, "other")
# the funnel's measured checks the profile shows as counts (every check's own count)
FLAGGED = ("exact_duplicate", "near_duplicate", "contaminated")


def label_of(response: str) -> str:
    """yes / no / maybe for a response that is one of LABEL_WORDS (normalised), else other."""
    return _LABEL_OF.get(normalize_answer(response), "other")


def label_balance(responses: Sequence[str]) -> dict[str, float]:
    """The share of responses of each label (NaN for no responses)."""
    labels = [label_of(r) for r in responses]
    return {label: labels.count(label) / len(labels) if labels else math.nan for label in LABELS}


def answer_in_passage_share(responses: Sequence[str], passages: Sequence[str]) -> float:
    """The share of responses that occur in their passage, both normalised as SQuAD does (an
    empty response never does); NaN for no responses."""
    if not responses:
        return math.nan
    found = [bool(normalize_answer(r)) and normalize_answer(r) in normalize_answer(p)
             for r, p in zip(responses, passages)]
    return sum(found) / len(found)


def mean_words(texts: Sequence[str]) -> float:
    return sum(len(t.split()) for t in texts) / len(texts) if texts else math.nan


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): distinct word n-grams over all word n-grams of the texts
    (lower-cased, split on whitespace); NaN when there is none."""
    grams = [tuple(words[i:i + n]) for words in (t.lower().split() for t in texts)
             for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def passages_of(tasks: pd.DataFrame, unannotated: Sequence[str]) -> list[str]:
    """Each task's passage, by its context_id into the unannotated rows; where that is unknown
    (a published set), the instruction, which carries the passage in Bonito's tasks."""
    return [unannotated[int(c)] if pd.notna(c) else str(i) for c, i in zip(tasks["context_id"], tasks["input"])]


def profile_row(generator: str, dataset: str, task_type: str, tasks: pd.DataFrame, manifest: dict,
                unannotated: Sequence[str]) -> dict:
    """One cell's profile (see the module docstring): ``tasks`` the kept synthetic rows,
    ``manifest`` their generation manifest, ``unannotated`` the dataset's passages."""
    spec = task_type_spec(task_type)
    passages = passages_of(tasks, unannotated)
    known = [pd.notna(c) for c in tasks["context_id"]]
    instructions = [without_passage(i, p) if k else i for i, p, k in zip(tasks["input"], passages, known)]
    responses = list(tasks["output"])
    row = {"generator": generator, "dataset": dataset, "task_type": spec.code,
           "generated": manifest["funnel"]["generated"], "kept": manifest["kept"],
           **{f"dropped_{reason}": n for reason, n in manifest["removed"].items()},
           **{f"{flag}s" if flag != "contaminated" else flag: manifest["flagged"][flag] for flag in FLAGGED},
           "answer_in_passage": answer_in_passage_share(responses, passages) if spec.extractive
           else math.nan}
    balance = label_balance(responses) if spec.labelled else dict.fromkeys(LABELS, math.nan)
    row.update({f"label_{label}": share for label, share in balance.items()})
    row.update(instruction_words=mean_words(instructions), response_words=mean_words(responses),
               distinct_2=distinct_n(instructions, 2))
    return row


def profile_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The rows as one table, a missing drop reason of a generator counted 0."""
    table = pd.DataFrame(list(rows))
    dropped = [c for c in table.columns if c.startswith("dropped_")]
    table[dropped] = table[dropped].fillna(0).astype(int)
    return table


def markdown(table: pd.DataFrame, decimals: int, note: str = "") -> str:
    """The table for reading: drops as one "reason n" column, shares in percent."""
    shown = table.copy()
    dropped = [c for c in shown.columns if c.startswith("dropped_")]
    shown["dropped"] = [", ".join(f"{c[len('dropped_'):]} {row[c]}" for c in dropped if row[c]) or "none"
                        for _, row in shown.iterrows()]
    shares = ["answer_in_passage", *(f"label_{label}" for label in LABELS)]
    shown[shares] = shown[shares] * 100
    shown = shown.drop(columns=dropped).rename(columns={c: f"{c} %" for c in shares})
    order = ["generator", "dataset", "task_type", "generated", "kept", "dropped"]
    shown = shown[order + [c for c in shown.columns if c not in order]]
    shown = shown.astype(object).where(shown.notna(), None)  # a measure that does not apply: blank
    return note + shown.to_markdown(index=False, floatfmt=f".{decimals}f", missingval="") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro quality-profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=Path, nargs="+", required=True, help="kept tasks of each cell (parquet)")
    parser.add_argument("--manifests", type=Path, nargs="+", required=True, help="generation manifest of each cell")
    parser.add_argument("--passages", type=Path, nargs="+", required=True, help="unannotated parquet of each cell")
    parser.add_argument("--params", required=True, help="JSON: cells (a [generator, dataset, task_type] per "
                        "cell, in the order of the files), decimals, and scale (labels demo data)")
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-md", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    params = parse_params(args.params)
    cells = params["cells"]
    if not len(cells) == len(args.synthetic) == len(args.manifests) == len(args.passages):
        raise SystemExit("quality-profile: --cells, --synthetic, --manifests and --passages differ in length")
    rows = [profile_row(g, d, t, pd.read_parquet(s), read_json(m), pd.read_parquet(u)["input"].tolist())
            for (g, d, t), s, m, u in zip(cells, args.synthetic, args.manifests, args.passages)]
    table = profile_table(rows)
    write_csv(table, args.out_csv)
    note = "" if params["scale"] in COMPARABLE_SCALES else \
        f"Embedded demo data ({params['scale']} scale), not comparable with the paper.\n\n"
    write_text(markdown(table, params["decimals"], note), args.out_md)
    log.info("quality profile of %d (generator, dataset) cells: %s", len(rows), args.out_csv)
    return 0
