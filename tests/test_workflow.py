"""The workflow through Snakemake itself: lint, the paper DAG on the slurm profile (dry run, no
Slurm needed), the whole smoke DAG, and which jobs a config edit reruns."""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bonito_repro.core import layout
from bonito_repro.core.config import DATASETS_DIR, load_scale, merged_config, validate
from bonito_repro.workflow.dag import Dag
from conftest import REPO, Job, dry_run_jobs, snakemake

GPU_RULES = {"train_bonito": "train_bonito", "generate": "generate", "adapt": "adapt", "evaluate": "evaluate",
             "evaluate_generation": "evaluate", "parse_check": "generate"}  # rule -> its resources section


@pytest.mark.dag
def test_lint_is_clean():
    for args in ([], ["--configfile", "config/local.yaml"], ["--configfile", "config/smoke.yaml"]):
        result = snakemake("--lint", *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def paper_dry_run() -> list[Job]:
    result = snakemake("-n", "--profile", "slurm")
    assert result.returncode == 0, result.stderr[-3000:]
    return dry_run_jobs(result.stdout + result.stderr)


def test_the_default_run_keeps_its_paths_and_a_named_run_gets_its_own_folder():
    """run.name null (every shipped scale): the demo's and the paper's own files, logs and the main
    table's params are today's, so nothing moves or reruns; a named run's are under runs/NAME."""
    config = load_scale("local")
    assert config["run"]["name"] is None
    dag = Dag(config)
    own = [p for p in dag.final_outputs()["all"] if not p.startswith(("results/synthetic/", "results/adapters/",
                                                                      "results/generators/", "results/p3/"))]
    assert own == [f"results/paper/{name}.{ext}" for name in ("main_table", "main_table_deltas", "published_comparison")
                   for ext in ("csv", "md", "tex")] + [f"results/paper/{name}.{ext}" for name in ("baselines", "quality_profile")
                                                       for ext in ("csv", "md")]
    assert dag.run_job("main_table") == "paper/main_table" and layout.log(dag.run_job("eval_table")) == \
        "results/logs/paper/eval_table.log"
    figures = [p for p in dag.final_outputs()["ablation_size"] if not p.endswith(".hub")]  # the rest: shared cards
    assert {p.rsplit("/", 1)[0] for p in figures} == {"results/paper/ablations"}
    assert "name" not in dag.main_table_params()["run"]
    named = Dag({**config, "run": {**config["run"], "name": "library"}})
    assert [p.replace("results/runs/library/", "results/paper/") for p in named.final_outputs()["all"]] == \
        dag.final_outputs()["all"]
    assert named.run_job("main_table") == "runs/library/main_table"
    assert named.main_table_params() == dag.main_table_params()


@pytest.mark.dag
def test_paper_dag_has_the_full_grid(paper_dry_run):
    config = load_scale("paper", REPO)
    counts = Counter(job.rule for job in paper_dry_run)
    targets, datasets, sources = len(config["targets"]), len(config["datasets"]), len(config["run"]["sources"])
    assert counts["evaluate"] + counts["evaluate_generation"] == targets * datasets * (1 + sources)
    assert counts["adapt"] == targets * datasets * sources
    # the generators the main grid adapts on (the config also keeps the ablations' generators)
    assert counts["generate"] == len([s for s in config["run"]["sources"] if s != "tapt"]) * datasets
    assert counts["train_bonito"] == 1 and counts["ctga"] == 1
    # the default target draws every figure and runs the parse check
    assert counts["funnel_plot"] == counts["generate"] and counts["parse_check"] == 1
    assert counts["loss_curve"] == counts["adapt"] + counts["train_bonito"] + counts["train_p3"]
    assert counts["prepare_model"] == 5  # three base models and two P3 adapters (bonito_v1 unused)


@pytest.mark.dag
def test_paper_gpu_resources_come_from_config(paper_dry_run):
    config = load_scale("paper", REPO)
    for job in paper_dry_run:
        gpus = int(job.resources.get("gpu", 0))
        if job.rule in GPU_RULES:
            stage = config["resources"][GPU_RULES[job.rule]]
            assert gpus == stage["gpus"], job
            assert int(job.resources["runtime"]) == stage["runtime"]
            assert job.resources["nodes"] == "1", job  # torchrun --standalone: one node per job
        else:
            assert gpus == 0 and "nodes" not in job.resources, job
    assert any(int(j.resources.get("gpu", 0)) == 4 for j in paper_dry_run if j.rule == "train_bonito")


# The authors' wrappers (docs/protocol.md, section 8.1): plain for a pretrained model with no
# adapter and after TAPT, inst for Mistral-7B-Instruct-v0.2, io for every other model with an adapter
PAPER_WRAPPERS = {
    ("mistral_7b", "zero_shot"): "plain", ("mistral_7b", "tapt"): "plain", ("mistral_7b", "bonito"): "io",
    ("llama2_7b", "zero_shot"): "plain", ("llama2_7b", "tapt"): "plain", ("llama2_7b", "bonito"): "io",
    **{(t, s): "io" for t in ("mistral_7b_p3", "llama2_7b_p3") for s in ("zero_shot", "tapt", "bonito")},
    **{("mistral_7b_instruct", s): "inst" for s in ("zero_shot", "tapt", "bonito")},
}


@pytest.mark.dag
def test_paper_evaluations_use_the_authors_wrappers():
    result = snakemake("-n", "-p", "--profile", "slurm")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = {}
    for command in re.findall(r"bonito_repro evaluate .*", result.stdout + result.stderr):
        target, source, wrapper = (re.search(rf"--{k} (\S+)", command).group(1) for k in ("target", "source", "wrapper"))
        seen.setdefault((target, source), set()).add(wrapper)
    assert seen == {key: {wrapper} for key, wrapper in PAPER_WRAPPERS.items()}


BACKTRANSLATION_RESOURCES = {"train_backtranslation": "adapt", "backtranslate": "generate"}


def backtranslation_dry_run(tmp_path: Path, *scale_args: str) -> list[Job]:
    """A dry run with the backtranslation generator among the sources (an overlay of the user's)."""
    overlay = tmp_path / "backtranslation.yaml"
    overlay.write_text("run:\n  sources: [tapt, bonito, backtranslation]\n")
    result = snakemake("-n", *scale_args, str(overlay))
    assert result.returncode == 0, result.stderr[-3000:]
    return dry_run_jobs(result.stdout + result.stderr)


@pytest.mark.dag
def test_paper_dag_runs_the_backtranslation_chain_on_gpus(tmp_path):
    jobs = backtranslation_dry_run(tmp_path, "--profile", "slurm", "--configfile", "config.yaml")
    config = load_scale("paper", REPO)
    counts = Counter(job.rule for job in jobs)
    assert counts["backtranslation_seed"] == 1 and counts["train_backtranslation"] == 2
    assert counts["backtranslate"] == len(config["datasets"]) and counts["quality_profile"] == 1
    assert {j.wildcards["direction"] for j in jobs if j.rule == "train_backtranslation"} == {"backward", "forward"}
    for job in jobs:
        if job.rule in BACKTRANSLATION_RESOURCES:
            stage = config["resources"][BACKTRANSLATION_RESOURCES[job.rule]]
            assert int(job.resources["gpu"]) == stage["gpus"] >= 1 and int(job.resources["runtime"]) == stage["runtime"]
    seed = next(j for j in jobs if j.rule == "backtranslation_seed")  # it downloads oasst1: no GPU
    assert int(seed.resources.get("gpu", 0)) == 0


@pytest.mark.dag
def test_local_dag_backtranslates_all_seven_datasets(tmp_path):
    jobs = backtranslation_dry_run(tmp_path, "--profile", "local", "--configfile", "config/local.yaml")
    assert sorted(j.wildcards["dataset"] for j in jobs if j.rule == "backtranslate") == \
        sorted(load_scale("local", REPO)["datasets"])
    assert sum(j.rule == "adapt" and j.wildcards["source"] == "backtranslation" for j in jobs) == 14


@pytest.mark.slow
def test_smoke_dag_backtranslates_one_dataset_end_to_end(tmp_path):
    """The chain through Snakemake at smoke scale (about a minute and a half on 2 cores): seed,
    both adapters, self-augmentation and self-curation of one dataset, its funnel figure. The
    random tiny seed model writes no score: every pair is unrated, an empty set with its manifest."""
    overlay = tmp_path / "backtranslation.yaml"
    overlay.write_text("run:\n  sources: [backtranslation]\n")
    result = snakemake("-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-c2",
                       "results/synthetic/backtranslation/pubmed_qa.parquet",
                       "results/synthetic/backtranslation/pubmed_qa.funnel.png",
                       "--configfile", str(REPO / "config/smoke.yaml"), str(overlay), timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    results = tmp_path / "results"
    manifest = json.loads((results / "synthetic" / "backtranslation" / "pubmed_qa.manifest.json").read_text())
    funnel, ratings = manifest["funnel"], manifest["ratings"]
    assert funnel["generated"] == manifest["counts"]["passages"] == ratings["rated"] + funnel["empty"]
    assert sum(ratings["by_score"].values()) == ratings["rated"]
    assert manifest["kept"] == funnel["clean"] + sum(funnel[r] for r in ("exact_duplicate", "near_duplicate",
                                                                         "contaminated"))
    seed = json.loads((results / "generators" / "backtranslation" / "seed" / "manifest.json").read_text())
    assert seed["counts"]["pairs"] == 28 and seed["drops"] == {"other_language": 3, "no_reply": 1,
                                                                "no_reply_ranked_0": 1}
    for direction in ("backward", "forward"):
        trained = json.loads((results / "generators" / "backtranslation" / f"{direction}_adapter.manifest.json").read_text())
        assert trained["wrapper"] == "io" and trained["params"]["lora"]["r"] == 8


@pytest.mark.slow
def test_smoke_dag_runs_to_the_main_table(smoke_run):
    config = load_scale("smoke", REPO)
    results = smoke_run / "results"
    table = pd.read_csv(results / "paper" / "main_table.csv")
    assert len(table) == len(config["targets"]) * (1 + len(config["run"]["sources"]))
    scores = table.drop(columns=["group", "model", "adaptation"])  # a column per dataset, and the average
    assert len(scores.columns) == len(config["datasets"]) + 1 and scores.notna().all().all(), table
    for dataset in config["datasets"]:  # the smoke generator learnt the format: every dataset has tasks
        manifest = json.loads((results / "synthetic" / "bonito" / f"{dataset}.manifest.json").read_text())
        assert manifest["kept"] > 0, manifest["funnel"]
    profile = pd.read_csv(results / "paper" / "quality_profile.csv")
    assert len(profile) == len(config["datasets"]) and (profile["generator"] == "bonito").all()
    parse = json.loads((results / "generators" / "bonito" / "parse_check.json").read_text())
    assert parse["counts"]["trained_parsed"] > parse["counts"]["base_parsed"], parse
    for log in (results / "logs").rglob("*.log"):
        assert "Traceback" not in log.read_text(), log


@pytest.mark.slow
def test_every_manifest_names_the_cpu_and_its_instruction_set_flags(smoke_run):
    """Sampled generation can differ across CPU types: each manifest says which CPU it ran on."""
    manifests = sorted((smoke_run / "results").rglob("*manifest.json"))
    assert len(manifests) > 20
    for path in manifests:
        record = json.loads(path.read_text())
        assert record["machine"]["cpu_model"] and record["machine"]["cpu_flags"], path
        assert record["versions"]["python"], path  # beside the library versions


@pytest.mark.slow
def test_two_smoke_runs_from_an_empty_results_give_byte_identical_tables(smoke_run, tmp_path):
    """A second smoke run in an empty directory, as far as the tables, writes them byte for byte
    as the session's run did: same seeds, same machine, same numbers."""
    from bonito_repro.core import layout
    from bonito_repro.workflow.dag import MAIN_TABLE_NAMES

    tables = [layout.paper(f"{name}.{ext}") for name in MAIN_TABLE_NAMES for ext in ("csv", "md", "tex")]
    tables += [layout.paper(f"{name}.{ext}") for name in ("baselines", "eval_scores") for ext in ("csv", "md")]
    # the targets before --configfile, which takes every argument after it as a file
    result = snakemake("-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-c2", *tables, "--configfile",
                       str(REPO / "config/smoke.yaml"), timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    for table in tables:
        assert (tmp_path / table).read_bytes() == (smoke_run / table).read_bytes(), table


@pytest.mark.slow
def test_every_synthetic_set_and_adapter_has_a_card_folder_that_loads(smoke_run):
    """The cards' counts are the manifests'; each folder loads with the library a Hub user would."""
    import datasets
    from huggingface_hub import DatasetCard, ModelCard

    results = smoke_run / "results"
    sets = sorted((results / "synthetic").glob("*/*.hub"))
    adapters = sorted((results / "adapters").glob("*/*/*.hub"))
    config = load_scale("smoke", REPO)
    assert len(sets) == len(config["datasets"]) * (len(config["run"]["sources"]) - 1)
    assert len(adapters) == len(config["targets"]) * len(config["datasets"]) * len(config["run"]["sources"])
    for folder in sets:
        manifest = json.loads(folder.with_name(folder.name.replace(".hub", ".manifest.json")).read_text())
        assert len(datasets.load_dataset(str(folder), split="train")) == manifest["kept"]
        card = DatasetCard.load(folder / "README.md")
        assert f"kept {manifest['kept']} of {manifest['funnel']['generated']}" in card.text
        assert card.data.license == "apache-2.0"  # the embedded demo rows: the project's own text
    for folder in adapters:
        manifest = json.loads(folder.with_name(folder.name.replace(".hub", ".manifest.json")).read_text())
        card = ModelCard.load(folder / "README.md")
        assert f"| steps | {manifest['steps']} |" in card.text and card.data.eval_results[0].metric_type == "f1"
        assert (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_report_collects_tables_plots_and_captions(smoke_run):
    report = smoke_run / "report.html"
    result = snakemake("-s", str(REPO / "Snakefile"), "-d", str(smoke_run), "--configfile",
                       str(REPO / "config/smoke.yaml"), "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    page = report.read_text()
    for name in ("main_table.csv", "published_comparison.csv", "eval_scores.csv", "contract_nli.funnel.png",
                 "adapter.loss.png", "Made at the smoke scale"):
        assert name in page, name


def rerun_jobs(smoke_run: Path, tmp_path: Path, edit) -> list[Job]:
    """The jobs a dry run of the smoke DAG wants after ``edit`` of the smoke overlay."""
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    edit(config)
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(config))
    result = snakemake("-s", str(REPO / "Snakefile"), "-d", str(smoke_run), "-n", "--configfile", str(edited))
    assert result.returncode == 0, result.stderr[-3000:]
    return [job for job in dry_run_jobs(result.stdout + result.stderr) if job.rule != "all"]


def rerun_after(smoke_run: Path, tmp_path: Path, edit) -> set[str]:
    return {job.rule for job in rerun_jobs(smoke_run, tmp_path, edit)}


EVALUATION = {"evaluate", "evaluate_generation"}
TABLES = {"eval_table", "main_table"}
PLOTS = {"funnel_plot", "loss_curve"}
CARDS = {"dataset_card", "model_card"}  # a model card carries its adapter's F1


@pytest.mark.slow
@pytest.mark.parametrize("edit, must, may", [
    (lambda c: c["evaluation"].update(max_new_tokens=7), {"evaluate_generation"},
     {"evaluate_generation", "model_card"} | TABLES),
    # the baselines score the same sample of rows
    (lambda c: c["evaluation"].update(max_examples=5), EVALUATION, EVALUATION | TABLES | {"model_card", "baselines"}),
    (lambda c: c["evaluation"].update(truncation="right"), EVALUATION, EVALUATION | TABLES | {"model_card"}),
    (lambda c: c["adaptation"].update(learning_rate=0.123), {"adapt"},
     {"adapt", "loss_curve", "model_card"} | EVALUATION | TABLES),
    (lambda c: c.setdefault("tables", {}).update(decimals=2), {"main_table", "quality_profile", "baselines"},
     {"main_table", "quality_profile", "baselines"}),  # the table style: the tables, nothing else
    (lambda c: c.setdefault("plots", {}).update(dpi=72), PLOTS, PLOTS),  # a figure's style reruns no compute job
    (lambda c: c.setdefault("parse_check", {}).update(contexts=4), {"parse_check"}, {"parse_check"}),  # and never the training
])
def test_a_config_edit_reruns_only_what_it_affects(smoke_run, tmp_path, edit, must, may):
    rerun = rerun_after(smoke_run, tmp_path, edit)
    assert must <= rerun <= may, rerun


@pytest.mark.slow
def test_a_dataset_file_edit_reruns_only_that_datasets_evaluations(smoke_run, tmp_path):
    """A copy of a shipped dataset file, selected by path, reruns no compute job (the main table's
    params hold `run`); a template or its passage field (under the smoke scale's
    `evaluation.truncation: passage`) edited in it reruns that dataset's evaluations and the
    tables, not its test set, nor any other dataset's evaluations."""
    spec = yaml.safe_load((DATASETS_DIR / "contract_nli.yaml").read_text())
    own = tmp_path / "contract_nli.yaml"
    select_copy = lambda c: c["run"].update(  # noqa: E731
        datasets=[str(own) if d == "contract_nli" else d for d in c["run"]["datasets"]])
    own.write_text(yaml.safe_dump(spec))
    assert rerun_after(smoke_run, tmp_path, select_copy) <= {"main_table"}
    first = spec["templates"]["verbatim"][0]
    edited = {"verbatim": [{**first, "jinja": first["jinja"].replace("Suppose", "Assume")},
                           *spec["templates"]["verbatim"][1:]]}
    for edit in ({"templates": edited}, {"passage": ["premise", "hypothesis"]}):
        own.write_text(yaml.safe_dump({**spec, **edit}))
        jobs = rerun_jobs(smoke_run, tmp_path, select_copy)
        assert {job.rule for job in jobs} == {"evaluate", "model_card"} | TABLES, jobs
        assert {job.wildcards["dataset"] for job in jobs if job.rule in ("evaluate", "model_card")} == {"contract_nli"}


@pytest.mark.slow
def test_nothing_reruns_without_an_edit(smoke_run, tmp_path):
    assert rerun_after(smoke_run, tmp_path, lambda c: None) == set()


@pytest.mark.slow
def test_a_broken_config_file_stops_the_workflow_naming_file_and_line(tmp_path):
    """Snakemake's own message names neither; the base config is read first, every config file
    (the overlays and a user's --configfile) checked for a key written twice, before any job."""
    shutil.copy(REPO / "Snakefile", tmp_path / "Snakefile")
    (tmp_path / "config.yaml").write_text("scale: paper\nrun: {targets: [a]\n")
    result = snakemake("-n", "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path), cwd=tmp_path)
    said = result.stdout + result.stderr
    assert result.returncode != 0 and f"{tmp_path / 'config.yaml'}: line 3, column 1: not valid YAML" in said, said[-2000:]
    overlay = tmp_path / "my_run.yaml"
    overlay.write_text("evaluation:\n  max_examples: 4\n  seed: 1\n  max_examples: 8\n")
    result = snakemake("-n", "--configfile", "config/smoke.yaml", str(overlay), "-d", str(tmp_path / "run"))
    said = result.stdout + result.stderr
    assert result.returncode != 0 and f"{overlay}: line 4: key 'evaluation.max_examples' is written twice" in said, \
        said[-2000:]


def test_no_default_profile():
    assert not (REPO / "profiles" / "default").exists()


@pytest.mark.dag
@pytest.mark.parametrize("config_values", [{}, {"data": "hub"}])
def test_the_snakefile_merges_the_shared_layer_beneath_the_overlay_and_config_values_on_top(config_values):
    """config/smoke.yaml's `data` comes from its shared layer (config/cpu.yaml), a --config value
    overrides it: the test set's origin is the one the Python loader resolves."""
    args = ["--config", *(f"{key}={value}" for key, value in config_values.items())] if config_values else []
    result = snakemake("-n", "-p", "--forceall", "--configfile", "config/smoke.yaml", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    origin = re.search(r"target-data test --dataset pubmed_qa --origin '([^']*)'", result.stdout + result.stderr)
    config = validate(merged_config([REPO / "config.yaml", REPO / "config" / "smoke.yaml"], config_values))
    assert json.loads(origin.group(1)) == config["datasets"]["pubmed_qa"]["test"]


@pytest.mark.dag
def test_a_relative_interpreter_is_the_repositorys_in_a_run_elsewhere(tmp_path):
    """`environments.vllm: .venv-vllm/bin/python` (local, smoke and rehearsal scales) names the
    repository's environment: a run in another directory (`-d DIR`, as the rehearsal runs) calls
    it by that path, not DIR's (which does not exist: every vLLM job failed with status 127)."""
    overlay = tmp_path / "vllm.yaml"
    overlay.write_text(yaml.safe_dump({"generation": {"backend": "vllm"}}))
    result = snakemake("-n", "-p", "--configfile", str(REPO / "config" / "smoke.yaml"), str(overlay),
                       "-d", str(tmp_path / "work"), "--snakefile", str(REPO / "Snakefile"))
    assert result.returncode == 0, result.stderr[-3000:]
    commands = re.findall(r"(\S+) -m bonito_repro generate ", result.stdout + result.stderr)
    assert commands and set(commands) == {str(REPO / ".venv-vllm" / "bin" / "python")}, commands
