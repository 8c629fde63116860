"""Hugging Face cards for what the workflow makes, written from its manifests into a folder that
can be pushed to the Hub as it is (``bonito-repro push FOLDER USER/NAME``):

- a synthetic set: ``README.md`` (a dataset card) beside ``data/train.parquet`` and bagel's four
  formats (``formats/*.parquet``, one config each: datasets reads a folder's configs with one
  builder, so the JSONL the generate stage writes is stored as parquet here);
  ``datasets.load_dataset(FOLDER)`` reads it;
- a size point's subset (the ablations): the same, its rows the subset's, the funnel the full set's;
- an adapter: ``README.md`` (a model card) beside the adapter's files;
  ``PeftModel.from_pretrained(base, FOLDER)`` reads it.

    python -m bonito_repro cards dataset --tasks T.parquet --manifest M.json --formats DIR
        --passages-manifest U.json --info JSON --out FOLDER
    python -m bonito_repro cards dataset --tasks SUBSET.parquet --manifest M.json --subset-manifest S.json
        --passages-manifest U.json --info JSON --out FOLDER
    python -m bonito_repro cards model --adapter DIR --manifest M.json --evaluation E.json
        --data-manifest D.json --info JSON --out FOLDER

Files are hard links to the workflow's outputs where the filesystem allows (copies elsewhere).
The metadata is checked offline with huggingface_hub's card-data classes (their ``validate()``
asks the Hub); a license must be one the Hub knows (data/hub_licenses.tsv). Both cards cite the
paper. ``--info`` holds what the manifests do not: names, titles, the license and languages of the
text (from its dataset file), the scale, the generator and training values the jobs ran with.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.config import COMPARABLE_SCALES
from ..core.io import atomic_dir, parse_params, read_json, setup_logging
from ..core.licenses import license_problem
from ..core.prompts import bonito_input
from ..core.tasks import task_type_name

log = logging.getLogger(__name__)
# the Hub's size categories, by row count (upper bounds)
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))
PAPER_ARXIV = "2402.18334"  # a card's `arxiv:` tag links it to the paper's page on the Hub
PAPER_BIBTEX = """@inproceedings{nayak-etal-2024-learning,
    title = "Learning to Generate Instruction Tuning Datasets for Zero-Shot Task Adaptation",
    author = "Nayak, Nihal and Nan, Yiyang and Trost, Avi and Bach, Stephen",
    booktitle = "Findings of the Association for Computational Linguistics: ACL 2024",
    year = "2024",
    address = "Bangkok, Thailand",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2024.findings-acl.748",
    doi = "10.18653/v1/2024.findings-acl.748",
    pages = "12585--12611",
}"""
CITATION = ("## Citation\n\nMade by a reproduction of Bonito (Nayak et al., 2024, "
            f"[arXiv {PAPER_ARXIV}](https://arxiv.org/abs/{PAPER_ARXIV})); cite the paper:\n\n"
            f"```bibtex\n{PAPER_BIBTEX}\n```")
DEMO_NOTE = ("Made at {scale} scale with a small stand-in model: a test of the workflow, not comparable "
             "with the paper and not meant for use.")


class CardError(ValueError):
    """A card's metadata does not pass its card-data class, or an input lacks what it needs."""


def size_category(rows: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>100M")


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(source, target)


def render(metadata: dict, body: str, kind: str) -> str:
    """The card's text, its metadata checked by huggingface_hub's card-data class (offline)."""
    from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

    data_class, card_class = (DatasetCardData, DatasetCard) if kind == "dataset" else (ModelCardData, ModelCard)
    try:
        data = data_class(**metadata)
    except (ValueError, TypeError) as error:
        raise CardError(f"{kind} card metadata: {error}") from None
    card = card_class(f"---\n{data.to_yaml()}\n---\n\n{body}")
    missing = [key for key in ("license",) if kind == "dataset" and not getattr(card.data, key, None)]
    if missing:
        raise CardError(f"{kind} card metadata: missing {missing}")
    wrong = license_problem(card.data.license) if getattr(card.data, "license", None) else None
    if wrong:
        raise CardError(f"{kind} card metadata: {wrong}")
    return str(card)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(manifest: dict, passages: dict, info: dict, formats: list[str],
                 subset: dict | None = None) -> tuple[dict, str]:
    """(metadata, body) of a synthetic set's card: its source text, generator and sampling, the
    funnel, contamination and the prompt format; for a subset (its ``subset`` manifest), which
    seeded share of the set it holds."""
    funnel, kept = manifest["funnel"], manifest["kept"]
    rows = subset["counts"]["kept"] if subset else kept
    sampling = info["generation"]
    task_type = task_type_name(info["task_type"])
    metadata = {
        "license": info["license"], **({"language": info["language"]} if info.get("language") else {}),
        "task_categories": ["text-generation"],
        "size_categories": [size_category(rows)],
        "pretty_name": f"{info['title']}: {info['generator']} tasks" + (f", a subset of {rows}" if subset else ""),
        "tags": ["synthetic", "bonito", "instruction-tuning", task_type.replace(" ", "-"), f"arxiv:{PAPER_ARXIV}"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.parquet"}]},
                    *({"config_name": name, "data_files": [{"split": "train", "path": f"formats/{name}.parquet"}]}
                      for name in formats)],
    }
    removed = manifest["removed"]
    flagged = manifest["flagged"]
    contamination = sampling["contamination"]
    filters = sampling["filters"]
    generator = info["generator_spec"]
    provenance = manifest.get("provenance", {})
    prompt = bonito_input("{passage}", info["task_type"])
    if info["evaluated"]:
        checked = (f"{flagged.get('contaminated', 0)} of {funnel['generated']} generations match the test split "
                   f"(a shared {contamination['ngram']}-gram, a whole short question, or cosine >= "
                   f"{contamination['cosine']} to a test question); the filter is "
                   f"{'on: they were removed' if filters.get('contaminated') else 'off: they are kept and counted'}. ")
    else:
        checked = "The dataset has no labelled test set: there was nothing to check contamination against. "
    body = "\n\n".join([
        f"# {metadata['pretty_name']}",
        f"Synthetic {task_type} tasks (instruction `input`, response `output`, the passage's row "
        f"`context_id`) generated from the unannotated text of **{info['title']}** "
        f"({info['dataset']}), as in Bonito (Nayak et al., 2024), by this project's workflow."
        + (f" A seeded subset (seed {subset['seed']}) of {rows} of the set's {subset['counts']['rows_in']} tasks, "
           "for the ablation on the number of tasks; the sections below describe the whole set." if subset else "")
        + (f"\n\n{DEMO_NOTE.format(scale=info['scale'])}" if info["scale"] not in COMPARABLE_SCALES else ""),
        "## Source text",
        f"Read from {info['origin']}. License of the text: `{info['license']}`. Language: "
        + (", ".join(f"`{code}`" for code in info["language"]) if info.get("language") else
           "not given by the dataset file") + ". "
        f"{passages['counts']['rows_out']} passages of {passages['counts']['rows_in']} rows "
        f"(dropped: {passages.get('drops') or 'none'}); {manifest['counts'].get('passages', 'none')} "
        "passages went to the generator.",
        "## Generator and sampling",
        f"Generator `{info['generator']}`: {generator}; provenance {provenance}.\n\n"
        + _table([(k, sampling[k]) for k in ("backend", "n", "temperature", "top_p", "max_new_tokens", "seed")
                  if k in sampling], ("setting", "value")),
        "## Funnel",
        f"Every generation counted once, by the first check it fails; kept {kept} of {funnel['generated']}.\n\n"
        + _table([(reason, count, "removed" if reason in removed else "kept") for reason, count in funnel.items()
                  if reason != "generated"], ("reason", "generations", "")),
        "## Contamination",
        checked + f"Near duplicates (cosine >= {sampling['near_duplicate_cosine']}): {flagged.get('near_duplicate', 0)}; "
        f"exact duplicates: {flagged.get('exact_duplicate', 0)}.",
        "## Prompt format",
        "The generator's input for each passage (the response is an instruction, `<|pipe|>`, and the "
        f"answer):\n\n```\n{prompt}\n```\n\nThe tasks in bagel's prompt formats are the configs "
        f"{', '.join(f'`{f}`' for f in formats) or '(none)'}.",
        CITATION,
    ]) + "\n"
    return metadata, body


def model_card(manifest: dict, evaluation: dict | None, data: dict, info: dict) -> tuple[dict, str]:
    """(metadata, body) of an adapter's card: base, data, hyperparameters, steps, F1 where
    evaluated, intended use and limits."""
    hp = info["training"]
    tapt = info["source"] == "tapt"
    metadata: dict[str, Any] = {
        # the Hub checks base_model against its repositories: only a Hub id goes there (a local
        # stand-in such as a GGUF-converted model is named in the text)
        **({"base_model": info["base_model"]} if info["base_model_on_hub"] else {}),
        "library_name": "peft", "pipeline_tag": "text-generation",
        "tags": ["lora", "bonito", "tapt" if tapt else "synthetic-tasks", f"arxiv:{PAPER_ARXIV}"],
        **({"language": info["language"]} if info.get("language") else {}),
        "model_name": f"{info['target']}-{info['source']}-{info['dataset']}",
    }
    f1 = ""
    if evaluation is not None:
        from huggingface_hub import EvalResult

        metadata["eval_results"] = [EvalResult(
            task_type="text-generation", dataset_type=info["dataset"], dataset_name=info["title"],
            dataset_split="test", metric_type="f1", metric_value=round(evaluation["mean"], 2),
            metric_name=f"F1, mean of {len(evaluation['templates'])} templates")]
        f1 = (f"F1 {evaluation['mean']:.1f} (mean over {len(evaluation['templates'])} templates; "
              f"{evaluation['confidence']:.0%} bootstrap interval {evaluation['ci'][0]:.1f} to "
              f"{evaluation['ci'][1]:.1f}) on {evaluation['n_examples']} test rows of {info['title']}, "
              f"by {evaluation['method']} under the `{evaluation['wrapper']}` wrapper.\n\n"
              + _table([(name, f"{scores['f1']:.1f}") for name, scores in evaluation["templates"].items()],
                       ("template", "F1")))
    if tapt:  # the passages' manifest
        trained_on = (f"{data['counts']['rows_out']} unannotated passages of {info['title']} (TAPT: next-word "
                      "prediction on every token)")
    else:  # a generation manifest holds `kept`; a size point's subset manifest its counts
        tasks = data["kept"] if "kept" in data else data["counts"]["kept"]
        trained_on = (f"{tasks} synthetic tasks generated by `{info['source']}` from the unannotated text "
                      f"of {info['title']} (loss on the response)")
    body = "\n\n".join([
        f"# {metadata['model_name']}",
        f"A LoRA adapter of `{info['base_model']}`"
        + (f", starting from the adapter {info['init_adapter']}" if info.get("init_adapter") else "")
        + f", adapted to {info['title']} as in Bonito (Nayak et al., 2024) by this project's workflow.",
        "## Training data", trained_on + ".",
        "## Hyperparameters",
        _table([("quantization", hp["quantization"]), ("LoRA r / alpha / dropout",
                 f"{hp['lora']['r']} / {hp['lora']['alpha']} / {hp['lora']['dropout']}"),
                ("learning rate", hp["learning_rate"]), ("scheduler", hp["lr_scheduler"]),
                ("optimizer", hp["optimizer"]), ("effective batch", manifest["effective_batch"]),
                ("steps", manifest["steps"]), ("epochs", round(manifest["epochs"], 3)),
                ("prompt wrapper", manifest["wrapper"]), ("seed", hp["seed"])], ("setting", "value")),
        "## Evaluation", f1 or (f"Not evaluated: {info['title']} has no labelled test set, and F1 is defined "
                                "for yes-no QA, NLI and extractive QA only." if not info["evaluated"] else "Not evaluated."),
        "## Intended use and limits",
        (DEMO_NOTE.format(scale=info["scale"]) if info["scale"] not in COMPARABLE_SCALES else
         f"Zero-shot task adaptation research on {info['title']}'s domain: answering "
         f"{task_type_name(info['task_type'])} prompts like the evaluation's. The training tasks are "
         "machine-generated and unchecked by people; the adapter inherits the base model's biases and "
         "license terms, and its F1 holds for this test set only."),
        CITATION,
    ]) + "\n"
    return metadata, body


def write_folder(out: Path, files: dict[str, Path], card: str, jsonl: dict[str, Path] | None = None) -> None:
    """The card folder, built beside ``out`` and moved into place whole: ``files`` linked,
    ``jsonl`` files stored as parquet."""
    with atomic_dir(out) as tmp:
        for name, source in files.items():
            link_or_copy(source, tmp / name)
        for name, source in (jsonl or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            pd.read_json(source, lines=True, dtype=False).to_parquet(tmp / name, index=False)
        (tmp / "README.md").unlink(missing_ok=True)  # never written through a link to an output
        (tmp / "README.md").write_text(card, encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bonito-repro cards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", required=True)
    dataset = kinds.add_parser("dataset", help="a synthetic set's folder and dataset card")
    dataset.add_argument("--tasks", type=Path, required=True, help="the synthetic set (parquet)")
    dataset.add_argument("--manifest", type=Path, required=True, help="its generation manifest")
    dataset.add_argument("--formats", type=Path, help="its bagel formats directory (a full set's)")
    dataset.add_argument("--subset-manifest", type=Path, help="a size point's subset manifest: --tasks is "
                         "the subset, --manifest the full set's generation manifest")
    dataset.add_argument("--passages-manifest", type=Path, required=True, help="the unannotated text's manifest")
    model = kinds.add_parser("model", help="an adapter's folder and model card")
    model.add_argument("--adapter", type=Path, required=True, help="the adapter directory")
    model.add_argument("--manifest", type=Path, required=True, help="its training manifest")
    model.add_argument("--evaluation", type=Path, help="its evaluation scores (JSON)")
    model.add_argument("--data-manifest", type=Path, required=True,
                       help="the manifest of what it trained on (synthetic set or unannotated text)")
    for sub in (dataset, model):
        sub.add_argument("--info", required=True, help="names, license, scale and config values (JSON)")
        sub.add_argument("--out", type=Path, required=True, help="the card folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    info = parse_params(args.info, "--info")
    if args.kind == "dataset" and (args.formats is None) == (args.subset_manifest is None):
        log.error("dataset card for %s: give --formats (a full set) or --subset-manifest (a subset)", args.out)
        return 1
    try:
        if args.kind == "dataset":
            formats = sorted(p.stem for p in args.formats.glob("*.jsonl")) if args.formats else []
            subset = read_json(args.subset_manifest) if args.subset_manifest else None
            metadata, body = dataset_card(read_json(args.manifest), read_json(args.passages_manifest), info, formats,
                                          subset)
            files = {"data/train.parquet": args.tasks}
            jsonl = {f"formats/{f}.parquet": args.formats / f"{f}.jsonl" for f in formats}
        else:
            evaluation = read_json(args.evaluation) if args.evaluation else None
            metadata, body = model_card(read_json(args.manifest), evaluation, read_json(args.data_manifest), info)
            # the adapter's own files: not Snakemake's hidden timestamp (a link to it would let the
            # card job's timestamp touch the adapter's, rerunning its evaluations) nor the card
            # PEFT writes (this folder's README.md is the card below)
            files = {p.name: p for p in sorted(args.adapter.iterdir())
                     if p.is_file() and not p.name.startswith(".") and p.name != "README.md"}
            jsonl = {}
        card = render(metadata, body, args.kind)
    except (CardError, KeyError) as error:
        log.error("%s card for %s: %s", args.kind, args.out, error)
        return 1
    write_folder(args.out, files, card, jsonl)
    log.info("%s card: %s (%d files)", args.kind, args.out, len(files) + len(jsonl) + 1)
    return 0
