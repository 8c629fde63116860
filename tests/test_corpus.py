"""The user's path: their own text and labelled rows to a dataset of the workflow (`python -m
bonito_repro corpus`), every bad input a clear error or a counted drop."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bonito_repro.workflow import corpus
from bonito_repro.core.config import load_config
from bonito_repro.core.templates import load_templates
from bonito_repro.prepare.target_data import load_test_split, unannotated_passages
from conftest import REPO, dry_run_jobs, snakemake

EXAMPLE = REPO / "examples" / "library_policies"
EXAMPLE_ARGS = ["--text", str(EXAMPLE / "policies.txt"), "--task-type", "yes-no question answering",
                "--name", "library", "--license", "cc0-1.0", "--test", str(EXAMPLE / "questions.csv"),
                "--test-fields", "passage=clause,label=answer", "--label-map", "Y=yes,N=no"]


def run(tmp_path: Path, *args: str) -> tuple[int, dict | None]:
    out = tmp_path / "out"
    code = corpus.main([*args, "--out-dir", str(out)])
    manifest = out / "corpus.manifest.json"
    return code, json.loads(manifest.read_text()) if manifest.exists() else None


def error_of(caplog, tmp_path: Path, *args: str) -> str:
    code, manifest = run(tmp_path, *args)
    assert code == 1 and manifest is None
    return caplog.records[-1].getMessage()


def with_text(tmp_path: Path, name: str, content: bytes | str, *extra: str) -> list[str]:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    args = list(EXAMPLE_ARGS)
    args[1] = str(path)
    return [*args, *extra]


def test_example_becomes_a_dataset_the_data_stage_reads(tmp_path, capsys):
    code, manifest = run(tmp_path, *EXAMPLE_ARGS)
    assert code == 0
    assert manifest["counts"] == {"rows_in": 24, "rows_out": 24, "test_rows": 16} and manifest["drops"] == {}
    assert manifest["templates_of"] == "pubmed_qa"
    out = tmp_path / "out"
    printed = capsys.readouterr().out.strip()
    assert printed == f"bonito-repro run --scale local --configfile {out / 'run.yaml'} -d {Path.cwd()}"
    config = load_config(REPO / "config.yaml", REPO / "config" / "local.yaml", out / "run.yaml")
    assert config["run"]["datasets"] == ["library"] and config["run"]["name"] == "library"
    spec = config["datasets"]["library"]
    assert spec["unannotated"] == {"files": str(out / "unannotated.jsonl")} and spec["license"] == "cc0-1.0"
    assert "language" not in spec  # not guessed: --language names it
    passages, counts, drops = unannotated_passages(spec["unannotated"], "library")
    assert len(passages) == 24 and counts["exact_duplicates_kept"] == 0 and drops == {}
    assert spec["test_fields"]["duplicates"] == "drop" and "id" not in spec["test_fields"]
    rows, counts, drops = load_test_split(spec["test"], "library", spec["test_fields"], spec["labels"])
    assert counts["rows_out"] == 16 and drops == {}
    assert counts["label_distribution"]["canonical"] == {"no": 8, "yes": 8}
    assert rows[0]["context"]["contexts"][0].startswith("Members may borrow up to twelve items")


def test_plain_text_drops_empty_and_duplicate_passages_by_reason(tmp_path):
    text = "First passage.\n\n  \n\nSecond\r\npassage.\r\n\r\nFirst passage.\n\n\n"
    code, manifest = run(tmp_path, *with_text(tmp_path, "t.txt", text))
    assert code == 0
    assert manifest["counts"]["rows_in"] == 5 and manifest["counts"]["rows_out"] == 2
    assert manifest["drops"] == {"empty_passage": 2, "duplicate_passage": 1}
    lines = (tmp_path / "out" / "unannotated.jsonl").read_text().splitlines()
    assert [json.loads(line)["input"] for line in lines] == ["First passage.", "Second\npassage."]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_named_text_field_of_jsonl_csv_and_parquet(tmp_path, suffix):
    rows = pd.DataFrame({"id": [1, 2, 3, 4], "body": ["One.", "", "Two.", "One."]})
    path = tmp_path / f"text{suffix}"
    {".jsonl": lambda: rows.to_json(path, orient="records", lines=True), ".csv": lambda: rows.to_csv(path, index=False),
     ".parquet": lambda: rows.to_parquet(path)}[suffix]()
    args = list(EXAMPLE_ARGS)
    args[1] = str(path)
    code, manifest = run(tmp_path, *args, "--text-field", "body")
    assert code == 0 and manifest["counts"]["rows_out"] == 2
    assert manifest["drops"] == {"empty_passage": 1, "duplicate_passage": 1}


@pytest.mark.parametrize("name, content, extra, message", [
    ("missing.txt", None, [], "missing.txt: no such file"),
    ("t.txt", b"caf\xe9 au lait\n\nok", [], "t.txt: not UTF-8: byte 0xe9 at offset 3 (line 1)"),
    ("t.csv", b"body\nfine\ncaf\xe9\n", ["--text-field", "body"], "t.csv: not UTF-8: byte 0xe9 at offset 13 (line 3)"),
    ("t.txt", "\n\n   \n\n", [], "t.txt: empty corpus: no passage in 3 blocks or rows (drops: {'empty_passage': 3})"),
    ("t.jsonl", '{"body": "a"}\n{"text": "b"}\n', ["--text-field", "body"], "t.jsonl: row 2: no field 'body' (fields: ['body', 'text'])"),
    ("t.jsonl", '{"body": "a"}\n{"body": 3}\n', ["--text-field", "body"], "t.jsonl: row 2: 'body' must be text, got int"),
    ("t.jsonl", '{"body": "a"}\nnot json\n', ["--text-field", "body"], "t.jsonl: line 2: not valid JSON"),
    ("t.csv", "body\na\n", [], "t.csv: --text-field is required for a .csv file"),
    ("t.txt", "a", ["--text-field", "body"], "t.txt: --text-field is for JSONL, CSV and parquet"),
    ("t.docx", "a", [], "t.docx: the text must be one of ['.txt', '.jsonl', '.csv', '.parquet']"),
])
def test_bad_text_stops_with_a_clear_error(tmp_path, caplog, name, content, extra, message):
    if content is None:
        args = list(EXAMPLE_ARGS)
        args[1] = str(tmp_path / name)
        args += extra
    else:
        args = with_text(tmp_path, name, content, *extra)
    assert message in error_of(caplog, tmp_path, *args)


def replace(args: list[str], flag: str, value: str | None) -> list[str]:
    args = list(args)
    i = args.index(flag)
    return args[:i] + args[i + 2:] if value is None else [*args[:i + 1], value, *args[i + 2:]]


@pytest.mark.parametrize("flag, value, message", [
    ("--task-type", "yes-no questions", "--task-type: unknown task type 'yes-no questions'"),
    ("--task-type", "summarization", "--test: 'summarization' has no F1 evaluation (F1 is defined for "
                                     "['yes-no question answering', 'natural language inference', 'extractive question answering']); "
                                     "leave out --test, and the run ends at the adapted models"),
    ("--label-map", "Y=yes,M=no", "questions.csv: row 1: label 'N' of field 'answer' is not in the label map ['M', 'Y']; add it to --label-map"),
    ("--label-map", "Y=yes,N=nope", "--label-map: {'Y': 'yes', 'N': 'nope'}: map each label of your rows to yes, no or maybe"),
    ("--label-map", "Y=yes,N", "--label-map: 'N' is not NAME=VALUE"),
    ("--test-fields", "passage=clause,label=answer,answer=x", "--test-fields: ['answer'] are not fields of a ynqa test set"),
    ("--test-fields", "passage=clause", "questions.csv: row 1: no field 'label' (fields: ['answer', 'clause', 'question'])"),
    ("--name", "my corpus", "--name: 'my corpus': use letters, digits, - and _"),
    ("--license", "CC0 1.0", "--license: license 'CC0 1.0' is not an identifier the Hub knows"),
])
def test_bad_options_and_test_sets_stop_with_a_clear_error(tmp_path, caplog, flag, value, message):
    assert message in error_of(caplog, tmp_path, *replace(EXAMPLE_ARGS, flag, value))


def test_generator_and_targets_must_exist_in_the_scale(tmp_path, caplog):
    message = error_of(caplog, tmp_path, *EXAMPLE_ARGS, "--generator", "nope")
    assert "--generator: 'nope' is not a generator of the local config (declared: [" in message
    assert "'bonito'," in message and "'bonito_v1'," in message
    assert "--targets: ['nope'] are not targets of the local config" in \
        error_of(caplog, tmp_path, *EXAMPLE_ARGS, "--targets", "nope")


def nli_args(tmp_path: Path) -> list[str]:
    """The example's arguments with a two-row NLI test set labelled entailment / contradiction."""
    nli = tmp_path / "nli.jsonl"
    nli.write_text('{"p": "The tenant pays rent.", "h": "Rent is paid.", "y": "entailment"}\n'
                   '{"p": "The tenant pays rent.", "h": "Rent is free.", "y": "contradiction"}\n')
    return replace(replace(replace(replace(EXAMPLE_ARGS, "--test", str(nli)), "--task-type", "nli"),
                           "--test-fields", "premise=p,hypothesis=h,label=y"),
                   "--label-map", "entailment=yes,contradiction=no")


def test_nli_and_extractive_qa_take_the_schema_of_the_papers_dataset(tmp_path):
    code, manifest = run(tmp_path / "nli", *nli_args(tmp_path))
    assert code == 0 and manifest["templates_of"] == "contract_nli"
    rows = [json.loads(x) for x in (tmp_path / "nli" / "out" / "test.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [1, 0]  # ContractNLI's ids: 0 no, 1 yes, 2 maybe

    qa = tmp_path / "qa.csv"
    pd.DataFrame({"c": ["Rent is due on the first."], "q": ["When is rent due?"], "a": ["the first"]}).to_csv(qa, index=False)
    args = replace(replace(replace(EXAMPLE_ARGS, "--test", str(qa)), "--task-type", "exqa"),
                   "--test-fields", "context=c,question=q,answer=a")
    code, manifest = run(tmp_path / "qa", *args)
    assert code == 0 and manifest["templates_of"] == "squadshifts_nyt"
    row = json.loads((tmp_path / "qa" / "out" / "test.jsonl").read_text())
    assert row["answers"] == {"text": ["the first"], "answer_start": [15]}


def spec_of(tmp_path: Path, *args: str) -> dict:
    code, _ = run(tmp_path, *args)
    assert code == 0
    return load_config(REPO / "config.yaml", REPO / "config" / "local.yaml", tmp_path / "out" / "run.yaml")["datasets"]["library"]


def test_a_set_labelled_yes_and_no_is_scored_over_two_choices(tmp_path):
    """The paper's templates offer a third choice (maybe, inconclusive) that a two-label set never
    holds as gold: it leaves the choices and the prompts, the rest of each template verbatim."""
    specs = {"ynqa": spec_of(tmp_path / "ynqa", *EXAMPLE_ARGS), "nli": spec_of(tmp_path / "nli", *nli_args(tmp_path))}
    for name, spec in specs.items():
        templates = load_templates(spec["templates"], spec["labels"], spec["test_fields"], spec["file"])
        assert len(templates) == 5 and all(sorted(t.labels) == ["no", "yes"] for t in templates), templates
        assert not any(re.search("maybe|inconclusive", t.jinja, re.IGNORECASE) for t in templates), name
    paper = yaml.safe_load((REPO / "src/bonito_repro/data/datasets/pubmed_qa.yaml").read_text())["templates"]
    ynqa = specs["ynqa"]["templates"]["verbatim"]
    assert [t["jinja"] for t in ynqa] == [t["jinja"].replace("YES, NO, or MAYBE?", "YES or NO?")
                                          for t in paper["verbatim"]]
    # a third label keeps the paper's three choices, byte for byte
    three = spec_of(tmp_path / "three", *replace(EXAMPLE_ARGS, "--label-map", "Y=yes,N=no,M=maybe"))
    assert three["templates"] == paper


def test_paper_scale_defaults_to_the_published_generator_on_slurm(tmp_path, capsys):
    code, _ = run(tmp_path, *EXAMPLE_ARGS, "--scale", "paper")
    assert code == 0
    overlay = yaml.safe_load((tmp_path / "out" / "run.yaml").read_text())
    assert overlay["run"]["sources"] == ["tapt", "bonito_v1"] and "targets" not in overlay["run"]
    assert capsys.readouterr().out.startswith("bonito-repro run --scale paper --configfile ")


@pytest.mark.parametrize("scale, target, fits", [("local", "mistral_7b", "workstation and paper"),
                                                 ("smoke", "llama2_7b_p3", "workstation and paper")])
def test_a_target_of_another_scale_is_refused_naming_the_scale_that_fits(tmp_path, caplog, scale, target, fits):
    """A CPU scale's merged config also holds the paper's 7B targets: `--targets mistral_7b` at the
    local scale would download a 7B model to train it on a CPU."""
    message = error_of(caplog, tmp_path, *EXAMPLE_ARGS, "--scale", scale, "--targets", target)
    assert f"{target!r} is one of the {fits} scale's targets" in message and "--scale workstation" in message
    assert not (tmp_path / "out" / "run.yaml").exists()


def test_the_printed_command_runs_from_any_directory(tmp_path, monkeypatch, capsys):
    """The overlay names the dataset file by its absolute path, and the printed command is
    `bonito-repro run` with the overlay by its absolute path and `-d` the directory corpus ran in
    (whose results/ the demo shares); it once named the overlay relative to that directory."""
    monkeypatch.chdir(tmp_path)
    assert corpus.main([*EXAMPLE_ARGS, "--out-dir", "mine"]) == 0
    assert capsys.readouterr().out.strip() == (f"bonito-repro run --scale local --configfile {tmp_path / 'mine' / 'run.yaml'}"
                                               f" -d {tmp_path}")
    overlay = yaml.safe_load((tmp_path / "mine" / "run.yaml").read_text())
    assert overlay["run"]["datasets"] == [str(tmp_path / "mine" / "library.yaml")]
    assert overlay["run"]["name"] == "library"  # its own tables: results/runs/library/


@pytest.mark.dag
def test_without_a_test_set_any_task_type_ends_at_the_adapted_models(tmp_path):
    args = replace(replace(replace(EXAMPLE_ARGS, "--test", None), "--test-fields", None), "--label-map", None)
    code, manifest = run(tmp_path, *replace(args, "--task-type", "summarization"))
    assert code == 0 and manifest["counts"]["test_rows"] == 0 and manifest["templates_of"] is None
    out = tmp_path / "out"
    assert not (out / "test.jsonl").exists()
    spec = yaml.safe_load((out / "library.yaml").read_text())
    assert spec == {"title": "library", "task_type": "summarization", "license": "cc0-1.0",
                    "unannotated": {"files": "unannotated.jsonl"}}
    result = snakemake("-n", "--profile", "local", "--configfile", "config/local.yaml", str(out / "run.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    counts = Counter(job.rule for job in dry_run_jobs(result.stdout + result.stderr))
    assert counts["adapt"] == 4 and counts["model_card"] == 4 and counts["dataset_card"] == 1  # 2 targets x 2 sources
    for rule in ("test_set", "evaluate", "evaluate_generation", "eval_table", "main_table"):
        assert counts[rule] == 0, rule
    assert "--test" not in re.search(r"bonito_repro generate .*", result.stdout + result.stderr).group(0)


def test_generation_without_a_test_set_checks_no_contamination(tmp_path, local_config):
    """A dataset with no test split still goes through the funnel; its manifest says there was
    nothing to probe for contamination."""
    from bonito_repro.generate.cli import main as generate

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"input": "Summarize: The loan lasts three weeks.", "output": "Three-week loans."}\n'
                     '{"input": "Summarize: nothing", "output": ""}\n')
    out = tmp_path / "out"
    assert generate(["--dataset", "minutes", "--task-type", "summarization", "--published",
                     json.dumps({"files": str(tasks)}), "--params", json.dumps(local_config["generation"]),
                     "--out", str(out / "t.parquet"), "--manifest", str(out / "t.json"), "--device", "cpu"]) == 0
    manifest = json.loads((out / "t.json").read_text())
    assert manifest["contamination_probes"] is None and manifest["kept"] == 1 and manifest["drops"] == {"empty": 1}


def test_the_language_goes_to_the_dataset_file_for_the_cards(tmp_path, caplog):
    assert run(tmp_path, *EXAMPLE_ARGS, "--language", "en")[0] == 0
    config = load_config(REPO / "config.yaml", REPO / "config" / "local.yaml", tmp_path / "out" / "run.yaml")
    assert config["datasets"]["library"]["language"] == ["en"]
    assert "--language: 'English'" in error_of(caplog, tmp_path / "bad", *EXAMPLE_ARGS, "--language", "English")


def planned_jobs(directory: Path, *configfiles: str) -> list:
    """The smoke scale's whole plan in `directory` (its results/), each job with what it writes
    and its shell command."""
    result = snakemake("-n", "-p", "--profile", "local", "--configfile", "config/smoke.yaml", *configfiles,
                       "-d", str(directory))
    assert result.returncode == 0, result.stderr[-3000:]
    return dry_run_jobs(result.stdout + result.stderr)


@pytest.mark.dag
def test_a_corpus_run_writes_nothing_of_the_demos_run_and_shares_its_jobs(tmp_path, monkeypatch):
    """A corpus overlay (run.name: its dataset) plans its tables under results/runs/library/, never
    a write under the demo's results/paper/ (nor its logs), and every path it shares with the demo
    comes from the very job the demo plans (same command, so same params: Snakemake reruns none of
    them). Before run.name both wrote results/paper/main_table.md with different commands."""
    monkeypatch.chdir(tmp_path)  # corpus's -d: the directory it ran in
    code, _ = run(tmp_path, *EXAMPLE_ARGS, "--scale", "smoke")
    assert code == 0
    demo = planned_jobs(tmp_path / "demo")
    mine = planned_jobs(tmp_path / "mine", str(tmp_path / "out" / "run.yaml"))
    writes = {path: job for job in mine for path in job.writes}
    demo_writes = {path: job for job in demo for path in job.writes}
    demo_own = [p for p in demo_writes if p.startswith(("results/paper/", "results/logs/paper/",
                                                        "results/benchmarks/paper/"))]
    assert "results/paper/main_table.md" in demo_own and "results/logs/paper/main_table.log" in demo_own
    assert not [p for p in writes if p.startswith(("results/paper/", "results/logs/paper/", "results/benchmarks/paper/"))]
    assert {"results/runs/library/main_table.md", "results/runs/library/baselines.md",
            "results/runs/library/quality_profile.md", "results/logs/runs/library/main_table.log"} <= set(writes)
    shared = {path for path in writes if path in demo_writes}
    for path in shared:
        assert writes[path].command == demo_writes[path].command, path
    # the models, ctga, the trained generator and the P3 stand-in are the demo's jobs
    assert {job.rule for job in mine if set(job.writes) & shared} == {
        "prepare_model", "ctga", "train_bonito", "parse_check", "train_p3", "loss_curve"}
