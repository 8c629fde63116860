"""The generation funnel: what happens to every generated task, counted by reason.

Each generation gets a flag per check and one ``reason``, the first check it fails, in the
order of ``REASONS`` (so the reasons plus ``clean`` add up to ``generated``):

- ``unparsable``: splitting on ``<|pipe|>`` does not give exactly two parts (the Bonito
  package's only filter; always removed).
- ``empty``: the instruction or the response is empty after stripping (always removed: an empty
  side cannot be trained on).
- screens of the caller, in its order, each always removing: a generator kind's own checks, such
  as backtranslation's rating (``unrated``, ``below_threshold``).
- ``exact_duplicate``: the same (instruction, response) as an earlier row, whitespace collapsed.
- ``near_duplicate``: cosine >= ``near_duplicate_cosine`` with an earlier row, both embedded
  (all-MiniLM-L6-v2) as instruction with the passage taken out, response, then passage, so the
  task itself is never lost to the embedder's 256-token truncation.
- ``contaminated``: the instruction or response, with the passage taken out, matches a test
  question, hypothesis, claim or answer (docs/protocol.md, D7): it shares a word n-gram
  (``contamination.ngram`` words) with one, contains a whole test question/hypothesis/claim that
  is shorter than n words, or its instruction has cosine >= ``contamination.cosine`` with a test
  question/hypothesis/claim. Short answer spans take part only through the n-gram check: the
  passages are the test passages, so a name or date from them is expected to recur.
- ``answer_not_in_passage`` (extractive QA only): the response, SQuAD-normalised, is not a span
  of the passage (of the instruction, which carries the passage, where the passage is unknown:
  the published sets). Measured for every generator kind; Bonito's pipeline never filtered on it.

The last four are measured by default and remove rows only where ``filters`` turns them on.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..core.metrics import normalize_answer
from ..core.prompts import parse_bonito_output
from ..core.tasks import task_type_spec
from .embeddings import Embedder, max_cosine, similar_earlier

REASONS = ("unparsable", "empty", "exact_duplicate", "near_duplicate", "contaminated", "answer_not_in_passage")
ALWAYS_REMOVED = ("unparsable", "empty")
OPTIONAL_FILTERS = ("exact_duplicates", "near_duplicates", "contaminated", "answer_not_in_passage")
FILTER_REASON = {"exact_duplicates": "exact_duplicate", "near_duplicates": "near_duplicate",
                 "contaminated": "contaminated", "answer_not_in_passage": "answer_not_in_passage"}
# test fields that hold what a task asks (question/hypothesis/claim) and its extractive answers
QUERY_FIELDS = ("question", "hypothesis", "claim")
ANSWER_FIELD = "answers"
_WORD = re.compile(r"\w+")

Embed = Callable[[list[str]], np.ndarray]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def probe_texts(rows: Iterable[dict]) -> tuple[list[str], list[str]]:
    """(queries, answers) of a test split: its questions, hypotheses and claims, and the answer
    texts of extractive QA (``answers.text``). Labels such as yes/no are not probes."""
    queries: list[str] = []
    answers: list[str] = []
    for row in rows:
        queries.extend(row[f] for f in QUERY_FIELDS if isinstance(row.get(f), str) and row[f].strip())
        found = row.get(ANSWER_FIELD)
        if isinstance(found, dict):
            answers.extend(t for t in list(found.get("text", [])) if isinstance(t, str) and t.strip())
    return queries, answers


class NgramIndex:
    """Word n-grams of the test probes, plus the whole word sequence of queries shorter than n."""

    def __init__(self, queries: Sequence[str], answers: Sequence[str], n: int):
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.short: dict[int, set[tuple[str, ...]]] = {}
        for text in [*queries, *answers]:
            tokens = words(text)
            self.grams.update(zip(*(tokens[i:] for i in range(n))))
        for text in queries:
            tokens = words(text)
            if 0 < len(tokens) < n:
                self.short.setdefault(len(tokens), set()).add(tuple(tokens))

    def matches(self, text: str) -> bool:
        tokens = words(text)
        if any(g in self.grams for g in zip(*(tokens[i:] for i in range(self.n)))):
            return True
        return any(g in grams for size, grams in self.short.items()
                   for g in zip(*(tokens[i:] for i in range(size))))


def without_passage(text: str, passage: str) -> str:
    """The text with the passage taken out (tasks quote their passage; docs/protocol.md, D7)."""
    passage = passage.strip()
    return text.replace(passage, " ").strip() if passage else text


def _normalise(text: str) -> str:
    return " ".join(text.split())


Parse = Callable[[str, str], tuple[str, str] | None]


def parse_tasks(generations: pd.DataFrame, contexts: list[str],
                parse: Parse = parse_bonito_output) -> list[tuple[str, str] | None]:
    """(instruction, response) of every row, None where it does not parse: raw generations are
    parsed here by the generator kind's ``parse``, tasks parsed elsewhere only stripped."""
    if "generation" in generations:
        return [parse(text, ctx) for text, ctx in zip(generations["generation"], contexts)]
    return [(str(i).strip(), str(o).strip()) for i, o in zip(generations["input"], generations["output"])]


def exact_duplicates(instructions: Iterable[str], responses: Iterable[str]) -> list[bool]:
    """Whether each (instruction, response), whitespace collapsed, is the same as an earlier one."""
    seen: set[tuple[str, str]] = set()
    flags = []
    for instruction, response in zip(instructions, responses):
        key = (_normalise(instruction), _normalise(response))
        flags.append(key in seen)
        seen.add(key)
    return flags


def answer_in_passage(response: str, passage: str) -> bool:
    """Whether the response, SQuAD-normalised (case, punctuation, articles, spaces), is a span of
    the passage normalised alike, on word boundaries."""
    answer = normalize_answer(response)
    return bool(answer) and f" {answer} " in f" {normalize_answer(passage)} "


def contaminated(instructions: list[str], responses: list[str], probes: tuple[list[str], list[str]],
                 params: dict, embed: Embed, dimension: int) -> np.ndarray:
    """Whether each task (passage taken out) matches a test probe: a shared word n-gram or a whole
    short query, or an instruction with cosine >= ``params["cosine"]`` to a test query (``params``
    is the ``contamination`` section; ``dimension`` that of ``embed``'s vectors)."""
    queries, answers = probes
    ngrams = NgramIndex(queries, answers, params["ngram"])
    by_ngram = np.array([ngrams.matches(q) or ngrams.matches(a) for q, a in zip(instructions, responses)])
    cosine = max_cosine(embed(queries) if queries else np.zeros((0, dimension), np.float32), embed(instructions))
    return by_ngram | (cosine >= params["cosine"])


def funnel_reasons(screens: Iterable[str] = ()) -> tuple[str, ...]:
    """Every reason in the order a row is checked: the format checks, the caller's screens, then
    the optional filters."""
    return (*ALWAYS_REMOVED, *screens, *REASONS[len(ALWAYS_REMOVED):])


def run_funnel(generations: pd.DataFrame, params: dict, probes: tuple[list[str], list[str]] = ([], []),
               embed: Embed | None = None, screens: dict[str, Sequence[bool]] | None = None, *,
               task_type: str, device: str, parse: Parse = parse_bonito_output) -> pd.DataFrame:
    """Every generation with its parsed sides, a flag per check, its ``reason`` (first failed
    check, or ``clean``) and ``kept``.

    ``generations`` has the column ``passage`` and either ``generation`` (raw Bonito output,
    parsed here) or ``input`` and ``output`` (tasks parsed elsewhere, such as the published sets);
    ``params`` is the config's ``generation`` section; ``probes`` comes from ``probe_texts``;
    ``embed`` maps texts to unit vectors (MiniLM on ``device`` when None, loaded only if a row
    needs it); ``screens`` maps further always-removing checks to a flag per row (True: the row
    fails it), checked in their order after ``empty``; ``task_type`` says whether answers are
    checked against the passage; ``parse`` is the generator kind's parser of raw generations
    (generate.kinds)."""
    screens = screens or {}
    reasons = funnel_reasons(screens)
    df = generations.reset_index(drop=True).copy()
    contexts = [p if isinstance(p, str) else "" for p in df["passage"]]
    parsed = parse_tasks(df, contexts, parse)
    df["input"] = [p[0] if p else None for p in parsed]
    df["output"] = [p[1] if p else None for p in parsed]
    df["unparsable"] = [p is None for p in parsed]
    df["empty"] = [p is not None and not (p[0] and p[1]) for p in parsed]
    for name, flags in screens.items():
        df[name] = [bool(f) for f in flags]
    for flag in REASONS[2:]:
        df[flag] = False

    rows = df.index[~(df["unparsable"] | df["empty"])]
    if len(rows):
        df.loc[rows, "exact_duplicate"] = exact_duplicates(df.loc[rows, "input"], df.loc[rows, "output"])
        instructions = [without_passage(df.at[i, "input"], contexts[i]) for i in rows]
        responses = [without_passage(df.at[i, "output"], contexts[i]) for i in rows]
        embed = embed or Embedder(device)
        task_vectors = embed([f"{q}\n{a}\n{contexts[i]}" for q, a, i in zip(instructions, responses, rows)])
        df.loc[rows, "near_duplicate"] = similar_earlier(task_vectors, params["near_duplicate_cosine"])
        df.loc[rows, "contaminated"] = contaminated(instructions, responses, probes, params["contamination"],
                                                    embed, task_vectors.shape[1])
        if task_type_spec(task_type).extractive:  # a response should be a span of its passage
            df.loc[rows, "answer_not_in_passage"] = [
                not answer_in_passage(df.at[i, "output"], contexts[i] or df.at[i, "input"]) for i in rows]

    flags = df[list(reasons)].to_numpy()
    df["reason"] = [reasons[row.argmax()] if row.any() else "clean" for row in flags]
    df["kept"] = ~df[removing_reasons(params, screens)].any(axis=1)
    return df


def removing_reasons(params: dict, screens: Iterable[str] = ()) -> list[str]:
    """The checks that remove rows: the format ones and the screens always, the others where
    filters say so."""
    on = {FILTER_REASON[f] for f in OPTIONAL_FILTERS if params["filters"][f]}
    always = {*ALWAYS_REMOVED, *screens}
    return [r for r in funnel_reasons(screens) if r in always or r in on]


def funnel_counts(df: pd.DataFrame, params: dict, screens: Iterable[str] = ()) -> dict:
    """The funnel for the manifest: first-failed-reason counts that add up to ``generated``,
    every check's own count, what was removed by reason, and what was kept (``screens``: the
    names ``run_funnel`` was given)."""
    reasons = funnel_reasons(screens)
    counts = {"generated": int(len(df))}
    counts.update({r: int((df["reason"] == r).sum()) for r in reasons})
    counts["clean"] = int((df["reason"] == "clean").sum())
    flagged = {r: int(df[r].sum()) for r in reasons}
    removed_reasons = removing_reasons(params, screens)
    # a removed row counts once, under the first removing check it fails
    first_removing = df[removed_reasons].idxmax(axis=1).where(~df["kept"])
    removed = {r: int((first_removing == r).sum()) for r in removed_reasons}
    kept = int(df["kept"].sum())
    assert sum(counts[r] for r in reasons) + counts["clean"] == counts["generated"]
    assert kept + sum(removed.values()) == counts["generated"]
    return {"funnel": counts, "flagged": flagged, "removed": removed, "kept": kept,
            "filters_on": removed_reasons}

