"""The preflight (`bonito-repro preflight`): the Hub references of a config, its checks
one by one, and the whole command against the local Hub (one config that passes, reading real row
counts from Parquet footers and naming the jobs too long for their runtime; one with a missing
config and a gated repository without a token; the ctga sources the public record shows gone),
each failure named."""
from __future__ import annotations

import copy
import json
import re
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
    assert refs["ctga.p3_datasets.wiki_hop/original"].hub == {
        "id": "QAngaroo/wiki_hop", "config": "original", "split": "train", "revision": "refs/convert/parquet"}
    assert refs["ctga.p3_datasets.samsum"].hub["id"] == "knkarthick/samsum"
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
    assert list(checks) == ["driver", "compute capability", "CUDA", "bf16", "bitsandbytes 4-bit", "vLLM engine",
                            "memory"]
    assert all(c["status"] == "FAIL" for c in checks.values())  # a failure each, never a skip
    assert checks["CUDA"]["detail"].startswith("no CUDA device: torch.cuda.is_available() is False")
    assert "CUDA_VISIBLE_DEVICES=" in checks["CUDA"]["detail"]
    assert checks["vLLM engine"]["detail"] == "not checked: no CUDA device"
    assert checks["memory"]["detail"] == "not read: no CUDA device"


# nvidia-smi's answers to NVIDIA_SMI_QUERY: (driver ok, compute capability ok)
RECORDED_GPUS = {
    "NVIDIA H100 80GB HBM3, 580.65.06, 9.0": (True, True),
    "NVIDIA A100-SXM4-80GB, 535.183.06, 8.0": (False, True),    # a CUDA 12 driver
    "Tesla V100-SXM2-32GB, 580.82.07, 7.0": (True, False),      # no bf16
    "Tesla T4, 470.57.02, 7.5\nTesla T4, 470.57.02, 7.5": (False, False),
}


@pytest.mark.parametrize("answer", RECORDED_GPUS)
def test_the_driver_and_compute_capability_rules_on_recorded_gpus(answer):
    driver, capability = preflight.driver_checks(answer)
    assert (driver.item, capability.item) == ("driver", "compute capability")
    assert (driver.status == preflight.OK, capability.status == preflight.OK) == RECORDED_GPUS[answer]
    if driver.status == preflight.FAIL:
        assert "needs driver 580 or newer" in driver.detail
    if capability.status == preflight.FAIL:
        assert "bf16 needs 8.0 or newer" in capability.detail


def test_an_nvidia_smi_without_compute_capability_fails_both_rules():
    answer = 'Field "compute_cap" is not a valid field to query.'  # drivers before 510
    checks = preflight.driver_checks(answer)
    assert [c.status for c in checks] == [preflight.FAIL] * 2 and answer in checks[0].detail


def test_the_vllm_engine_starts_offline_without_proxies_within_its_limit(tmp_path, monkeypatch):
    """A stand-in for the vLLM interpreter that answers as the engine does only where the job's
    environment is offline and has no proxy, and one that never answers (a kernel compiled at
    first use): the check passes the first, with the config's engine settings, and fails the
    second at its time limit."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    offline = tmp_path / "offline-python"
    offline.write_text("#!/bin/sh\n[ \"$HF_HUB_OFFLINE\" = 1 ] && ! env | grep -qi _proxy= || exit 3\n"
                       "case \"$*\" in *'--vllm-settings {\"enforce_eager\": false}'*) ;; *) exit 4;; esac\n"
                       "echo '{\"vllm\": \"0.0\", \"seconds\": 2.0}'\n")
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    for script in (offline, slow):
        script.chmod(0o755)
    check = preflight.vllm_engine_check(str(offline), "cuda", {"enforce_eager": False}, timeout=20)
    assert check.status == preflight.OK and "started and generated in 2 s offline" in check.detail, check
    check = preflight.vllm_engine_check(str(slow), "cuda", timeout=1)
    assert check.status == preflight.FAIL and "no engine within 1 s offline" in check.detail, check


def test_the_preflight_runs_the_gpu_job_unless_told_not_to(tmp_path, monkeypatch, capsys):
    """The GPU checks are on by default: `--no-gpu-check` is the only way to skip them (the other
    steps stubbed: the local config reads no Hub)."""
    jobs = []
    monkeypatch.setattr(preflight, "check_gpu_node", lambda config, workdir: jobs.append(workdir) or [
        preflight.Check("gpu", "CUDA", preflight.FAIL, "no CUDA device")])
    monkeypatch.setattr(preflight, "check_hub", lambda config, lock: [])
    monkeypatch.setattr(preflight, "interpreters", lambda config, workdir: {})
    monkeypatch.setattr(preflight, "check_cost", lambda *args: ([], "", None))
    args = ["--configfile", "config/local.yaml", "--directory", str(REPO), "--results", str(tmp_path / "results"),
            "--lock", str(tmp_path / "hub.lock.yaml")]
    assert preflight.main(args) == 1 and jobs == [REPO]
    assert "FAIL gpu: CUDA: no CUDA device" in capsys.readouterr().out
    assert preflight.main([*args, "--no-gpu-check"]) == 0 and jobs == [REPO]


VLLM_PY = REPO / ".venv-vllm" / "bin" / "python"


@pytest.mark.vllm
@pytest.mark.skipif(not VLLM_PY.exists(), reason=f"{VLLM_PY} is missing (make setup-vllm)")
def test_the_vllm_engine_check_starts_the_workflows_engine_offline(monkeypatch):
    """The GPU job's engine check end to end, on vLLM's CPU build: the model built on the spot,
    the workflow's vLLM backend started on it and generating, with a proxy in this environment
    that leads nowhere (the check removes it) and the Hub offline."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    check = preflight.vllm_engine_check(str(VLLM_PY), "cpu")
    assert check.status == preflight.OK, check
    assert check.detail.startswith("vllm ") and "on cpu: started and generated in" in check.detail, check


def test_the_gpu_check_needs_srun(paper, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    (check,) = preflight.check_gpu_node(paper, tmp_path)
    assert check.status == preflight.FAIL and check.detail.startswith("srun not found")


# ---------------------------------------------------------------- the command against the local Hub
# the paper config, ctga built from its P3 datasets, decoding by transformers (the vLLM
# environment's start-up is tested elsewhere) and make's CPU environments (the GPU ones are built
# on a cluster), without the ablations
CPU_ENVIRONMENTS = {"main": None, "vllm": ".venv-vllm/bin/python",
                    "requirements": {"main": ["requirements.txt", "requirements-nodeps.txt"],
                                     "vllm": ["requirements-vllm.txt", "requirements-nodeps.txt"]}}
PASSING = {"generation": {"backend": "transformers"},
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
    done = local_hub.run(["preflight", "--configfile", path, "--results", tmp_path / "results",
                          "--lock", tmp_path / "hub.lock.yaml", "--no-gpu-check"],  # no Slurm here
                         tmp_path / "hf", token=token)
    return done, local_hub.requests()[before:]


@pytest.fixture(scope="module")
def passing(local_hub, tmp_path_factory):
    """The preflight of the paper config (PASSING) on the local Hub, once for the tests below:
    (its run, the Hub requests it made, its results folder)."""
    tmp_path = tmp_path_factory.mktemp("preflight")
    done, requests = _run(local_hub, tmp_path, PASSING, token=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, requests, tmp_path / "results"


@pytest.mark.slow
def test_preflight_passes_the_paper_config_on_the_local_hub(passing):
    done, requests, _ = passing
    lines = done.stdout.splitlines()
    hub = [line for line in lines if line.split()[1:2] == ["hub"]]
    assert len(hub) == 5 + 2 * 7 + 38 and all(line.startswith("ok ") for line in hub)
    # the P3 sources that replace the ones gone from the Hub
    assert any("ctga.p3_datasets.samsum: knkarthick/samsum@main" in line for line in hub)
    assert any("ctga.p3_datasets.wiki_hop/original: QAngaroo/wiki_hop@refs/convert/parquet config=original"
               in line for line in hub)
    assert any(line.startswith("ok    disk") for line in lines)
    assert any(line.startswith("ok    environment  environments.main") for line in lines)
    assert any(line.startswith("train_bonito") and "rule retries 4" in line for line in lines)
    # 1 lock, 57 hub, 1 rows, 2 disk (downloads; what the run writes), 1 environment, 1 GPU memory
    # warning (--no-gpu-check: no GPU memory to check against); 6 cost warnings (next test)
    assert any(line.startswith("warn  gpu memory") and "not checked" in line for line in lines)
    assert "preflight: 69 checks, 0 failed" in done.stdout
    # of each model repository one LFS-stored file, its smallest, was downloaded whole (the path
    # the download jobs' weights take), no other weights, and of the data files only Parquet
    # footers (next test)
    models = [line for line in hub if " models." in line]
    assert len(models) == 5 and all(re.search(r"; LFS file \S+ \([\d,]+ bytes\) downloaded$", line)
                                    for line in models), models
    fetched = [r["path"] for r in requests if r["endpoint"] == "resolve" and r["path"].endswith(DATA_FILES)
               and not r["path"].endswith(".parquet")]
    repos = sorted(path.split("/resolve/")[0] for path in fetched)
    assert len(fetched) == len(models) and len(set(repos)) == len(repos), fetched
    whole = [r for r in requests if r["endpoint"] == "cdn" and r["method"] == "GET" and r["status"] == 200]
    assert len(whole) == len(models), whole


@pytest.mark.slow
def test_preflight_reads_real_row_counts_and_names_the_jobs_over_their_runtime(passing, local_hub, paper):
    """The row counts come from the Parquet footers of the BatsResearch sets' conversion branch
    (its unannotated_pubmed_qa holds 270,000 rows), read by ranges of the files' tails; they are
    written beside the report and drive the cost model, which names PubMedQA's TAPT job of every
    target and its generation job as too long for their runtime at the paper's resources."""
    from bonito_repro.cluster import cost
    from bonito_repro.localhub.server import load_repos

    done, requests, results = passing
    table = done.stdout.split("row counts (written to ", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[0] == f"{results / 'preflight' / 'row_counts.json'}; the cost model reads them):"
    assert table[1].split() == ["origin", "repository", "(config)", "split", "rows", "source"]
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert rows["datasets.pubmed_qa.unannotated"][-3:] == ["train", "270,000", "footer"]
    assert rows["datasets.vitaminc.test"][-3:] == ["test", "2", "footer"]
    assert rows["ctga.p3_datasets.samsum"][-1] == "estimate"  # CSV on main, no conversion branch here
    assert len(rows) == 2 * 7 + 38
    saved = cost.load_rows(results / "preflight" / "row_counts.json").counts
    assert saved["datasets.pubmed_qa.unannotated"].detail.startswith("refs/convert/parquet@")
    assert (results / "preflight" / "report.txt").read_text() == done.stdout

    # footers only: every data file read is a range of at most 64 KiB; the 270,000 rows' file
    # (about 250 kB) is read from its tail, never whole (the models' sampled files aside)
    repos = load_repos(local_hub.root)
    branch = repos[("dataset", "BatsResearch/bonito-experiment")].find("refs/convert/parquet")
    model_blobs = {blob.sha256 for (kind, _), repo in repos.items() if kind == "model"
                   for rev in repo.revisions.values() for blob in rev.files.values()}
    reads = [r for r in requests if r["endpoint"] == "cdn" and r["path"].rsplit("/", 1)[-1] not in model_blobs]
    assert reads and all(r["status"] == 206 for r in reads), reads
    spans = [tuple(map(int, r["range"].removeprefix("bytes ").replace("/", "-").split("-"))) for r in reads]
    assert all(end - start < 64 * 1024 for start, end, _ in spans)
    pubmed = branch.files["unannotated_pubmed_qa/train/0000.parquet"]
    [(start, end, size)] = [s for s, r in zip(spans, reads) if r["path"].endswith(pubmed.sha256)]
    assert size == pubmed.size > 3 * 64 * 1024 and start > 0 and end == size - 1

    warned = [line for line in done.stdout.splitlines() if line.startswith("warn  cost")]
    assert len(warned) == len(paper["targets"]) + 1, warned
    for target in paper["targets"]:
        assert any(f"adapt dataset=pubmed_qa,source=tapt,target={target} " in line
                   and "more than its runtime of 1440 min (resources.adapt.runtime)" in line for line in warned)
    assert any("generate dataset=pubmed_qa,generator=bonito " in line for line in warned)
    assert "6 jobs need more than one attempt of their runtime" in done.stdout


# ctga sources config.yaml named before the public record showed them gone from the Hub
GONE_SOURCES = {"samsum": {"id": "Samsung/samsum", "split": "train", "revision": "refs/convert/parquet"},
                "wiki_hop/original": {"id": "MoritzLaurer/wiki_hop", "config": "original", "split": "train",
                                      "revision": "refs/convert/parquet"}}
CHECK_SOURCES = """
import json, sys
from bonito_repro.cluster import preflight, row_counts
for where, hub in json.loads(sys.argv[1]):
    check = preflight.check_dataset(preflight.HubReference(where, "dataset", hub))
    counted = row_counts.count_rows(where, hub, 2000) if check.status == "ok" else None
    print(json.dumps([where, check.status, check.detail, getattr(counted, "source", counted)]))
"""


@pytest.mark.slow
def test_the_ctga_sources_gone_from_the_hub_fail_the_preflight(local_hub, tmp_path, paper):
    """The local Hub answers 404 for the repositories the public record shows gone, so the
    preflight's hub check fails the old samsum and wiki_hop entries; config.yaml's replacements
    pass it and are counted."""
    import subprocess

    current = [(f"ctga.p3_datasets.{name}", paper["ctga"]["p3_datasets"][name]["hub"]) for name in GONE_SOURCES]
    gone = [(f"gone {name}", hub) for name, hub in GONE_SOURCES.items()]
    before = len(local_hub.requests())
    done = subprocess.run([sys.executable, "-c", CHECK_SOURCES, json.dumps(current + gone)], cwd=REPO,
                          env=local_hub.env(tmp_path / "hf", token=True), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {where: rest for where, *rest in map(json.loads, done.stdout.splitlines())}
    assert results["ctga.p3_datasets.samsum"][::2] == ["ok", "estimate"]   # CSV on main, no conversion branch here
    assert results["ctga.p3_datasets.wiki_hop/original"][::2] == ["ok", "footer"]
    for name in GONE_SOURCES:
        assert results[f"gone {name}"] == ["FAIL", "repository not found (or private, and HF_TOKEN cannot see it)", None]
    refused = {r["path"].split("/")[3] + "/" + r["path"].split("/")[4] for r in local_hub.requests()[before:]
               if (r["status"], r.get("error")) == (404, "RepoNotFound")}
    assert refused == {"Samsung/samsum", "MoritzLaurer/wiki_hop"}


@pytest.mark.slow
def test_preflight_names_a_missing_config_and_a_missing_token(local_hub, tmp_path):
    done, _ = _run(local_hub, tmp_path, BROKEN, token=False)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("\npreflight: ", 1)[1]
    # the GPU memory warning (--no-gpu-check) and the disk check of what the run writes among them
    assert summary.startswith("13 checks, 2 failed")
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
            "(the footer of data/train-00000-of-00001.parquet)") in present["detail"]
    assert lacking["status"] == "FAIL" and "no column(s) ['quality_votes']" in lacking["detail"]
    requests = local_hub.requests()[before:]
    resolved = [r for r in requests if r["endpoint"] == "resolve" and r["path"].endswith(".parquet")]
    blobs = [r for r in requests if r["endpoint"] == "cdn" and r["method"] == "GET"]
    assert resolved and all(r["status"] == 302 for r in resolved), resolved  # redirects to the file, no body
    assert blobs and all(r["status"] == 206 for r in blobs), blobs  # ranged reads of the footer only


@pytest.mark.slurm
def test_the_gpu_check_runs_as_a_one_gpu_slurm_job(paper):
    """Through a real srun on the test cluster's fake GPUs, on the partition and account of the
    site settings: the job gets one GPU (one device in CUDA_VISIBLE_DEVICES) and, with no driver
    and no CUDA behind it, fails every check."""
    import os
    import re

    from slurm_cluster import ACCOUNT, PARTITION, unavailable_reason

    reason = unavailable_reason()
    if reason:
        if os.environ.get("BONITO_REQUIRE_SLURM") == "1":
            pytest.fail(f"BONITO_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    config = copy.deepcopy(paper)
    config["resources"]["slurm"].update(gpu_partition=PARTITION, account=ACCOUNT)
    config["generation"]["backend"] = config["evaluation"]["generation_backend"] = "transformers"
    config["environments"]["main"] = None  # the interpreter running this (no GPU environment here)
    checks = preflight.check_gpu_node(config, REPO, timeout=300)
    assert [c.item for c in checks] == ["driver", "compute capability", "CUDA", "bf16", "bitsandbytes 4-bit",
                                        "memory"], checks
    assert all(c.status == preflight.FAIL for c in checks)  # fake GPUs: no driver, no CUDA, each a failure
    cuda = checks[2]
    assert cuda.detail.startswith("no CUDA device")
    assert re.search(r"\(CUDA_VISIBLE_DEVICES=\d, ", cuda.detail), cuda.detail


def test_what_the_run_writes_counts_against_the_free_space(tmp_path):
    """The adapters, checkpoints and outputs the cost model projects for results/ are added to
    the downloads to its filesystem; the check says how much of each, and warns (estimates)
    where they do not fit."""
    needs = [preflight.Check("hub", "a model", preflight.OK, "", 10**9, "results"),
             preflight.Check("hub", "a dataset", preflight.OK, "", 10**9, "cache")]  # the same filesystem
    projected = {"adapters": 10**18, "checkpoints": 2 * 10**9, "outputs": 10**6}
    check = preflight.check_written(needs, tmp_path / "results", tmp_path / "hf", projected)
    assert check.status == preflight.WARN and check.item.endswith(": what the run writes")
    assert check.detail.startswith("needs 1000000004.00 GB with the downloads; projected adapters 1000000000.00 GB, "
                                   "checkpoints 2.00 GB, outputs 0.00 GB (estimates")
    check = preflight.check_written(needs, tmp_path / "results", tmp_path / "hf", {"adapters": 10**3})
    assert check.status == preflight.OK


@pytest.mark.parametrize("report, status, note", [
    (None, preflight.OK, "quota not read (no `quota` tool here"),
    ("     /dev/vda   900000*  1000000 1100000       0     100       0       0       0", preflight.WARN,
     "quota: 0.10 GB left of 1.02 GB"),   # 1 KiB blocks: 100,000 left of the soft limit
    ("     /dev/vda      100        0       0       0       1       0       0       0", preflight.OK,
     "quota: no limit on this filesystem"),
])
def test_the_users_quota_is_read_where_a_quota_tool_answers(tmp_path, monkeypatch, report, status, note):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if report is not None:
        tool = bin_dir / "quota"
        tool.write_text("#!/bin/sh\necho 'Disk quotas for user me (uid 1000):'\necho '     Filesystem  blocks   quota   "
                        f"limit   grace   files   quota   limit   grace'\necho '{report}'\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # no other quota tool
    check = preflight.check_written([], tmp_path / "results", tmp_path / "hf", {"outputs": 200_000_000})
    assert check.status == status and note in check.detail, check.detail


def test_a_named_runs_preflight_writes_in_its_own_folder(tmp_path):
    """Two runs' preflights (config run.name) never overwrite each other's report and row counts;
    the default run's stay in results/preflight/."""
    results = tmp_path / "results"
    assert preflight.written(results, "report.txt", None) == results / "preflight" / "report.txt"
    assert preflight.written(results, "row_counts.json", "library") == \
        results / "runs" / "library" / "preflight" / "row_counts.json"
