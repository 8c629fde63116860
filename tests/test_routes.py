"""Three ways to the paper's main table (docs/cluster.md): the full pipeline (config.yaml), from the
published bonito-v1 (config/from_bonito_v1.yaml) and from the released synthetic sets
(config/from_released_sets.yaml), each checked on the paper DAG's dry run."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from bonito_repro.core.config import load_config
from bonito_repro.core.sources import TAPT
from conftest import REPO, dry_run_jobs, snakemake


def paper_dry_run(overlay: str) -> tuple[Counter, str, dict]:
    """Jobs by rule and the printed output of the paper DAG's dry run under ``overlay``, and the
    resolved config the counts are derived from."""
    result = snakemake("-n", "-p", "--profile", "slurm", "--configfile", overlay)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    return Counter(job.rule for job in dry_run_jobs(output)), output, load_config(REPO / "config.yaml", REPO / overlay)


def adaptations(config: dict) -> int:
    """Every target adapted on every dataset with every source."""
    return len(config["targets"]) * len(config["datasets"]) * len(config["run"]["sources"])


@pytest.mark.dag
def test_published_bonito_is_a_generator_without_training():
    counts, output, config = paper_dry_run("config/from_bonito_v1.yaml")
    assert config["run"]["sources"] == [TAPT, "bonito_v1"]
    assert counts["train_bonito"] == 0 and counts["ctga"] == 0 and counts["parse_check"] == 0
    assert counts["generate"] == len(config["datasets"]) and counts["adapt"] == adaptations(config)
    commands = re.findall(r"-m bonito_repro generate .*", output)
    assert len(commands) == len(config["datasets"])
    for command in commands:  # the full model's weights, downloaded and converted by prepare_model
        assert "--model results/models/bonito_v1 " in command and "--adapter" not in command
    assert "--name bonito_v1" in output


@pytest.mark.dag
def test_released_sets_skip_training_and_generation():
    counts, output, config = paper_dry_run("config/from_released_sets.yaml")
    assert config["run"]["sources"] == [TAPT, "bonito_released"]
    assert counts["train_bonito"] == counts["generate"] == counts["ctga"] == 0
    assert counts["published_tasks"] == len(config["datasets"]) and counts["adapt"] == adaptations(config)
    assert '"config": "bonito_pubmed_qa"' in output


@pytest.mark.dag
def test_every_generator_kind_generates_for_every_dataset_at_local_scale(tmp_path):
    """`make generators`: Bonito, the prompted generator and backtranslation on all seven
    datasets, to the quality profile; nothing adapted on the new sets."""
    overlays = [REPO / "config/local.yaml", REPO / "config/every_generator.yaml"]
    result = snakemake("-n", "results/paper/quality_profile.md", "--profile", "local", "-d", str(tmp_path),
                       "--configfile", *map(str, overlays))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    config = load_config(REPO / "config.yaml", *overlays)
    generated = Counter(job.wildcards["generator"] for job in jobs if job.rule in ("generate", "backtranslate"))
    expected = {source: len(config["datasets"]) for source in config["run"]["sources"] if source != TAPT}
    assert set(expected) == {"bonito", "mistral_instruct", "backtranslation"} and generated == expected, generated
    counts = Counter(job.rule for job in jobs)
    assert counts["train_backtranslation"] == 2 and counts["quality_profile"] == 1 and counts["adapt"] == 0


ROUTE_GENERATORS = {"config/from_bonito_v1.yaml": "bonito_v1", "config/from_released_sets.yaml": "bonito_released"}


@pytest.mark.dag
@pytest.mark.parametrize("overlay", sorted(ROUTE_GENERATORS))
def test_every_target_of_a_published_route_trains_no_bonito(overlay):
    """The default target and the ablations under a published route: the route's generator stands
    wherever config.yaml names `bonito`, so nothing builds ctga-v1 or trains Bonito (about 400
    GPU-hours), in one dry run of both targets."""
    generator = ROUTE_GENERATORS[overlay]
    result = snakemake("all", "ablations", "-n", "--profile", "slurm", "--configfile", overlay)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    counts = Counter(job.rule for job in jobs)
    assert counts["train_bonito"] == counts["ctga"] == counts["ctga_download"] == counts["parse_check"] == 0, counts
    assert "bonito" not in {job.wildcards.get("generator") for job in jobs}
    # the size ablation's subsets and the domain ablation's chains are of the route's generator
    assert generator in {job.wildcards["generator"] for job in jobs if job.rule == "subsample"}
    assert any(job.wildcards.get("source") == f"tapt+{generator}" for job in jobs)
    # the generators ablation compares it with config.yaml's alternatives, as it compares Bonito
    # (the released sets' route names them once)
    base = load_config(REPO / "config.yaml")["ablations"]["generators"]["generators"]
    routed = load_config(REPO / "config.yaml", REPO / overlay)["ablations"]["generators"]["generators"]
    assert routed == list(dict.fromkeys(generator if g == "bonito" else g for g in base))
