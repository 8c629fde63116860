"""The preflight (`python -m bonito_repro preflight`): the Hub references of a config, its checks
one by one, and the whole command against the local Hub (one config that passes, one with a
missing config and a gated repository without a token, each failure named)."""
from __future__ import annotations

import copy
import json
import sys

import pytest
import yaml

from bonito_repro.cluster import preflight
from bonito_repro.core.config import load_scale
from conftest import REPO

PUBLISHED = {"kind": "published", "origin": {"hub": {"id": "BatsResearch/bonito-experiment", "config": "bonito_{dataset}",
                                                      "split": "train", "revision": "main"}}}


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_scale("paper", REPO)


def test_the_paper_run_reads_its_models_datasets_and_ctga_sources(paper):
    refs = {r.where: r for r in preflight.hub_references(paper)}
    models = sorted(w for w in refs if w.startswith("models."))
    # the main grid's models and the ablations' prompted generator's (Zephyr), not bonito_v1
    assert models == [f"models.{m}.hub" for m in sorted(["mistral_7b", "llama2_7b", "mistral_7b_instruct",
                                                         "mistral_7b_p3", "llama2_7b_p3", "zephyr_7b_beta"])]
    assert sum(w.startswith("datasets.") for w in refs) == 2 * 7
    p3 = [w for w in refs if w.startswith("ctga.p3_datasets.")]
    assert len(p3) == len(paper["ctga"]["p3_datasets"]) == 38
    assert refs["ctga.p3_datasets.wiki_hop/original"].hub["revision"] == "refs/convert/parquet"
    seed = refs["generators.backtranslation.seed"]
    assert seed.hub["id"] == "OpenAssistant/oasst1" and seed.columns == ("message_id", "parent_id", "role", "lang",
                                                                         "rank", "text")
    assert "ctga.published" not in refs and all(r.repo_type == "dataset" for w, r in refs.items() if w not in models)


def test_published_sets_replace_the_ctga_sources_and_fill_in_the_dataset(paper):
    config = copy.deepcopy(paper)
    config["ctga"]["use_published"] = True
    config["generators"] = {"bonito": config["generators"]["bonito"], "released": PUBLISHED}
    refs = {r.where: r.hub for r in preflight.hub_references(config)}
    assert refs["ctga.published"]["id"] == "BatsResearch/ctga-v1"
    assert not any(w.startswith("ctga.p3_datasets") for w in refs)
    assert refs["generators.released.origin (vitaminc)"]["config"] == "bonito_vitaminc"
    # no generator trained here and no P3-trained target: ctga-v1 is not read at all
    config["generators"] = {"released": PUBLISHED}
    assert not any(r.where.startswith("ctga") for r in preflight.hub_references(config))


def test_local_data_needs_no_hub():
    assert preflight.hub_references(load_scale("local", REPO)) == []


def test_the_vllm_environment_is_checked_only_where_a_job_runs_in_it(paper, tmp_path):
    envs = preflight.interpreters(paper, tmp_path)
    assert envs["main"][0] == str(tmp_path / ".venv-gpu/bin/python")
    assert envs["vllm"][0] == str(tmp_path / ".venv-gpu-vllm/bin/python")
    assert envs["main"][2] == [str(tmp_path / "envs/main-gpu.lock.txt"), str(tmp_path / "requirements-nodeps.txt")]
    config = copy.deepcopy(paper)
    config["generation"]["backend"] = config["evaluation"]["generation_backend"] = "transformers"
    assert list(preflight.interpreters(config, tmp_path)) == ["main"]
    config["environments"]["vllm"] = ".venv-vllm/bin/python"
    config["generation"]["backend"] = "vllm"
    assert preflight.interpreters(config, tmp_path)["vllm"][0] == str(tmp_path / ".venv-vllm/bin/python")
    # every kind that runs a model generates in the vLLM environment, not Bonito's alone
    for kind in ("prompted", "backtranslation"):
        config["generators"] = {g: s for g, s in paper["generators"].items() if s["kind"] == kind}
        assert config["generators"], kind
        assert "vllm" in preflight.interpreters(config, tmp_path), kind
    config["generators"] = {g: s for g, s in paper["generators"].items() if s["kind"] == "published"}
    assert list(preflight.interpreters(config, tmp_path)) == ["main"]


def test_an_environment_missing_a_package_is_named():
    ok = preflight.check_environment("main", sys.executable, ["json"])
    assert ok.status == preflight.OK and "json" in ok.detail
    broken = preflight.check_environment("vllm", sys.executable, ["json", "no_such_package_here"])
    assert broken.status == preflight.FAIL and "no_such_package_here" in broken.detail
    missing = preflight.check_environment("vllm", "/no/such/python", ["json"])
    assert missing.status == preflight.FAIL and "no such interpreter" in missing.detail


def test_an_environment_that_differs_from_its_pins_is_named(tmp_path):
    pins = tmp_path / "lock.txt"
    pins.write_text("pyyaml==0.0.1\n")
    differs = preflight.check_environment("main", sys.executable, ["json"], [str(pins)])
    assert differs.status == preflight.FAIL and "pyyaml" in differs.detail and "lock.txt" in differs.detail
    matches = preflight.check_environment("main", sys.executable, ["json"], [str(REPO / "requirements.txt")])
    assert matches.status == preflight.OK, matches.detail


def test_downloads_larger_than_the_free_space_fail(tmp_path):
    needs = [preflight.Check("hub", "a model", preflight.OK, "", 10**18, "results"),
             preflight.Check("hub", "a dataset", preflight.OK, "", 10**3, "cache")]
    (check,) = preflight.check_disk(needs, tmp_path / "results", tmp_path / "hf")  # one filesystem
    assert check.status == preflight.FAIL and check.detail.startswith("needs 1000000000.00 GB")
    (check,) = preflight.check_disk(needs[1:], tmp_path / "results", tmp_path / "hf")
    assert check.status == preflight.OK


def test_the_gpu_check_reports_a_missing_cuda_clearly(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the failure path cannot be shown")
    assert preflight.main(["--on-gpu-node", "--vllm-python", sys.executable]) == 1
    checks = {c["item"]: c for c in map(json.loads, capsys.readouterr().out.splitlines())}
    assert list(checks) == ["CUDA", "bf16", "bitsandbytes 4-bit", "vLLM"]
    assert all(c["status"] == "FAIL" for c in checks.values())
    assert checks["CUDA"]["detail"].startswith("no CUDA device: torch.cuda.is_available() is False")
    assert "CUDA_VISIBLE_DEVICES=" in checks["CUDA"]["detail"]
    assert checks["vLLM"]["detail"] == "not checked: no CUDA device"


def test_the_gpu_check_needs_srun(paper, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    (check,) = preflight.check_gpu_node(paper, tmp_path)
    assert check.status == preflight.FAIL and check.detail.startswith("srun not found")


# ---------------------------------------------------------------- the command against the local Hub
# the paper config with the published ctga-v1 (the local Hub holds only some P3 datasets) and
# decoding by transformers (the vLLM environment's start-up is tested elsewhere)
# and make's CPU environments (the GPU ones are built on a cluster), without the ablations
CPU_ENVIRONMENTS = {"main": None, "vllm": ".venv-vllm/bin/python",
                    "requirements": {"main": ["requirements.txt", "requirements-nodeps.txt"],
                                     "vllm": ["requirements-vllm.txt", "requirements-nodeps.txt"]}}
PASSING = {"ctga": {"use_published": True}, "generation": {"backend": "transformers"},
           "evaluation": {"generation_backend": "transformers"}, "environments": CPU_ENVIRONMENTS,
           "ablations": {"generators": {"generators": ["bonito"]}}}
BROKEN = {"run": {"targets": ["mistral_7b"], "datasets": ["pubmed_qa", "privacy_qa"], "sources": ["released"]},
          "generators": {"released": PUBLISHED},  # the local Hub has bonito_pubmed_qa, not bonito_privacy_qa
          "generation": {"backend": "transformers"}, "evaluation": {"generation_backend": "transformers"},
          "environments": CPU_ENVIRONMENTS,
          "ablations": {"generators": {"generators": ["released"]}, "size": {"generator": "released"},
                        "domain": {"generator": "released"}}}
DATA_FILES = (".arrow", ".parquet", ".safetensors", ".bin")


def _run(local_hub, tmp_path, overlay: dict, token: bool):
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    before = len(local_hub.requests())
    done = local_hub.run(["preflight", "--configfile", path, "--results", tmp_path / "results"],
                         tmp_path / "hf", token=token)
    return done, local_hub.requests()[before:]


@pytest.mark.slow
def test_preflight_passes_the_paper_config_on_the_local_hub(local_hub, tmp_path):
    done, requests = _run(local_hub, tmp_path, PASSING, token=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    hub = [line for line in lines if line.split()[1:2] == ["hub"]]
    assert len(hub) == 5 + 2 * 7 + 1 and all(line.startswith("ok ") for line in hub)
    assert any(line.startswith("ok    disk") for line in lines)
    assert any(line.startswith("ok    environment  environments.main") for line in lines)
    assert any(line.startswith("train_bonito") and "rule retries 4" in line for line in lines)
    assert "preflight: 22 checks, 0 failed" in done.stdout
    # metadata only: no data or weights file was downloaded
    fetched = [r["path"] for r in requests if r["endpoint"] == "resolve" and r["path"].endswith(DATA_FILES)]
    assert not fetched, fetched


@pytest.mark.slow
def test_preflight_names_a_missing_config_and_a_missing_token(local_hub, tmp_path):
    done, _ = _run(local_hub, tmp_path, BROKEN, token=False)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("\npreflight: ", 1)[1]
    assert summary.startswith("9 checks, 2 failed")
    assert ("FAIL hub: generators.released.origin (privacy_qa): BatsResearch/bonito-experiment@main "
            "config=bonito_privacy_qa split=train") in summary
    assert "BuilderConfig 'bonito_privacy_qa' not found" in summary
    assert ("FAIL hub: models.mistral_7b.hub: mistralai/Mistral-7B-v0.1@main: gated repository and no token: "
            "set HF_TOKEN") in summary


SEED_CHECK = """
import json, sys
from bonito_repro.cluster import preflight
from bonito_repro.core.config import load_scale
ref = next(r for r in preflight.hub_references(load_scale("paper", sys.argv[1])) if r.where.endswith(".seed"))
lacking = preflight.HubReference(ref.where, ref.repo_type, ref.hub, (*ref.columns, "quality_votes"))
print(json.dumps([preflight.check_dataset(r).__dict__ for r in (ref, lacking)]))
"""


@pytest.mark.slow  # a Python process against the local Hub
def test_the_seeds_columns_are_checked_from_the_parquet_footer(local_hub, tmp_path):
    """oasst1's layout is an assumption: the preflight checks the columns the seed is chosen by,
    reading only the footer of the split's parquet file, and names a column it lacks."""
    import subprocess

    before = len(local_hub.requests())
    done = subprocess.run([sys.executable, "-c", SEED_CHECK, str(REPO)], env=local_hub.env(tmp_path / "hf"),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    present, lacking = json.loads(done.stdout.splitlines()[-1])
    assert present["status"] == "ok", present
    assert ("columns ['message_id', 'parent_id', 'role', 'lang', 'rank', 'text'] present "
            "(the schema of data/train-00000-of-00001.parquet)") in present["detail"]
    assert lacking["status"] == "FAIL" and "no column(s) ['quality_votes']" in lacking["detail"]
    requests = local_hub.requests()[before:]
    resolved = [r for r in requests if r["endpoint"] == "resolve" and r["path"].endswith(".parquet")]
    blobs = [r for r in requests if r["endpoint"] == "cdn" and r["method"] == "GET"]
    assert resolved and all(r["status"] == 302 for r in resolved), resolved  # redirects to the file, no body
    assert blobs and all(r["status"] == 206 for r in blobs), blobs  # ranged reads of the footer only


@pytest.mark.slurm
def test_the_gpu_check_runs_as_a_one_gpu_slurm_job(paper, monkeypatch):
    """Through a real srun on the test cluster's fake GPUs: the job gets one GPU (one device in
    CUDA_VISIBLE_DEVICES) and, with no CUDA behind it, says so."""
    import os
    import re

    from slurm_cluster import ACCOUNT, PARTITION, unavailable_reason

    reason = unavailable_reason()
    if reason:
        if os.environ.get("BONITO_REQUIRE_SLURM") == "1":
            pytest.fail(f"BONITO_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    monkeypatch.setenv("SLURM_PARTITION", PARTITION)
    monkeypatch.setenv("SLURM_ACCOUNT", ACCOUNT)
    config = copy.deepcopy(paper)
    config["generation"]["backend"] = config["evaluation"]["generation_backend"] = "transformers"
    config["environments"]["main"] = None  # the interpreter running this (no GPU environment here)
    checks = preflight.check_gpu_node(config, REPO, timeout=300)
    assert [c.item for c in checks] == ["CUDA", "bf16", "bitsandbytes 4-bit"], checks
    assert all(c.status == preflight.FAIL for c in checks)
    assert checks[0].detail.startswith("no CUDA device")
    assert re.search(r"\(CUDA_VISIBLE_DEVICES=\d, ", checks[0].detail), checks[0].detail
