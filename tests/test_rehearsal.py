"""The rehearsal (config/rehearsal.yaml): config.yaml's DAG, shrunk, on CPU, fed by the local Hub
through the real huggingface_hub and datasets calls.

Fast: the overlay changes sizes only, apart from the differences its header lists (the same
as ALLOWED_DIFFERENCES here), and the local Hub serves every repository the paper config names.
Slow: the rehearsal's CI part on the one-node Slurm (or the local executor where no Slurm is
reachable, with the reason printed); its coverage is named in the test's docstring. And the
workstation's (config/workstation.yaml under `--profile workstation`), cut to one target and one
dataset, by the command `make rehearsal-workstation` runs.
The full rehearsals (every target x dataset x source) are `make rehearsal` and
`make rehearsal-workstation`, outside CI.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bonito_repro.core.config import load_config, load_scale
from bonito_repro.localhub import server as hubserver
from bonito_repro.localhub.rehearsal import GpuUse, check_requests, endpoint_table, gpu_use, snakemake_log
from conftest import REPO

OVERLAY = REPO / "config" / "rehearsal.yaml"
CI_OVERLAY = REPO / "tests" / "rehearsal_ci.yaml"
WORKSTATION = REPO / "config" / "workstation.yaml"
WORKSTATION_CI_OVERLAY = REPO / "tests" / "rehearsal_workstation_ci.yaml"
HUB_SPEC = yaml.safe_load((REPO / "src/bonito_repro/data/local_hub.yaml").read_text())
# What the rehearsal changes besides sizes, each with its value (the overlay's header lists the same)
# key path -> its value, as YAML text (as the overlay's header lists them)
ALLOWED_DIFFERENCES = {"scale": "rehearsal", "device": "cpu", "environments.main": "null",
                       "environments.vllm": ".venv-vllm/bin/python",
                       "environments.requirements.main": "[requirements.txt,requirements-nodeps.txt]",
                       "environments.requirements.vllm": "[requirements-vllm.txt,requirements-nodeps.txt]",
                       "generation.vllm.enforce_eager": "true", "evaluation.vllm.enforce_eager": "true"}
# Leaf keys that only size a run: row counts, steps, lengths, batch
SIZE_KEYS = {"max_examples_per_dataset", "validation_size", "grad_accumulation", "per_device_batch_size",
             "max_input_length", "max_output_length", "max_steps", "save_steps", "eval_steps", "logging_steps",
             "max_eval_examples", "contexts", "max_new_tokens", "tapt_block_size", "shard_size", "max_passages",
             "token_budget", "max_examples", "max_length", "batch_tokens"}
RESOURCE_SIZES = {"threads", "mem_mb", "runtime"}   # a job's size; its GPU count stays the paper's


def leaves(mapping: dict, prefix: tuple = ()):
    for key, value in mapping.items():
        if isinstance(value, dict):
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def header_differences() -> dict[str, str]:
    """The overlay header's list of differences: comment lines `#   key.path: value   why`."""
    return dict(re.findall(r"^#   ([\w.]+): (\S+) {2,}", OVERLAY.read_text(), re.M))


def test_rehearsal_overlay_changes_only_sizes_and_the_listed_differences():
    overlay = yaml.safe_load(OVERLAY.read_text())
    assert header_differences() == ALLOWED_DIFFERENCES
    others = {}
    for path, value in leaves(overlay):
        dotted = ".".join(map(str, path))
        if dotted in ALLOWED_DIFFERENCES:
            assert value == yaml.safe_load(ALLOWED_DIFFERENCES[dotted]), dotted
        elif not (path[-1] in SIZE_KEYS and path[0] != "resources"
                  or path[0] == "resources" and path[-1] in RESOURCE_SIZES):
            others[dotted] = value
    assert not others, f"config/rehearsal.yaml changes more than sizes: {others}"
    assert set(ALLOWED_DIFFERENCES) <= {".".join(p) for p, _ in leaves(overlay)}
    assert "run" not in overlay  # the full rehearsal runs the paper's grid


def test_local_hub_serves_every_repository_of_the_paper_config():
    """Every Hub origin of the rehearsal's config (models, datasets' unannotated and test sets,
    ctga's P3 datasets) names a repository and revision the local Hub has."""
    config = load_scale("rehearsal", REPO)
    served = {("model", repo, rev) for repo, revs in HUB_SPEC["models"].items() for rev in revs if rev != "gated"}
    served |= {("dataset", repo, rev) for repo, revs in HUB_SPEC["datasets"].items() for rev in revs}
    wanted = {("model", m["hub"]["id"], m["hub"]["revision"]) for m in config["models"].values() if "hub" in m}
    origins = [o for d in config["datasets"].values() for o in (d["unannotated"], d["test"])]
    origins += list(config["ctga"]["p3_datasets"].values())
    wanted |= {("dataset", o["hub"]["id"], o["hub"].get("revision", "main")) for o in origins}
    assert len(wanted) > 30 and not wanted - served, sorted(wanted - served)
    # and none that the public record shows gone (the local Hub answers 404 for those)
    gone = {(kind.removesuffix("s"), repo) for kind, repos in HUB_SPEC["gone"].items() for repo in repos}
    assert {("dataset", "Samsung/samsum"), ("dataset", "MoritzLaurer/wiki_hop")} <= gone
    assert not {(kind, repo) for kind, repo, _ in wanted} & gone
    assert not gone & {(kind.removesuffix("s"), repo) for kind in ("datasets", "models") for repo in HUB_SPEC[kind]}


def test_request_check_tells_probes_from_failures():
    probe = {"method": "HEAD", "endpoint": "resolve", "status": 404, "error": "EntryNotFound",
             "path": "/datasets/allenai/cosmos_qa/resolve/" + "a" * 40 + "/cosmos_qa.py"}
    missing = {**probe, "path": probe["path"].replace("cosmos_qa.py", "cosmos_qa/train/0000.parquet")}
    gated = {**probe, "status": 401, "error": "GatedRepo"}
    unknown = {"method": "GET", "endpoint": None, "status": 404, "path": "/api/datasets/a/b/parquet"}
    folders = [{"method": "GET", "endpoint": "tree", "status": 404, "error": "EntryNotFound",
                "path": f"/api/datasets/QAngaroo/wiki_hop/tree/{'a' * 40}/{folder}"}
               for folder in ("data", "original%2Fdata")]
    assert check_requests([probe, *folders]) == []
    assert len(check_requests([missing, gated, unknown])) == 3


def served_sha(root, repo_type: str, repo_id: str, revision: str) -> str:
    return hubserver.load_repos(root)[(repo_type, repo_id)].find(revision).sha


# The CI part: outputs that reach every kind the paper config declares (see the docstring below)
CI_OUTPUTS = [
    "results/eval/mistral_7b/zero_shot/pubmed_qa.json",
    "results/eval/mistral_7b/tapt/pubmed_qa.json",
    "results/eval/mistral_7b/bonito/pubmed_qa.json",
    "results/eval/llama2_7b_p3/bonito/squadshifts_nyt.json",
    "results/eval/mistral_7b_instruct/zero_shot/squadshifts_nyt.json",
    "results/generators/bonito/parse_check.json",
]
CI_MODELS = ["mistral_7b", "llama2_7b", "llama2_7b_p3", "mistral_7b_instruct"]
CI_SECONDS = 600  # the cap on 2 cores


def run_rehearsal(workdir) -> tuple[int, str, object]:
    """The CI part through `snakemake --profile slurm` on the one-node Slurm, or the local
    executor where no Slurm is reachable (the reason printed), with this process's environment.
    (status, output, the Slurm jobs or None)."""
    from slurm_cluster import (PARTITION, run_snakemake_on_slurm, slurm_jobs, unavailable_reason,
                               write_test_profile)

    configfiles = [OVERLAY, CI_OVERLAY]
    reason = unavailable_reason()
    if reason and os.environ.get("BONITO_REQUIRE_SLURM") == "1":
        pytest.fail(f"BONITO_REQUIRE_SLURM=1 but {reason}")
    if reason is None:
        gres = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%G"], capture_output=True, text=True).stdout
        if max(map(int, re.findall(r"gpu(?::\w+)?:(\d+)", gres)), default=0) < 4:
            pytest.fail(f"partition {PARTITION} has GPUs {gres.strip()!r}: Bonito training asks for 4 "
                        "(.ci/local_slurm.sh declares 4 fake ones; restart it)")
        profile = write_test_profile(workdir.parent / "profile", configfiles)
        result = run_snakemake_on_slurm(workdir, CI_OUTPUTS, snakefile=REPO / "Snakefile", profile=profile,
                                        timeout=CI_SECONDS)
        return result.returncode, result.output, slurm_jobs(workdir)
    print(f"no Slurm ({reason}): the rehearsal runs on the local executor")
    done = subprocess.run(["timeout", "-s", "KILL", str(CI_SECONDS), sys.executable, "-m", "snakemake", "--cores", "2",
                           "--snakefile", str(REPO / "Snakefile"), "-d", str(workdir), *CI_OUTPUTS,
                           "--configfile", *map(str, configfiles)],  # last: it takes every argument after it
                          cwd=REPO, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr, None


@pytest.mark.slow  # about 25 jobs, capped at 10 minutes
def test_rehearsal_ci(local_hub, tmp_path, monkeypatch):
    """Coverage, each checked below:
    - Hub layouts: gated safetensors shards (token from the environment, and the deliberate
      refusal without one), a P3 adapter as a pickle in adapter_model/, save_to_disk folders on main
      (bonito-experiment, -eval), Parquet on main by config name, the conversion branch by folder
      (single config, several configs, the 2023 file names): the last three through the ctga
      download of every P3 dataset config.yaml declares;
    - target kinds: pretrained (mistral_7b), P3 adapter from a .bin subfolder (llama2_7b_p3),
      instruction-tuned (mistral_7b_instruct);
    - sources: zero_shot, tapt and the Bonito generator trained here (the paper config declares no
      published generator; bonito-v1's .bin shards and refs/pr/5 are tests/test_hub.py's);
    - evaluation paths: rank classification (pubmed_qa) and vLLM greedy generation with a LoRA
      (squadshifts_nyt), vLLM generation of synthetic tasks;
    - one Bonito training job with 4 processes (4 gloo processes on CPU; 4 fake GPUs on Slurm);
    - every Hub request answered as the Hub answers it; every revision read by its commit sha."""
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    start = len(local_hub.requests())
    refused = local_hub.run(["models", "--name", "mistral_7b", "--spec", json.dumps(paper["models"]["mistral_7b"]),
                             "--out", tmp_path / "refused", "--manifest", tmp_path / "refused.json"],
                            tmp_path / "hf-refused")
    assert refused.returncode != 0 and "gated repository; set HF_TOKEN" in refused.stderr
    refusals = local_hub.requests()[start:]
    assert {(r["status"], r.get("error")) for r in refusals if r["status"] >= 400} == {(401, "GatedRepo")}

    start = len(local_hub.requests())
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {k: v for k, v in local_hub.env(tmp_path / "hf", token=True).items()
           if k.startswith(("HF_", "PYTHONPATH"))}
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # what Snakemake and its jobs get; restored after the test
    status, output, jobs = run_rehearsal(workdir)
    assert status == 0, output[-6000:]
    for path in CI_OUTPUTS:
        assert (workdir / path).exists(), path

    # every request served; every dataset and model file read at a commit sha, never a branch
    records = local_hub.requests()[start:]
    print(endpoint_table(records))
    assert not check_requests(records)
    for r in records:
        match = re.search(r"/(?:resolve|tree|paths-info)/([^/]+)", r["path"])
        if match:
            assert re.fullmatch(r"[0-9a-f]{40}", match.group(1)), r
    paths = [r["path"] for r in records if r["status"] < 400]
    for layout in (r"^/mistralai/Mistral-7B-v0.1/resolve/\w+/model-00001-of-00002\.safetensors$",  # gated
                   r"^/BatsResearch/Llama-2-7b-hf-P3/resolve/\w+/adapter_model/adapter_model\.bin$",
                   r"/datasets/BatsResearch/bonito-experiment-eval/resolve/\w+/pubmed_qa/data-00000-of-00001\.arrow$",
                   r"/datasets/aps/super_glue/resolve/\w+/boolq/train-00000-of-00001\.parquet$",
                   r"/datasets/QAngaroo/wiki_hop/resolve/\w+/original/train/0000\.parquet$",
                   r"/datasets/EdinburghNLP/xsum/resolve/\w+/default/xsum-train\.parquet$"):
        assert any(re.search(layout, p) for p in paths), layout

    # each manifest names the commit its revision pointed at
    results = workdir / "results"
    for name in CI_MODELS:
        hub = json.loads((results / "models" / f"{name}.manifest.json").read_text())["hub"]
        assert hub["sha"] == served_sha(local_hub.root, "model", hub["id"], hub["revision"]), name
    for kind, dataset in (("unannotated", "pubmed_qa"), ("test", "squadshifts_nyt")):
        hub = json.loads((results / kind / f"{dataset}.manifest.json").read_text())["hub"]
        assert hub["sha"] == served_sha(local_hub.root, "dataset", hub["id"], hub["revision"]), (kind, dataset)
    downloads = json.loads((results / "ctga" / "downloads.json").read_text())["hub"]
    assert set(downloads) == set(paper["ctga"]["p3_datasets"])
    for name, hub in downloads.items():
        assert hub["sha"] == served_sha(local_hub.root, "dataset", hub["id"], hub["revision"]), name

    # Bonito training ran as 4 processes; on Slurm, as one job holding 4 GPUs
    training = json.loads((results / "generators/bonito/adapter.manifest.json").read_text())
    assert training["processes"] == 4, training
    if jobs is not None:
        [train] = [j for j in jobs if j.rule == "train_bonito"]
        assert (train.gpus_requested, train.gpus_allocated) == (4, 4), train


def _job(rule: str, jobid: int, gpu: int | None) -> str:
    resources = f"tmpdir=/tmp, gpu={gpu}, runtime=30" if gpu else "tmpdir=/tmp"
    return (f"[Mon Dec  7 22:15:47 2026]\nlocalrule {rule}:\n    input: a\n    jobid: {jobid}\n"
            f"    wildcards: dataset=pubmed_qa\n    resources: {resources}\nShell command: python -m x\n")


def _finished(rule: str, jobid: int) -> str:
    return f"[Mon Dec  7 22:16:27 2026]\nFinished jobid: {jobid} (Rule: {rule})\n3 of 17 steps (18%) done\n"


def test_gpu_use_is_read_from_snakemakes_log():
    one_at_a_time = (_job("evaluate", 3, 1) + _job("baselines", 11, None) + _finished("evaluate", 3)
                     + _job("generate", 8, 1) + _finished("baselines", 11) + _finished("generate", 8))
    assert gpu_use(one_at_a_time) == GpuUse(jobs=2, peak=1, at_peak=("evaluate (jobid 3)",))
    overlapping = _job("evaluate", 3, 1) + _job("generate", 8, 1) + _finished("evaluate", 3) + _finished("generate", 8)
    assert gpu_use(overlapping) == GpuUse(2, 2, ("evaluate (jobid 3)", "generate (jobid 8)"))
    # a failed job gives its GPU back: the next one does not overlap it
    failed = (_job("generate", 8, 1) + "[Mon Dec  7 22:13:38 2026]\nError in rule generate:\n    message: None\n"
              "    jobid: 8\n    input: a\nExiting because a job execution failed.\n" + _job("adapt", 7, 1))
    assert gpu_use(failed) == GpuUse(2, 1, ("generate (jobid 8)",))
    assert gpu_use(_job("train_bonito", 2, 4) + _finished("train_bonito", 2)).peak == 4
    assert gpu_use(_job("baselines", 11, None)) == GpuUse(0, 0, ())


def test_the_workstation_rehearsal_changes_only_sizes_and_the_listed_differences():
    """The workstation's rehearsal (config/rehearsal.yaml over config/workstation.yaml, then the CI
    cut) runs the workstation's settings: its generator, backends, quantization and each job's
    GPU count; only sizes, the listed differences and the cut's `run` change."""
    workstation = load_config(REPO / "config.yaml", WORKSTATION, WORKSTATION_CI_OVERLAY)
    rehearsed = load_config(REPO / "config.yaml", WORKSTATION, OVERLAY, WORKSTATION_CI_OVERLAY)
    before, after = dict(leaves(workstation)), dict(leaves(rehearsed))
    assert before.keys() == after.keys()
    changed = {".".join(map(str, path)) for path in before if before[path] != after[path]
               and not (path[-1] in SIZE_KEYS and path[0] != "resources"
                        or path[0] == "resources" and path[-1] in RESOURCE_SIZES)}
    # the workstation keeps vLLM eager as the rehearsal does (a 24 GB GPU's choice): fewer differences
    assert changed <= set(ALLOWED_DIFFERENCES) and {"scale", "device"} <= changed, changed
    full = load_config(REPO / "config.yaml", WORKSTATION)
    assert rehearsed["run"] == {**full["run"], "datasets": ["pubmed_qa"], "sources": ["bonito_v1"]}
    assert rehearsed["generators"]["bonito_v1"] == full["generators"]["bonito_v1"]
    assert all(rehearsed["resources"][stage]["gpus"] == 1 for stage in ("generate", "adapt", "evaluate"))


@pytest.mark.slow  # 17 jobs, about 2 minutes on 2 idle cores
def test_workstation_rehearsal_ci(tmp_path):
    """`--profile workstation` with config/workstation.yaml, shrunk and cut, through the command
    `make rehearsal-workstation` runs (a fresh local Hub, its requests checked): the published
    generator downloaded as the Hub has it (pickled shards only) and converted to safetensors, the
    gated target with the token, one vLLM generation, one Q-LoRA adaptation, the evaluations, the
    tables and both cards; no ctga and no Bonito training; every GPU job requests one `gpu`, as
    the workstation config says, and Snakemake's log shows no two of them running at once under
    the profile's `gpu=1`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    configs = [p for path in (WORKSTATION, OVERLAY, WORKSTATION_CI_OVERLAY) for p in ("--configfile", str(path))]
    done = subprocess.run([sys.executable, "-m", "bonito_repro.localhub", "rehearse", str(tmp_path), *configs,
                           "--", "--profile", "workstation", "--cores", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=CI_SECONDS)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    results = tmp_path / "work" / "results"

    # the published generator: its pickled shards read at main's commit, converted on download
    records = [json.loads(line) for line in (tmp_path / "hub" / "requests.jsonl").read_text().splitlines()]
    assert not check_requests(records)
    sha = served_sha(tmp_path / "hub" / "repos", "model", "BatsResearch/bonito-v1", "main")
    paths = [r["path"] for r in records if r["status"] < 400]
    assert f"/BatsResearch/bonito-v1/resolve/{sha}/pytorch_model-00001-of-00002.bin" in paths
    assert json.loads((results / "models" / "bonito_v1.manifest.json").read_text())["hub"]["sha"] == sha
    weights = {p.suffix for p in (results / "models" / "bonito_v1").iterdir()}
    assert ".safetensors" in weights and ".bin" not in weights
    assert any(p.startswith("/mistralai/Mistral-7B-v0.1/resolve/") for p in paths)  # gated, with the token

    # one generation (vLLM), one adaptation (nf4 Q-LoRA), two evaluations, the tables and cards
    generation = json.loads((results / "synthetic" / "bonito_v1" / "pubmed_qa.manifest.json").read_text())
    assert generation["params"]["backend"] == "vllm" and generation["counts"]["kept"] > 0, generation["counts"]
    for source in ("zero_shot", "bonito_v1"):
        assert (results / "eval" / "mistral_7b" / source / "pubmed_qa.json").exists(), source
    assert (results / "paper" / "main_table.md").exists()
    for card in (results / "synthetic" / "bonito_v1" / "pubmed_qa.hub", results / "adapters" / "mistral_7b" /
                 "bonito_v1" / "pubmed_qa.hub"):
        assert (card / "README.md").exists(), card
    assert not (results / "ctga").exists() and not (results / "generators").exists()

    # GPU jobs one at a time under gpu=1, read from Snakemake's log
    log = snakemake_log(tmp_path / "work", 0)
    text = log.read_text()
    assert 'Provided resources: gpu=Resource("gpu", 1)' in text
    use = gpu_use(text)
    assert (use.jobs, use.peak) == (4, 1), use  # generate, adapt and the two evaluations
    assert "4 GPU jobs; at most 1 gpu held at once" in done.stdout
