"""The rehearsal (config/rehearsal.yaml): config.yaml's DAG, shrunk, on CPU, fed by the local Hub
through the real huggingface_hub and datasets calls.

Fast: the overlay changes sizes only, apart from the differences its header lists (the same
as ALLOWED_DIFFERENCES here), and the local Hub serves every repository the paper config names.
Slow: the rehearsal's CI part on the one-node Slurm (or the local executor where no Slurm is
reachable, with the reason printed); its coverage is named in the test's docstring.
The full rehearsal (every target x dataset x source) is `make rehearsal`, outside CI.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from bonito_repro.config import load_scale
from bonito_repro.localhub import server as hubserver
from bonito_repro.localhub.rehearsal import check_requests, endpoint_table
from conftest import REPO

OVERLAY = REPO / "config" / "rehearsal.yaml"
CI_OVERLAY = REPO / "tests" / "rehearsal_ci.yaml"
HUB_SPEC = yaml.safe_load((REPO / "src/bonito_repro/data/local_hub.yaml").read_text())
# What the rehearsal changes besides sizes, each with its value (the overlay's header lists the same)
ALLOWED_DIFFERENCES = {"scale": "rehearsal", "environments.vllm": ".venv-vllm/bin/python"}
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
            assert value == ALLOWED_DIFFERENCES[dotted], dotted
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


def test_request_check_tells_probes_from_failures():
    probe = {"method": "HEAD", "endpoint": "resolve", "status": 404, "error": "EntryNotFound",
             "path": "/datasets/allenai/cosmos_qa/resolve/" + "a" * 40 + "/cosmos_qa.py"}
    missing = {**probe, "path": probe["path"].replace("cosmos_qa.py", "cosmos_qa/train/0000.parquet")}
    gated = {**probe, "status": 401, "error": "GatedRepo"}
    unknown = {"method": "GET", "endpoint": None, "status": 404, "path": "/api/datasets/a/b/parquet"}
    assert check_requests([probe]) == []
    assert len(check_requests([missing, gated, unknown])) == 3


def served_sha(root, repo_type: str, repo_id: str, revision: str) -> str:
    return hubserver.load_repos(root)[(repo_type, repo_id)].find(revision).sha
