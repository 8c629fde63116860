"""Instruction backtranslation (Li et al., 2023, "Self-Alignment with Instruction Backtranslation")
as a task generator (docs/protocol.md, section 6.1, D18): the passage itself is the response.

1. Seed pairs, chosen as Li et al. chose theirs from OpenAssistant's oasst1 message trees: of each
   conversation, the root prompt (instruction) and its best-ranked reply (response), English
   only, at most about 3,200 (a seeded sample); every conversation left out counted by reason
   (``seed_pairs``; the selection is the generator's ``seed_selection``).
2. Two LoRA adapters of the same base trained on them by the training stage: the backward model
   (response -> instruction) and the forward seed model M0 (instruction -> response).
3. Self-augmentation: the backward model writes an instruction for each passage.
4. Self-curation: M0 rates each (instruction, passage) pair with the method's prompt on its
   5-point scale, a brief reasoning ending in "Score: N" (``parse_rating``; ``rating: ranked``
   instead takes the "Score: k" M0 finds likeliest after the prompt, ``ScoreRanking``); only pairs
   rated at or above the threshold are kept. The funnel counts an unparsable rating
   (``unrated``) and a low one (``below_threshold``) as reasons of their own, and the manifest
   every pair by score.

    python -m bonito_repro backtranslation seed --origin JSON --selection JSON --backward B.parquet
        --forward F.parquet --manifest M.json
    python -m bonito_repro backtranslation generate --dataset KEY --passages P --test T --model DIR
        --backward-adapter DIR --forward-adapter DIR --params JSON --curation JSON --shards DIR
        --out PARQUET --manifest JSON [--records R] [--formats DIR]

Both directions are trained and prompted under the ``io`` wrapper (``prompts.BACKTRANSLATION_WRAPPER``).
A passage whose rating prompt does not fit the model's context is dropped or split as
``generation.long_passages`` says, and counted, as for Bonito (``inputs.fit_passages``).
A killed generation job reuses its finished instruction and rating shards. A set that keeps no
pair is written empty, its manifest saying why: for this alternative generator that is a result
(the local scale's 135M seed model never writes a score itself: hence its ranked rating), not an
error.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core import PACKAGE_DATA
from ..runtime.backends import Backend, Sampling, make_backend
from ..runtime.device import add_device_flag, stage_device
from ..core.generators import kind_written_by
from ..core.io import (Manifest, check_writable, fingerprint, parse_params, read_parquet, seeded_subset, set_threads,
                       setup_logging, write_parquet)
from ..core.prompts import BACKTRANSLATION_WRAPPER, wrap
from .funnel import funnel_counts, probe_texts, run_funnel
from .shards import generate_raw
from .synthetic_tasks import Generation, check_lengths

log = logging.getLogger(__name__)

BACKTRANSLATION = kind_written_by("backtranslate")  # the generator kind whose sets this stage writes

# the self-curation prompt: the method's five levels, in this project's words (docs/protocol.md, D18)
CURATION_PROMPT = (PACKAGE_DATA / "backtranslation" / "self_curation.txt").read_text(
    encoding="utf-8").rstrip("\n")
INSTRUCTION_SLOT, RESPONSE_SLOT = "<generated instruction>", "<output>"
SCORES = (1, 2, 3, 4, 5)
GENERATED, RANKED = "generated", "ranked"  # how M0's rating is read (the curation's `rating`)
# tokens an instruction may gain when, decoded, it is tokenized again inside the rating prompt
RETOKENIZED_MARGIN = 8
# the funnel's screens of this kind, in checking order
UNRATED, BELOW_THRESHOLD = "unrated", "below_threshold"
# the oasst1 message columns the seed is chosen by (a layout no recorded fact confirms: the
# networked preflight checks that the seed origin has them)
SEED_COLUMNS = ("message_id", "parent_id", "role", "lang", "rank", "text")
PROMPTER, ASSISTANT = "prompter", "assistant"  # oasst1's roles
# "Score: N" as the prompt asks for it; a decimal ("Score: 4.5") is not a score on the scale
_SCORE = re.compile(r"score:\s*(\d+)(?![\d.])", re.IGNORECASE)


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def seed_pairs(messages: Sequence[dict], selection: dict) -> tuple[list[tuple[str, str]], dict[str, int], dict[str, int]]:
    """(pairs, conversations left out by reason, counts) of oasst1 message rows (``SEED_COLUMNS``),
    as Li et al. chose their seed: of each conversation (a root prompt, ``parent_id`` null), the
    prompt and its reply ranked ``selection["rank"]`` (0: the reply the annotators ranked best),
    both in ``selection["language"]``; later turns and the other replies are left out (counted).
    Where more conversations qualify than ``selection["max_pairs"]``, a seeded sample of that many
    is kept (in file order). Every conversation is a pair or a drop: counts["conversations"] ==
    pairs + the drops."""
    roots = [m for m in messages if m["parent_id"] is None]
    root_ids = {m["message_id"] for m in roots}
    replies: dict[str, list[dict]] = {}
    for m in messages:
        if m["parent_id"] in root_ids and m["role"] == ASSISTANT:
            replies.setdefault(m["parent_id"], []).append(m)
    language, rank = selection["language"], selection["rank"]
    pairs: list[tuple[str, str]] = []
    drops: Counter = Counter()
    for root in roots:
        best = [r for r in replies.get(root["message_id"], []) if r["rank"] == rank]
        if root["role"] != PROMPTER:
            drops["root_not_a_prompt"] += 1
        elif root["lang"] != language or (best and best[0]["lang"] != language):
            drops["other_language"] += 1
        elif not replies.get(root["message_id"]):
            drops["no_reply"] += 1
        elif not best:
            drops[f"no_reply_ranked_{rank}"] += 1
        elif not _text(root["text"]):
            drops["empty_instruction"] += 1
        elif not _text(best[0]["text"]):
            drops["empty_response"] += 1
        else:
            pairs.append((_text(root["text"]), _text(best[0]["text"])))
    first_replies = sum(len(r) for r in replies.values())
    counts = {"messages_in": len(messages), "conversations": len(roots), "qualifying": len(pairs),
              "other_replies_left_out": first_replies - len(pairs),
              "later_turns_left_out": len(messages) - len(roots) - first_replies}
    kept = seeded_subset(len(pairs), selection["max_pairs"], selection["seed"])
    if len(kept) < len(pairs):
        drops["beyond_max_pairs"] = len(pairs) - len(kept)
        pairs = [pairs[i] for i in kept]
    counts["pairs"] = len(pairs)
    return pairs, dict(drops), counts


def training_sets(pairs: Sequence[tuple[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(backward, forward) training rows (columns input, output) of the seed pairs: the backward
    model reads the response and writes the instruction, the forward one the other way."""
    instructions, responses = [p[0] for p in pairs], [p[1] for p in pairs]
    return (pd.DataFrame({"input": responses, "output": instructions}),
            pd.DataFrame({"input": instructions, "output": responses}))


def curation_prompt(instruction: str, response: str) -> str:
    """The self-curation prompt for one candidate pair."""
    return CURATION_PROMPT.replace(INSTRUCTION_SLOT, instruction).replace(RESPONSE_SLOT, response)


def parse_rating(text: str) -> int | None:
    """The score of a rating: the last "Score: N" in it, if N is on the 5-point scale; else None."""
    found = _SCORE.findall(text or "")
    if not found:
        return None
    score = int(found[-1])
    return score if score in SCORES else None


def curation_screens(scores: Sequence[int | None], rated: Sequence[bool], threshold: int) -> dict[str, list[bool]]:
    """The funnel's screens of this kind: a rated pair whose rating does not parse, and one rated
    below ``threshold`` (pairs not rated, having no instruction, fail neither)."""
    return {UNRATED: [r and s is None for s, r in zip(scores, rated)],
            BELOW_THRESHOLD: [r and s is not None and s < threshold for s, r in zip(scores, rated)]}


def score_counts(scores: Sequence[int | None], rated: Sequence[bool], threshold: int) -> dict:
    """Every rated pair by score (``unparsable`` where the rating gives none), for the manifest."""
    given = [s for s, r in zip(scores, rated) if r]
    by_score = {str(s): sum(g == s for g in given) for s in SCORES}
    return {"threshold": threshold, "rated": len(given), "by_score": {**by_score, "unparsable": given.count(None)},
            "at_or_above_threshold": sum(g is not None and g >= threshold for g in given)}


def _key(step: str, model_dir: Path, adapter_dir: Path, values: dict) -> str:
    """What shapes a step's shards: a changed model, adapter or value never reuses one."""
    return json.dumps({"step": step, "model": fingerprint(model_dir), "adapter": fingerprint(adapter_dir), **values},
                      sort_keys=True)


def score_text(score: int) -> str:
    """A rating's last line as the prompt asks for it."""
    return f"Score: {score}"


def score_token_ids(tokenizer) -> list[list[int]]:
    """The tokens of "Score: 1" to "Score: 5", as a reply after the prompt is tokenized in training."""
    return [tokenizer(score_text(k), add_special_tokens=False)["input_ids"] for k in SCORES]


class ScoreRanking:
    """The ranked rating (``rating: ranked``) as a backend: each rating prompt is answered with
    the "Score: k" whose tokens the forward model finds likeliest right after it (their summed
    log-probability, as the evaluation ranks answer choices), so a model too small to write the
    score itself still gives one. The prompt is the generated rating's; only how the score is read
    differs. A model that never writes "Score: N" rates nothing, which leaves every set empty."""

    def __init__(self, model_dir: Path, adapter_dir: Path, token_budget: int, bf16: bool, device: str):
        from ..runtime.models import load_for_inference, load_tokenizer

        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_for_inference(model_dir, adapter_dir, bf16=bf16).to(device)
        self.token_budget = token_budget
        self.choices = score_token_ids(self.tokenizer)

    def generate(self, prompts: list[str], seeds: list[int]) -> list[list[str]]:
        from tqdm.auto import tqdm

        from ..runtime.models import encode_with_bos
        from ..runtime.scoring import score_choices

        ids = encode_with_bos(self.tokenizer, prompts)  # the prompts come wrapped, as to a generating backend
        with tqdm(total=len(ids), desc="ranked rating", unit="pair") as progress:
            scores = score_choices(self.model, ids, [self.choices] * len(ids), self.token_budget,
                                   pad_id=self.tokenizer.pad_token_id, progress=progress)
        return [[score_text(SCORES[max(range(len(SCORES)), key=row.__getitem__)])] for row in scores]


def _factory(params: dict, model_dir: Path, adapter_dir: Path, sampling: Sampling, prompts: list[str],
             context_ids: list[int], given: Backend | None, device: str, ranked: bool = False):
    """What makes a step's backend when a shard needs one: ``given``, or the configured backend
    (``ranked``: the ranked rating) with the adapter, its length checked for ``prompts`` (an error
    names the passage's context_id)."""
    if given is not None:
        return lambda: given

    def factory() -> Backend:
        if ranked:  # the tokens read after the prompt: the longest "Score: k"
            from ..runtime.models import load_tokenizer

            new_tokens = max(len(ids) for ids in score_token_ids(load_tokenizer(model_dir)))
        else:
            new_tokens = sampling.max_new_tokens
        max_len = check_lengths(model_dir, prompts, context_ids, new_tokens, max_model_len=params["max_model_len"])
        if ranked:
            return ScoreRanking(model_dir, adapter_dir, params["token_budget"], params["bf16"], device)
        return make_backend(params["backend"], model_dir, adapter_dir, sampling, token_budget=params["token_budget"],
                            max_model_len=max_len, seed=params["seed"], bf16=params["bf16"], device=device,
                            engine=params["vllm"])
    return factory


def rating_positions(tokenizer, params: dict, curation: dict):
    """``positions(passages)`` for ``inputs.fit_passages``: what each passage needs of the model's
    context in the longer of its two prompts, the rating's (the rubric, an instruction of up to
    ``max_new_tokens`` tokens and the passage, then the rating's tokens); the backward model's
    (the passage, then the instruction) is shorter."""
    from ..runtime.models import encode_with_bos

    rating_tokens = (curation["rating_max_new_tokens"] if curation["rating"] == GENERATED
                     else max(len(ids) for ids in score_token_ids(tokenizer)))
    after = params["max_new_tokens"] + RETOKENIZED_MARGIN + rating_tokens

    def positions(texts: list[str]) -> list[int]:
        prompts = [wrap(curation_prompt("", t), BACKTRANSLATION_WRAPPER) for t in texts]
        return [len(ids) + after for ids in encode_with_bos(tokenizer, prompts)]
    return positions


def run_backtranslation(texts: Sequence[str], params: dict, curation: dict, *, model_dir: Path,
                        backward_dir: Path, forward_dir: Path, context_ids: Sequence[int],
                        test_rows: Sequence[dict] = (), shards_dir: Path | None = None,
                        task_type: str, device: str, embed=None,
                        backends: tuple[Backend, Backend] | None = None) -> tuple[Generation, dict]:
    """Self-augmentation then self-curation of ``texts`` (``params``: the config's ``generation``
    section; ``curation``: the generator's ``threshold``, ``rating`` and ``rating_max_new_tokens``):
    the generation with every pair through the funnel, and the pairs by score. The pieces of a
    split passage share its context_id. ``backends``: (backward,
    forward) objects with the ``Backend`` interface to use instead of the models (the caller's:
    never closed here); ``task_type`` is the dataset's (the funnel measures answer-in-passage for
    extractive QA), ``device`` where the models run."""
    backward_backend, forward_backend = backends or (None, None)
    texts, ids = [t.strip() for t in texts], [int(c) for c in context_ids]
    shaping = {k: params[k] for k in ("backend", "n", "temperature", "top_p", "max_new_tokens", "seed", "bf16",
                                      "token_budget")}
    sampling = Sampling(n=params["n"], temperature=params["temperature"], top_p=params["top_p"],
                        max_new_tokens=params["max_new_tokens"])
    prompts = [wrap(t, BACKTRANSLATION_WRAPPER) for t in texts]
    shards = (lambda step: shards_dir / step) if shards_dir is not None else (lambda step: None)
    raw, augmented = generate_raw(prompts, ids, params,
                                  _factory(params, model_dir, backward_dir, sampling, prompts, ids, backward_backend, device),
                                  shards("instructions"), _key("instructions", model_dir, backward_dir, shaping),
                                  close=backends is None)
    # raw holds n instructions of each prompt in prompt order: passages by position, since the
    # pieces of a split passage share its context_id
    pairs = pd.DataFrame({"context_id": raw["context_id"], "sample": raw["sample"],
                          "input": raw["generation"].str.strip(),
                          "passage": [text for text in texts for _ in range(params["n"])]})
    pairs["output"] = pairs["passage"]
    rated = (pairs["input"] != "").tolist()  # an empty instruction is counted by the funnel, not rated
    to_rate = [i for i, r in enumerate(rated) if r]
    rating_prompts = [wrap(curation_prompt(pairs.at[i, "input"], pairs.at[i, "output"]), BACKTRANSLATION_WRAPPER)
                      for i in to_rate]
    ranked = curation["rating"] == RANKED
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=curation["rating_max_new_tokens"])
    # what shapes a rating: the ranked one reads the model's scores of the five continuations only
    rating_values = ({"rating": RANKED, "bf16": params["bf16"]} if ranked else
                     {**shaping, "rating": GENERATED, "n": 1, "temperature": 0.0, "top_p": 1.0,
                      "max_new_tokens": curation["rating_max_new_tokens"]})
    ratings, curated = generate_raw(rating_prompts, to_rate, {**params, "n": 1},
                                    # a prompt too long for the model is named by its passage's context_id
                                    _factory(params, model_dir, forward_dir, greedy, rating_prompts,
                                             [int(pairs.at[i, "context_id"]) for i in to_rate], forward_backend,
                                             device, ranked=ranked),
                                    shards("ratings"), _key("ratings", model_dir, forward_dir, rating_values),
                                    close=backends is None)
    rating_of = dict(zip(ratings["context_id"].astype(int), ratings["generation"]))
    texts_of_ratings = [rating_of.get(i) for i in range(len(pairs))]  # None: not rated
    pairs["rating"] = texts_of_ratings
    scores = [parse_rating(r) if r is not None else None for r in texts_of_ratings]
    pairs["score"] = pd.array(scores, dtype="Int64")
    screens = curation_screens(scores, rated, curation["threshold"])
    records = run_funnel(pairs, params, probe_texts(test_rows), embed=embed, screens=screens, task_type=task_type,
                         device=device)
    summary = funnel_counts(records, params, screens)
    kept = records[records["kept"]]
    rows = [{"input": i, "output": o, "context_id": int(c)}
            for i, o, c in zip(kept["input"], kept["output"], kept["context_id"])]
    steps = {"instructions": augmented, "ratings": curated}
    return Generation(rows=rows, records=records, summary=summary, shards=steps), score_counts(scores, rated,
                                                                                              curation["threshold"])


def _seed(args: argparse.Namespace) -> None:
    from ..core.config import ConfigError, check_params
    from ..core.origins import load_origin, pin_origin

    try:
        selection = check_params(parse_params(args.selection), "backtranslation_seed_selection", flag="--selection")
    except ConfigError as error:
        raise SystemExit(f"backtranslation seed: {error}") from None
    origin = pin_origin(parse_params(args.origin))  # the manifest records the commit read
    manifest = Manifest("backtranslation_seed", params={"origin": origin, "selection": selection})
    rows = load_origin(origin, "seed")
    missing = [c for c in SEED_COLUMNS if c not in rows.column_names]
    if missing:
        raise SystemExit(f"backtranslation seed: {origin}: no column(s) {missing} of oasst1's message rows "
                         f"(columns: {rows.column_names})")
    pairs, drops, counts = seed_pairs(rows.select_columns(list(SEED_COLUMNS)).to_list(), selection)
    if not pairs:
        raise SystemExit(f"backtranslation seed: {origin}: no conversation gives a pair with {selection} "
                         f"(left out: {drops})")
    backward, forward = training_sets(pairs)
    write_parquet(backward, args.backward)
    write_parquet(forward, args.forward)
    for reason, n in drops.items():
        manifest.drop(reason, n)
    manifest.counts = counts
    manifest.extra = {"provenance": origin}
    manifest.write(args.manifest)
    log.info("seed: %d pairs of %d conversations (%d messages); left out %s", counts["pairs"],
             counts["conversations"], counts["messages_in"], drops)


def _generate(args: argparse.Namespace) -> None:
    from ..core.config import ConfigError, check_params
    from .cli import generation_params, write_manifest, write_tasks
    from .inputs import fit_passages, position_limit, read_passages

    params = generation_params(args.params)
    try:
        curation = check_params(parse_params(args.curation), "backtranslation_curation", flag="--curation")
    except ConfigError as error:
        raise SystemExit(f"backtranslation generate: {error}") from None
    check_writable(args.out, args.manifest, args.records, args.formats)
    stage_device(args.device, f"backtranslation generate {args.dataset}")
    manifest = Manifest("generate", params={**params, "curation": curation}, seed=params["seed"])
    test_rows = read_parquet(args.test).to_pylist() if args.test else []
    texts, ids, counts = read_passages(args.passages, params["max_passages"], params["seed"])
    limit = position_limit(args.model, params["max_model_len"])
    if limit:  # a passage too long for the model's context is dropped or split, as configured
        from ..runtime.models import load_tokenizer

        tokenizer = load_tokenizer(args.model)
        texts, ids, fitted = fit_passages(texts, ids, tokenizer, limit, params,
                                          rating_positions(tokenizer, params, curation))
        counts.update(fitted)
    result, scores = run_backtranslation(texts, params, curation, model_dir=args.model,
                                         backward_dir=args.backward_adapter, forward_dir=args.forward_adapter,
                                         context_ids=ids, test_rows=test_rows, shards_dir=args.shards,
                                         task_type=args.task_type, device=args.device)
    if not result.rows:  # an alternative generator that keeps nothing is a result (as small models do)
        log.warning("%s: no tasks (0 of %d kept): %s", args.dataset, result.summary["funnel"]["generated"],
                    result.summary["removed"])
    formats = write_tasks(args, result)
    provenance = {"model": str(args.model), "backward_adapter": str(args.backward_adapter),
                  "forward_adapter": str(args.forward_adapter)}
    args.kind, args.published = BACKTRANSLATION, None  # what write_manifest records of the kind
    write_manifest(manifest, args, result, counts,
                   {"provenance": provenance, "shards": result.shards, "ratings": scores}, formats)
    log.info("%s: kept %d of %d pairs; by score %s", args.dataset, result.summary["kept"],
             result.summary["funnel"]["generated"], scores["by_score"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonito-repro backtranslation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    seed = steps.add_parser("seed", help="seed pairs from oasst1 conversations, in both directions")
    seed.add_argument("--origin", required=True, help="the generator's seed origin (JSON; oasst1's message rows)")
    seed.add_argument("--selection", required=True, help="the generator's seed_selection (JSON)")
    seed.add_argument("--backward", type=Path, required=True, help="response -> instruction rows (parquet)")
    seed.add_argument("--forward", type=Path, required=True, help="instruction -> response rows (parquet)")
    seed.add_argument("--manifest", type=Path, required=True)
    generate = steps.add_parser("generate", help="self-augmentation and self-curation of a dataset's passages")
    generate.add_argument("--dataset", required=True, help="dataset key (names errors and the manifest)")
    generate.add_argument("--task-type", required=True, help="the dataset's task type (recorded; never prompted)")
    generate.add_argument("--passages", type=Path, required=True, help="unannotated parquet (column input)")
    generate.add_argument("--test", type=Path,
                          help="test split parquet (contamination probes); none for a dataset without one")
    generate.add_argument("--model", type=Path, required=True, help="the base model directory")
    generate.add_argument("--backward-adapter", type=Path, required=True)
    generate.add_argument("--forward-adapter", type=Path, required=True)
    generate.add_argument("--params", required=True, help="the config's generation section (JSON)")
    generate.add_argument("--curation", required=True,
                          help="JSON: the generator's threshold, rating and rating_max_new_tokens")
    generate.add_argument("--shards", type=Path, help="scratch directory of finished shards (resume)")
    generate.add_argument("--out", type=Path, required=True, help="kept tasks (parquet)")
    generate.add_argument("--manifest", type=Path, required=True)
    generate.add_argument("--records", type=Path, help="every pair with its rating and funnel reason (parquet)")
    generate.add_argument("--formats", type=Path, help="directory for the four bagel prompt formats (JSONL)")
    generate.add_argument("--threads", type=int)
    add_device_flag(generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the generate stage: set before torch loads
    args = _parser().parse_args(argv)
    setup_logging()
    if args.step == "seed":
        _seed(args)
    else:
        set_threads(args.threads)
        _generate(args)
    return 0
