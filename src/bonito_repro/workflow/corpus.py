"""A user's own unannotated text as a dataset of the workflow, in one command.

    bonito-repro corpus --text my.txt --task-type "yes-no question answering" \\
        --name my_corpus --out-dir my_corpus [--text-field FIELD] \\
        [--test test.csv --test-fields passage=clause,question=q,label=answer --label-map Y=yes,N=no] \\
        [--scale local|workstation|paper] [--generator bonito] [--targets smollm2] [--run]

It reads the text (plain text: one passage per blank-line-separated block; JSONL, CSV or parquet:
the column ``--text-field``), drops empty and duplicate passages (counted by reason in
``corpus.manifest.json``), and writes into ``--out-dir``: the passages (``unannotated.jsonl``),
the labelled test set in the schema of the paper's dataset of the same task type
(``test.jsonl``), the dataset file ``NAME.yaml`` and an overlay ``run.yaml`` selecting it. It
checks the whole config with that overlay, then prints the command that runs it (``bonito-repro
run`` with absolute paths and ``-d`` this directory: it works from any directory), or runs it with
``--run``. The overlay names the run after the dataset (``run.name``): its tables go to
results/runs/NAME/, while the models, ctga and trained generators in results/ are shared with the
runs before it (the demo's), so nothing finished is trained again. The workflow then runs as for
the paper's datasets: the same rules, manifests, funnel, resume and reruns (rerun this command
after editing the text: a changed passage file reruns what depends on it).

Any of the 16 task types is generated for and adapted on. F1 needs a labelled test set and one
of the task types it is defined for, each scored with the paper's templates of the dataset of
that type: yes-no QA (PubMedQA's), NLI (ContractNLI's), extractive QA (SQuADShifts NYT's);
without a test set the run ends at the adapted models. Bad input stops with an error naming the
file, the row and the field.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

from ..core.config import DATASETS_DIR, ConfigError, load_config, merged_config, read_yaml, scale_files
from ..core.io import InputFileError, Manifest, read_jsonl, read_parquet, setup_logging, write_text
from ..core.licenses import license_problem
from ..core.tasks import (GENERATION_TASK_TYPES, RANK_TASK_TYPES, TASK_TYPE_SPECS, TASK_TYPES, task_type_code,
                          task_type_spec)
from . import run as run_command
from .scales import SCALE_PROFILES, own_entries, scales_declaring

log = logging.getLogger(__name__)
FORMATS = (".txt", ".jsonl", ".csv", ".parquet")
# The task types with F1, in the order messages list them. Which paper dataset lends a user's
# test set of a type its schema, label map and templates, and which fields (roles) the user
# names in their own rows, is the registry's (core.tasks.TASK_TYPE_SPECS).
F1_TASK_TYPES = (*RANK_TASK_TYPES, *GENERATION_TASK_TYPES)
# ContractNLI's label ids (its dataset file's map, inverted): the NLI test rows are written so
NLI_LABEL_IDS = {"no": 0, "yes": 1, "maybe": 2}
DEFAULT_LABEL_MAP = {"yes": "yes", "no": "no", "maybe": "maybe"}
# a user at paper scale or on a workstation starts from the authors' generator (no 400 GPU-hours of
# Bonito training); the other scales' own generator is trained in minutes
DEFAULT_GENERATOR = {"paper": "bonito_v1", "workstation": "bonito_v1"}


class CorpusError(ValueError):
    """The user's text, test set or options cannot make a dataset; the message says where."""


def _decode(path: Path) -> str:
    """The file's text, strictly UTF-8: a bad byte stops with its line and offset."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise CorpusError(f"{path}: not UTF-8: byte {data[error.start]:#04x} at offset {error.start} "
                          f"(line {line}); save the file as UTF-8") from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL, CSV or parquet file, each a dict (CSV cells as text)."""
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    if path.suffix not in FORMATS[1:]:
        raise CorpusError(f"{path}: rows are read from {list(FORMATS[1:])} files, not {path.suffix or 'no suffix'!r}")
    try:
        if path.suffix == ".parquet":
            return read_parquet(path).to_pylist()
        if path.suffix == ".jsonl":
            return read_jsonl(path)
    except InputFileError as error:
        raise CorpusError(str(error)) from None
    # CSV cells as text, as the user wrote them (no number or NA guessing)
    return pd.read_csv(io.StringIO(_decode(path)), dtype=str, keep_default_na=False).to_dict("records")


def _field(row: dict, field: str, path: Path, number: int, columns: list[str]) -> Any:
    if field not in row:
        raise CorpusError(f"{path}: row {number}: no field {field!r} (fields: {columns})")
    return row[field]


def read_passages(path: Path, text_field: str | None) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Passages of the user's text, with counts and drops by reason (empty, duplicate)."""
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    if path.suffix == ".txt":
        if text_field:
            raise CorpusError(f"{path}: --text-field is for JSONL, CSV and parquet; a .txt file holds "
                              "one passage per blank-line-separated block")
        blocks: list[Any] = re.split(r"\n[ \t]*\n", _decode(path).replace("\r\n", "\n"))
    elif path.suffix in FORMATS:
        if not text_field:
            raise CorpusError(f"{path}: --text-field is required for a {path.suffix} file (the column of the passages)")
        rows = read_rows(path)
        columns = sorted({key for row in rows for key in row})
        blocks = [_field(row, text_field, path, number, columns) for number, row in enumerate(rows, 1)]
        for number, value in enumerate(blocks, 1):
            if value is not None and not isinstance(value, str):
                raise CorpusError(f"{path}: row {number}: {text_field!r} must be text, got {type(value).__name__}")
    else:
        raise CorpusError(f"{path}: the text must be one of {list(FORMATS)}, not {path.suffix or 'no suffix'!r}")
    passages: list[str] = []
    seen: set[str] = set()
    drops: Counter[str] = Counter()
    for block in blocks:
        text = (block or "").strip()
        if not text:
            drops["empty_passage"] += 1
        elif text in seen:
            drops["duplicate_passage"] += 1
        else:
            seen.add(text)
            passages.append(text)
    if not passages:
        raise CorpusError(f"{path}: empty corpus: no passage in {len(blocks)} blocks or rows (drops: {dict(drops)})")
    return passages, {"rows_in": len(blocks), "rows_out": len(passages)}, dict(drops)


def parse_pairs(text: str | None, flag: str) -> dict[str, str]:
    """``a=b,c=d`` as a mapping; errors name the flag."""
    if not text:
        return {}
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CorpusError(f"{flag}: {item!r} is not NAME=VALUE (e.g. {flag} a=b,c=d)")
        pairs[key.strip()] = value.strip()
    return pairs


def pubmed_qa_row(value: dict) -> dict:
    return {"question": value["question"], "context": {"contexts": [value["passage"]]},
            "final_decision": value["label"]}


def contract_nli_row(value: dict) -> dict:
    return {"premise": value["premise"], "hypothesis": value["hypothesis"], "label": NLI_LABEL_IDS[value["label"]]}


def squad_row(value: dict) -> dict:
    context, answers = value["context"], value["answer"]
    return {"context": context, "question": value["question"],
            "answers": {"text": answers, "answer_start": [context.find(a) for a in answers]}}


# A test row in the schema of each template dataset, from the values of the user's roles (the
# label mapped to yes / no / maybe, the answers a list)
TEST_ROW: dict[str, Callable[[dict], dict]] = {
    "pubmed_qa": pubmed_qa_row, "contract_nli": contract_nli_row, "squadshifts_nyt": squad_row}


def labelled_rows(path: Path, task_type: str, fields: dict[str, str], label_map: dict[str, str]) -> list[dict]:
    """The user's labelled rows in the schema of the paper's dataset of the task type, each label
    mapped (a label outside the map stops, naming the row)."""
    spec = task_type_spec(task_type)
    roles = spec.test_roles
    unknown = sorted(set(fields) - set(roles))
    if unknown:
        raise CorpusError(f"--test-fields: {unknown} are not fields of a {task_type} test set; name {list(roles)}")
    bad = {k: v for k, v in label_map.items() if v not in ("yes", "no", "maybe")}
    if bad or (spec.labelled and len(set(label_map.values())) < 2):
        raise CorpusError(f"--label-map: {label_map}: map each label of your rows to yes, no or maybe "
                          "(at least two of them)")
    rows = read_rows(path)
    if not rows:
        raise CorpusError(f"{path}: the test set has no rows")
    columns = sorted({key for row in rows for key in row})
    out = []
    for number, row in enumerate(rows, 1):
        value = {role: _field(row, fields.get(role, role), path, number, columns) for role in roles}
        for role in roles[:2]:
            if not isinstance(value[role], str) or not value[role].strip():
                raise CorpusError(f"{path}: row {number}: {fields.get(role, role)!r} must be non-empty text")
        if spec.labelled:
            label = str(value["label"])
            if label not in label_map:
                raise CorpusError(f"{path}: row {number}: label {label!r} of field {fields.get('label', 'label')!r} "
                                  f"is not in the label map {sorted(label_map)}; add it to --label-map")
            value["label"] = label_map[label]
        else:  # gold answers
            answers = value["answer"] if isinstance(value["answer"], list) else [value["answer"]]
            if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
                raise CorpusError(f"{path}: row {number}: {fields.get('answer', 'answer')!r} must be text or a list of texts")
            value["answer"] = answers
        out.append(TEST_ROW[spec.template_dataset](value))
    return out


# How the paper's yes-no QA and NLI prompts name their third choice, and the same prompt without
# it: a test set labelled yes / no only is scored over those two (the rank is over every choice,
# and a never-gold "maybe" would only take predictions away).
WITHOUT_MAYBE = {
    "YES, NO, or MAYBE?": "YES or NO?",
    "yes, no or maybe?": "yes or no?",
    "Yes, no, or maybe?": "Yes or no?",
    '{{"true"}}, {{"false"}}, or {{"inconclusive"}}?': '{{"true"}} or {{"false"}}?',
}


def two_choice(spec: dict) -> dict:
    """``spec`` (a copy of a paper dataset's labels and templates) scored over yes and no only:
    the label mapped to maybe, the third answer choice and the prompts' mention of it removed."""
    labels = spec["labels"]
    spec["labels"] = {**labels, "map": {raw: c for raw, c in labels["map"].items() if c != "maybe"}}
    for template in spec["templates"]["verbatim"]:
        choices = template["answer_choices"].split(" ||| ")
        if len(choices) != 3:
            raise CorpusError(f"template {template['name']!r}: expected three answer choices, got {choices}")
        template["answer_choices"] = " ||| ".join(choices[:2])  # yes and no come first in both files
        for three, two in WITHOUT_MAYBE.items():
            template["jinja"] = template["jinja"].replace(three, two)
        if re.search(r"maybe|inconclusive", template["jinja"], re.IGNORECASE):
            raise CorpusError(f"template {template['name']!r}: its prompt still offers a third choice")
    return spec


def dataset_spec(title: str, task_type: str, license_id: str, has_test: bool, labels_used: set[str] = frozenset(),
                 language: list[str] | None = None) -> dict:
    """The dataset file: the user's files, their license and languages (the cards carry them) and,
    with a test set, the schema, label map and templates of the paper's dataset of the same task
    type (the rows were written in its schema); a yes-no QA or NLI set labelled yes and no only is
    scored over those two choices."""
    spec = {"title": title, "task_type": task_type, "license": license_id, **({"language": language} if language else {}),
            "unannotated": {"files": "unannotated.jsonl"}}
    if not has_test:
        return spec
    spec["test"] = {"files": "test.jsonl"}
    type_spec = task_type_spec(task_type)
    paper = read_yaml(DATASETS_DIR / f"{type_spec.template_dataset}.yaml")
    for key in ("labels", "test_fields", "passage", "templates"):
        if key in paper:
            spec[key] = paper[key]
    # the rows carry no id of the paper's set; a repeated row is dropped (the data stage counts it)
    spec["test_fields"] = {**{k: v for k, v in spec["test_fields"].items() if k != "id"}, "duplicates": "drop"}
    return two_choice(spec) if type_spec.labelled and labels_used == {"yes", "no"} else spec


def _check_own(section: str, flag: str, names: list[str], scale: str) -> None:
    """Each name (declared in the scale's merged config) is one the scale's own files declare: a
    CPU scale's merged config also holds the paper's 7B targets, which would download a 7B model to
    train it on a CPU. The message names the scale whose own it is."""
    for name in names:
        if name not in own_entries(scale, section):
            fits = scales_declaring(section, name)
            raise CorpusError(f"{flag}: {name!r} is one of the {' and '.join(fits)} scale's {section}, not the "
                              f"{scale} scale's {sorted(own_entries(scale, section))}; run it with --scale {fits[0]}")


def overlay_for(dataset_path: Path, scale: str, generator: str | None, targets: list[str] | None) -> dict:
    """The run selection: the user's dataset, the generator as the source (the scale's own
    sources unless given) and the targets (the scale's unless given), each checked to exist."""
    merged = merged_config(scale_files(scale))
    # by its absolute path: the run reads it from whatever directory it runs in; named after the
    # dataset, its tables go to their own folder while models, generators and ctga stay shared
    run: dict[str, Any] = {"name": dataset_path.stem, "datasets": [str(dataset_path.resolve())]}
    generator = generator or DEFAULT_GENERATOR.get(scale)
    if generator:
        if generator not in merged["generators"]:
            raise CorpusError(f"--generator: {generator!r} is not a generator of the {scale} config "
                              f"(declared: {sorted(merged['generators'])})")
        run["sources"] = ["tapt", generator]
    if targets:
        unknown = [t for t in targets if t not in merged["targets"]]
        if unknown:
            raise CorpusError(f"--targets: {unknown} are not targets of the {scale} config "
                              f"(declared: {sorted(merged['targets'])})")
        _check_own("targets", "--targets", targets, scale)
        run["targets"] = targets
    return {"run": run}


def run_arguments(scale: str, overlay: Path) -> list[str]:
    """The arguments of ``bonito-repro run`` that run the overlay at the scale, by absolute paths, in
    this directory (its results/, shared with the runs before it): they work from any directory."""
    return ["--scale", scale, "--configfile", str(overlay.resolve()), "-d", str(Path.cwd().resolve())]


def write_jsonl(rows: list[dict], path: Path) -> None:
    write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), path)


def build(args: argparse.Namespace) -> tuple[Path, dict]:
    """Write the dataset's files under --out-dir; return the overlay's path and the manifest."""
    try:
        task_type = task_type_code(args.task_type)
    except ValueError as error:
        raise CorpusError(f"--task-type: {error}") from None
    template = task_type_spec(task_type).template_dataset
    if args.test is not None and template is None:
        raise CorpusError(f"--test: {TASK_TYPES[task_type]!r} has no F1 evaluation (F1 is defined for "
                          f"{[TASK_TYPES[t] for t in F1_TASK_TYPES]}); "
                          "leave out --test, and the run ends at the adapted models")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", args.name):
        raise CorpusError(f"--name: {args.name!r}: use letters, digits, - and _ (it names outputs)")
    if license_problem(args.license):
        raise CorpusError(f"--license: {license_problem(args.license)}")
    language = args.language.split(",") if args.language else None
    if language and not all(re.fullmatch(r"[a-z]{2,3}", code) for code in language):
        raise CorpusError(f"--language: {args.language!r}: ISO 639 codes, comma-separated (en, de,fr)")
    manifest = Manifest("corpus", params={k: v for k, v in vars(args).items() if k != "run"})
    passages, counts, drops = read_passages(args.text, args.text_field)
    label_map = parse_pairs(args.label_map, "--label-map") or DEFAULT_LABEL_MAP
    tests = [] if args.test is None else \
        labelled_rows(args.test, task_type, parse_pairs(args.test_fields, "--test-fields"), label_map)
    spec = dataset_spec(args.title or args.name, task_type, args.license, args.test is not None,
                        set(label_map.values()), language)
    out = args.out_dir
    dataset_path = out / f"{args.name}.yaml"
    overlay = overlay_for(dataset_path, args.scale, args.generator, args.targets)
    write_jsonl([{"input": p} for p in passages], out / "unannotated.jsonl")
    if args.test is not None:
        write_jsonl(tests, out / "test.jsonl")
        header = (f"# Dataset {args.name!r}, written by `bonito-repro corpus` from {args.text} and "
                  f"{args.test}.\n# The test schema, label map and templates are those of "
                  f"{template} (the paper's {task_type} dataset).\n")
    else:
        header = (f"# Dataset {args.name!r}, written by `bonito-repro corpus` from {args.text}.\n"
                  "# No labelled test set: generated for and adapted on, not evaluated.\n")
    write_text(header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=1000), dataset_path)
    overlay_path = out / "run.yaml"
    write_text(f"# Selects dataset {args.name!r} (written by `bonito-repro corpus`)\n"
               + yaml.safe_dump(overlay, sort_keys=False), overlay_path)
    try:  # the whole config with the overlay, as Snakemake will read it
        load_config(*scale_files(args.scale), overlay_path)
    except ConfigError as error:
        raise CorpusError(str(error)) from None
    manifest.counts = {**counts, "test_rows": len(tests)}
    manifest.drops = drops
    manifest.extra = {"task_type": TASK_TYPES[task_type], "templates_of": template if tests else None,
                      "dataset_file": str(dataset_path), "overlay": str(overlay_path)}
    return overlay_path, manifest.write(out / "corpus.manifest.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bonito-repro corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, required=True, help=f"the unannotated text: {', '.join(FORMATS)}")
    parser.add_argument("--text-field", help="the column of the passages (JSONL, CSV, parquet)")
    parser.add_argument("--task-type", required=True, help="a Bonito task type, short code or full name")
    parser.add_argument("--name", required=True, help="the dataset's name (its file's stem; names its outputs)")
    parser.add_argument("--title", help="its column title in tables (default: the name)")
    parser.add_argument("--license", required=True,
                        help="the license of your text (a Hub license id, e.g. cc-by-4.0, or 'other')")
    parser.add_argument("--language", help="the languages of your text, ISO 639 codes (en; de,fr), which "
                        "the cards of its synthetic sets and adapters carry (default: none named)")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the dataset's files are written")
    parser.add_argument("--test", type=Path, help="labelled test set: JSONL, CSV or parquet (F1 for yes-no QA, "
                        "NLI and extractive QA; without one the run ends at the adapted models)")
    parser.add_argument("--test-fields", help="ROLE=FIELD,... for the test set's fields named otherwise than "
                        + "; ".join(f"{t}: {', '.join(TASK_TYPE_SPECS[t].test_roles)}" for t in F1_TASK_TYPES))
    parser.add_argument("--label-map", help="LABEL=yes|no|maybe,... for the test labels (default: yes, no, maybe as they are)")
    parser.add_argument("--scale", choices=sorted(SCALE_PROFILES), default="local",
                        help="the config the run overlays (local: this machine's CPUs; workstation: "
                             "this machine's GPU; paper: Slurm)")
    parser.add_argument("--generator", help="a generator of that config (default: bonito_v1, the published "
                        "one, at paper and workstation scale; else the config's run.sources)")
    parser.add_argument("--targets", nargs="+", help="targets of that config (default: its run.targets)")
    parser.add_argument("--run", action="store_true", help="run the Snakemake command instead of printing it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    try:
        overlay, manifest = build(args)
    except CorpusError as error:
        log.error("%s", error)
        return 1
    log.info("%s: %d passages of %d, drops %s; %d test rows", args.name, manifest["counts"]["rows_out"],
             manifest["counts"]["rows_in"], manifest["drops"] or "none", manifest["counts"]["test_rows"])
    if not manifest["counts"]["test_rows"]:
        log.info("%s: no labelled test set, so no F1: the run ends at the adapted models and their cards", args.name)
    arguments = run_arguments(args.scale, overlay)
    if not args.run:
        print(shlex.join(["bonito-repro", "run", *arguments]))
        return 0
    return run_command.main(arguments)
