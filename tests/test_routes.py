"""Three ways to the paper's main table (README): the full pipeline (config.yaml), from the
published bonito-v1 (config/from_bonito_v1.yaml) and from the released synthetic sets
(config/from_released_sets.yaml), each checked on the paper DAG's dry run."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from conftest import REPO, snakemake
from test_workflow import dry_run_jobs


def paper_dry_run(*overlays: str) -> tuple[Counter, str]:
    args = [a for overlay in overlays for a in ("--configfile", overlay)]
    result = snakemake("-n", "-p", "--profile", "slurm", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    return Counter(job["rule"] for job in dry_run_jobs(output)), output


@pytest.mark.dag
def test_published_bonito_is_a_generator_without_training():
    counts, output = paper_dry_run("config/from_bonito_v1.yaml")
    assert counts["train_bonito"] == 0 and counts["ctga"] == 0 and counts["parse_check"] == 0
    assert counts["generate"] == 7 and counts["adapt"] == 70  # 5 targets x 7 datasets x (tapt, bonito_v1)
    commands = re.findall(r"-m bonito_repro generate .*", output)
    assert len(commands) == 7
    for command in commands:  # the full model's weights, downloaded and converted by prepare_model
        assert "--model results/models/bonito_v1 " in command and "--adapter" not in command
    assert "--name bonito_v1" in output


@pytest.mark.dag
def test_released_sets_skip_training_and_generation():
    counts, output = paper_dry_run("config/from_released_sets.yaml")
    assert counts["train_bonito"] == counts["generate"] == counts["ctga"] == 0
    assert counts["published_tasks"] == 7 and counts["adapt"] == 70
    assert '"config": "bonito_pubmed_qa"' in output




@pytest.mark.dag
def test_every_generator_kind_generates_for_every_dataset_at_local_scale(tmp_path):
    """`make generators`: Bonito, the prompted generator and backtranslation on all seven
    datasets, to the quality profile; nothing adapted on the new sets."""
    result = snakemake("-n", "results/paper/quality_profile.md", "--profile", "local", "-d", str(tmp_path),
                       "--configfile", str(REPO / "config/local.yaml"), str(REPO / "config/every_generator.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    generated = Counter(job["wildcards"]["generator"] for job in jobs if job["rule"] in ("generate", "backtranslate"))
    assert generated == {"bonito": 7, "mistral_instruct": 7, "backtranslation": 7}, generated
    counts = Counter(job["rule"] for job in jobs)
    assert counts["train_backtranslation"] == 2 and counts["quality_profile"] == 1 and counts["adapt"] == 0
