"""The workstation tier (docs/tiers.md): one machine with one GPU. Its DAG under the profile, the
GPU memory estimates the preflight sets against a GPU, the host memory of converting pickled
weights, the one-GPU projection of the cost model, and a user's text on it."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bonito_repro.cluster import cost, memory, preflight
from bonito_repro.cluster.dry_run import Job
from bonito_repro.core.config import load_config, load_scale
from bonito_repro.generate.inputs import position_limit
from bonito_repro.generate.synthetic_tasks import check_lengths
from bonito_repro.workflow import corpus
from conftest import REPO, dry_run_jobs, snakemake

GPU_RULES = ("train_bonito", "generate", "backtranslate", "parse_check", "adapt", "evaluate", "evaluate_generation")


@pytest.fixture(scope="module")
def workstation() -> dict:
    return load_scale("workstation", REPO)


@pytest.mark.dag
def test_the_workstation_profile_plans_one_gpu_jobs_and_no_bonito_training(workstation):
    result = snakemake("-n", "--profile", "workstation")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    counts = Counter(job.rule for job in jobs)
    assert not {"train_bonito", "ctga", "ctga_download", "parse_check"} & set(counts)
    assert all(int(job.resources.get("gpu", 0)) <= 1 for job in jobs)
    gpu_rules = {job.rule for job in jobs if int(job.resources.get("gpu", 0)) == 1}
    assert gpu_rules == {"generate", "adapt", "evaluate", "evaluate_generation"}
    # every GPU job has its memory estimate, which the preflight checks
    assert {e.job.split(" ")[0] for e in memory.job_estimates(workstation)} == gpu_rules
    datasets = len(workstation["datasets"])
    assert counts["generate"] == datasets and counts["adapt"] == 2 * datasets  # bonito_v1's tasks and TAPT
    assert counts["evaluate"] + counts["evaluate_generation"] == 3 * datasets  # and zero-shot
    # the profile runs one GPU job at a time, the CPU jobs beside it
    profile = yaml.safe_load((REPO / "workstation" / "config.yaml").read_text())
    assert profile["resources"] == ["gpu=1"] and profile["configfile"] == "config/workstation.yaml"
    # the docs' projection is the cost model's for this job list (assumed row counts)
    hours = cost.one_gpu_hours(cost.project(workstation, jobs))
    gpu_jobs = sum(int(job.resources.get("gpu", 0)) == 1 for job in jobs)
    assert f"**{hours:.1f} hours on one GPU** for its {gpu_jobs} GPU jobs" in (
        REPO / "docs" / "tiers.md").read_text()


def test_the_workstation_runs_the_published_generator_for_one_7b_target(workstation):
    assert workstation["scale"] == "workstation" and workstation["device"] == "cuda"
    assert workstation["run"]["targets"] == ["mistral_7b"] and workstation["run"]["sources"] == ["tapt", "bonito_v1"]
    assert workstation["generation"]["backend"] == workstation["evaluation"]["generation_backend"] == "vllm"
    assert workstation["adaptation"]["quantization"] == "nf4"
    assert len(workstation["datasets"]) == 7


def test_every_job_of_the_workstation_fits_a_24_gb_gpu_by_the_estimates(workstation):
    estimates = memory.job_estimates(workstation)
    assert {e.job.split(" ")[0] for e in estimates} == {"generate", "evaluate", "evaluate_generation", "adapt"}
    assert memory.misfits(estimates, 24) == []
    # the paper's rank-classification batch (32,768 tokens of logits) would not
    paper = load_scale("paper", REPO)
    assert [e.job for e in memory.misfits(memory.job_estimates(paper), 24)] == [
        f"evaluate (model {m})" for m in ("llama2_7b", "mistral_7b", "mistral_7b_instruct")]
    assert memory.misfits(memory.job_estimates(paper), 40) == []


def test_every_gpu_rule_of_the_paper_has_an_estimate():
    paper = load_config(REPO / "config.yaml", REPO / "config" / "every_generator.yaml")
    rules = {e.job.split(" ")[0] for e in memory.job_estimates(paper)}
    assert rules == {"generate", "backtranslate", "evaluate", "evaluate_generation", "adapt", "train_bonito",
                     "parse_check", "train_backtranslation"}
    # the P3-style adapter trained here, where a target starts from one
    p3 = {**paper, "run": {**paper["run"], "targets": ["mistral_7b_p3"]},
          "targets": {**paper["targets"], "mistral_7b_p3": {**paper["targets"]["mistral_7b_p3"],
                                                            "init_adapter": {"train_on": "p3"}}}}
    assert "train_p3 (model mistral_7b)" in [e.job for e in memory.job_estimates(p3)]


def test_the_preflight_names_a_job_that_does_not_fit_a_declared_gpu(workstation):
    checks = preflight.check_gpu_memory(workstation, 20)
    failed = [c for c in checks if c.status == preflight.FAIL]
    assert [c.item for c in failed] == ["generate (bonito_v1, model bonito_v1)"]
    assert "lower generation.max_model_len" in failed[0].detail and "estimate" in failed[0].detail
    # capping the positions a generation may take shrinks its KV cache until it fits
    capped = {**workstation, "generation": {**workstation["generation"], "max_model_len": 4096}}
    assert all(c.status == preflight.OK for c in preflight.check_gpu_memory(capped, 20))
    # weights that do not fit at all ask for a bigger GPU
    small = [c for c in preflight.check_gpu_memory(workstation, 12) if c.status == preflight.FAIL]
    assert any("weights alone do not fit" in c.detail for c in small)
    # no GPU memory known: one warning, not a pass
    assert [c.status for c in preflight.check_gpu_memory(workstation, None)] == [preflight.WARN]


def test_each_memory_setting_moves_its_jobs_estimate(workstation):
    def total(config: dict, prefix: str) -> float:
        return next(e.total for e in memory.job_estimates(config) if e.job.startswith(prefix))

    def changed(section: str, **values) -> dict:
        return {**workstation, section: {**workstation[section], **values}}

    adapt = "adapt (model mistral_7b, synthetic"
    assert total(changed("adaptation", gradient_checkpointing=False), adapt) > total(workstation, adapt)
    assert total(changed("adaptation", per_device_batch_size=4), adapt) > total(workstation, adapt)
    assert total(changed("adaptation", max_input_length=512), adapt) < total(workstation, adapt)
    assert total(changed("evaluation", batch_tokens=32768), "evaluate (") > total(workstation, "evaluate (")
    graphs = changed("generation", vllm={"gpu_memory_utilization": 0.9, "enforce_eager": False})
    assert total(graphs, "generate") == pytest.approx(total(workstation, "generate") + 1.0)
    share = changed("generation", vllm={"gpu_memory_utilization": 0.5, "enforce_eager": True})
    assert not next(e for e in memory.job_estimates(share) if e.job.startswith("generate")).fits(24)


def test_converting_bonito_v1s_pickles_is_checked_against_host_memory(workstation):
    assert memory.pickled_models(workstation) == ["bonito_v1"]
    assert [c.status for c in preflight.check_host_memory(workstation, 8)] == [preflight.FAIL]
    assert [c.status for c in preflight.check_host_memory(workstation, 64)] == [preflight.OK]
    # the paper's route from bonito-v1 asks 8 GB for its download job: a warning
    paper = load_config(REPO / "config.yaml", REPO / "config" / "from_bonito_v1.yaml")
    warned = preflight.check_host_memory(paper, None)
    assert [c.status for c in warned] == [preflight.WARN] and "resources.download_model.mem_mb" in warned[0].detail


def test_a_generation_may_take_the_models_positions_cut_to_max_model_len(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    assert position_limit(tmp_path, None) == 2048 and position_limit(tmp_path, 512) == 512
    assert position_limit(tmp_path, 4096) == 2048


def test_a_prompt_past_max_model_len_is_named(tiny_model_dir):
    prompts = ["word " * 200]
    need = check_lengths(tiny_model_dir, prompts, [7], max_new_tokens=8)
    with pytest.raises(ValueError, match=r"context_id=7 .* generation.max_model_len 64"):
        check_lengths(tiny_model_dir, prompts, [7], max_new_tokens=8, max_model_len=64)
    assert check_lengths(tiny_model_dir, prompts, [7], max_new_tokens=8, max_model_len=need) == need


def test_the_cost_model_projects_hours_on_one_gpu(workstation):
    jobs = [Job("generate", {"generator": "bonito_v1", "dataset": "pubmed_qa"}, {"gpu": "1"}),
            Job("adapt", {"target": "mistral_7b", "source": "tapt", "dataset": "pubmed_qa"}, {"gpu": "1"}),
            Job("evaluate", {"target": "mistral_7b", "source": "tapt", "dataset": "pubmed_qa"}, {"gpu": "1"}),
            Job("prepare_model", {"model": "bonito_v1"}, {})]
    report = cost.project(workstation, jobs)
    assert cost.one_gpu_hours(report) == pytest.approx(sum(c.hours for c in report.jobs))
    text = cost.format_report(report, workstation)
    assert f"on one GPU, GPU jobs one at a time (`snakemake --profile workstation`): {cost.one_gpu_hours(report):.1f} h" in text
    assert "a projection from the stated throughputs" in text


def test_corpus_writes_the_workstation_overlay(tmp_path, capsys):
    examples = REPO / "examples" / "library_policies"
    out = tmp_path / "out"
    code = corpus.main(["--text", str(examples / "policies.txt"), "--task-type", "yes-no question answering",
                        "--name", "library", "--license", "cc0-1.0", "--out-dir", str(out), "--scale", "workstation"])
    assert code == 0
    overlay = yaml.safe_load((out / "run.yaml").read_text())
    assert overlay["run"]["sources"] == ["tapt", "bonito_v1"]
    assert capsys.readouterr().out.strip() == (f"bonito-repro run --scale workstation --configfile {out / 'run.yaml'}"
                                               f" -d {Path.cwd()}")
    config = load_config(REPO / "config.yaml", REPO / "config" / "workstation.yaml", out / "run.yaml")
    assert config["run"]["datasets"] == ["library"] and config["run"]["targets"] == ["mistral_7b"]


def test_workstation_tables_are_not_labelled_demo_data():
    """The workstation reads the paper's datasets from the Hub: its captions say so, where the
    local scale's say demo rows."""
    from bonito_repro.reporting.data_caption import data_caption

    workstation = load_config(REPO / "config.yaml", REPO / "config" / "workstation.yaml")
    local = load_scale("local", REPO)
    assert data_caption(workstation["datasets"], "workstation") == "Data: the paper's rows, read from the Hub."
    assert "embedded demo rows (local scale)" in data_caption(local["datasets"], "local")


def test_the_llama31_bonito_generator_is_selectable_by_name(tmp_path):
    overlay = tmp_path / "llama31.yaml"
    overlay.write_text("run:\n  sources: [tapt, llama31_bonito_v1]\n")
    config = load_config(REPO / "config.yaml", REPO / "config" / "workstation.yaml", overlay)
    assert config["generators"]["llama31_bonito_v1"] == {"kind": "bonito", "model": "llama31_bonito_v1"}
    assert config["models"]["llama31_bonito_v1"]["hub"]["id"] == "BatsResearch/Llama-3.1-8B-bonito-v1"
    # laid out in the local Hub, as an assumption the networked preflight settles
    hub = yaml.safe_load((REPO / "src/bonito_repro/data/local_hub.yaml").read_text())
    assert "main" in hub["models"]["BatsResearch/Llama-3.1-8B-bonito-v1"]
    # its 131,072 positions make vLLM's KV cache the size of its weights: not on 24 GB unless capped
    generate = next(e for e in memory.job_estimates(config) if e.job.startswith("generate"))
    assert generate.job == "generate (llama31_bonito_v1, model llama31_bonito_v1)" and not generate.fits(24)
    capped = {**config, "generation": {**config["generation"], "max_model_len": 4096}}
    assert next(e for e in memory.job_estimates(capped) if e.job.startswith("generate")).fits(24)
    code = corpus.main(["--text", str(REPO / "examples" / "library_policies" / "policies.txt"), "--task-type", "ynqa",
                        "--name", "library", "--license", "cc0-1.0", "--out-dir", str(tmp_path / "out"),
                        "--scale", "workstation", "--generator", "llama31_bonito_v1"])
    assert code == 0
    assert yaml.safe_load((tmp_path / "out" / "run.yaml").read_text())["run"]["sources"] == ["tapt", "llama31_bonito_v1"]


@pytest.mark.dag
def test_the_zero_shot_target_evaluates_mistral_7b_only_and_compares_it(tmp_path):
    result = snakemake("-n", "--profile", "workstation", "--configfile", "config/workstation.yaml", "config/zero_shot.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = Counter(job.rule for job in dry_run_jobs(result.stdout + result.stderr))
    assert counts["evaluate"] + counts["evaluate_generation"] == 7 and counts["main_table"] == 1
    assert not {"generate", "adapt", "train_bonito", "ctga"} & set(counts)
    assert counts["prepare_model"] == 1  # Mistral-7B-v0.1 alone


def test_zero_shot_scores_alone_make_the_published_comparison(tmp_path):
    from bonito_repro.reporting.main_table import write_tables

    config = load_config(REPO / "config.yaml", REPO / "config" / "workstation.yaml", REPO / "config" / "zero_shot.yaml")
    published = {"pubmed_qa": 25.6, "privacy_qa": 44.1, "squadshifts_nyt": 24.2, "squadshifts_amazon": 17.5,
                 "squadshifts_reddit": 12.0, "contract_nli": 31.2, "vitaminc": 38.9}
    scores = pd.DataFrame([{"target": "mistral_7b", "source": "zero_shot", "dataset": d, "f1": f1 + 1.0}
                           for d, f1 in published.items()])
    write_tables(scores, config, tmp_path, {})
    comparison = pd.read_csv(tmp_path / "published_comparison.csv")
    assert len(comparison) == 8 and comparison["difference"].round(6).tolist() == [1.0] * 8
    assert comparison["what"].iloc[-1] == "mistral_7b zero-shot Average" and comparison["published"].iloc[-1] == 27.6
    assert "not comparable" not in (tmp_path / "published_comparison.md").read_text()


def test_the_docs_table_of_what_fits_is_the_estimates(workstation):
    tiers = (REPO / "docs" / "tiers.md").read_text()
    assert memory.fit_table(workstation) in tiers
    assert "61.2 hours on one GPU" in tiers and "a projection, not measured" in tiers


LLAMA31_SCRIPT = """
import json, sys
from bonito_repro.generate import generate_tasks

tasks = generate_tasks(json.loads(sys.argv[1]), "ynqa", generator="llama31_bonito_v1", backend="transformers",
                       device="cpu", cache_dir=sys.argv[2])
print(json.dumps({"rows": tasks, "counts": tasks.counts, "generator": tasks.generator}))
"""


@pytest.mark.slow  # the local Hub's build, a download and a generation on CPU
def test_the_llama31_generator_generates_from_its_tiny_stand_in(local_hub, tmp_path):
    """`llama31_bonito_v1` by its declared name, from the local Hub's stand-in laid out as the
    config and local_hub.yaml assume (safetensors on main, not gated, a Llama model prompted as
    bonito-v1 is): downloaded at the commit main points at and generating parsable tasks."""
    from bonito_repro.localhub import server as hubserver

    passages = ["The library lends e-readers for three weeks; they can be renewed once.",
                "Members under 16 need a guardian's signature to borrow DVDs."]
    start = len(local_hub.requests())
    done = subprocess.run([sys.executable, "-c", LLAMA31_SCRIPT, json.dumps(passages), str(tmp_path / "cache")],
                          env=local_hub.env(tmp_path / "hf"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    repo = "BatsResearch/Llama-3.1-8B-bonito-v1"
    sha = hubserver.load_repos(local_hub.root)[("model", repo)].find("main").sha
    assert found["generator"] == {"name": "llama31_bonito_v1", "id": repo, "revision": "main", "sha": sha}
    assert found["counts"]["funnel"]["generated"] == 2 and found["counts"]["kept"] > 0, found["counts"]
    for row in found["rows"]:
        assert passages[row["context_id"]] in row["input"] and row["output"], row
    requests = local_hub.requests()[start:]
    assert all(r["status"] < 400 for r in requests if repo in r["path"]), requests
    assert any(r["path"].endswith(".safetensors") and repo in r["path"] for r in requests)
