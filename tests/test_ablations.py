"""The ablations: naming, nested subsets, aliases of the full set, the cells each figure reads, the
jobs they add, and (slow) the smoke DAG drawing every figure from the evaluation outputs."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bonito_repro.workflow import ablations
from bonito_repro.reporting.ablation_figures import write_figure
from bonito_repro.core.sources import chain_source, parse_size_source, size_source
from bonito_repro.workflow.ablations import ablation_cells, ablation_jobs, eval_path, nested_subset, transfer_pairs
from bonito_repro.core.config import ConfigError, load_scale, merge, read_yaml, validate
from bonito_repro.core.io import read_json, write_json, write_parquet
from conftest import REPO, dry_run_jobs, snakemake


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_scale("paper", REPO)


def test_source_names_round_trip():
    assert size_source("bonito", 1000) == "bonito.n1000"
    assert parse_size_source("bonito.n1000") == ("bonito", 1000)
    assert parse_size_source("zephyr_beta.v2.n50") == ("zephyr_beta.v2", 50)
    assert parse_size_source("bonito") is None and parse_size_source("bonito.n0") is None
    assert chain_source("bonito") == "tapt+bonito"
    assert eval_path("t", "bonito", "pubmed_qa", "pubmed_qa") == "results/eval/t/bonito/pubmed_qa.json"
    assert eval_path("t", "bonito", "pubmed_qa", "privacy_qa") == "results/eval/t/bonito/pubmed_qa/on_privacy_qa.json"


def test_subsets_are_nested_and_a_size_at_the_length_is_the_whole_set():
    small, big = nested_subset(1000, 10, seed=42), nested_subset(1000, 100, seed=42)
    assert len(small) == 10 and len(big) == 100 and set(small) <= set(big)
    assert small == sorted(small)  # file order
    assert nested_subset(7, 7, seed=1) == nested_subset(7, 50, seed=1) == list(range(7))
    assert nested_subset(1000, 10, seed=1) != small


def test_subsample_cli_counts_rows_and_flags_the_alias(tmp_path):
    rows = tmp_path / "set.parquet"
    write_parquet(pd.DataFrame({"input": [f"q{i}" for i in range(5)], "output": ["a"] * 5}), rows)
    for size, alias in ((3, False), (5, True), (9, True)):
        out, manifest = tmp_path / f"n{size}.parquet", tmp_path / f"n{size}.json"
        assert ablations.main(["subsample", "--rows", str(rows), "--size", str(size), "--seed", "42",
                               "--out", str(out), "--manifest", str(manifest)]) == 0
        record = read_json(manifest)
        assert record["alias_of_full_set"] is alias
        assert record["counts"]["kept"] == min(size, 5) == len(pd.read_parquet(out))
        assert record["counts"]["kept"] + sum(record["drops"].values()) == record["counts"]["rows_in"]


def _unless_alias(tmp_path: Path, alias: bool) -> Path:
    manifest = tmp_path / "subset.json"
    write_json({"alias_of_full_set": alias, "counts": {"size": 9, "rows_in": 5}}, manifest)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "weights").write_text("w")
    write_json({"mean": 50.0, "source": "bonito"}, tmp_path / "full.json")
    ran = tmp_path / "ran"
    command = [sys.executable, "-m", "bonito_repro", "ablations", "unless-alias", "--subset", str(manifest),
               "--copy", str(tmp_path / "full"), str(tmp_path / "own"),
               "--copy", str(tmp_path / "full.json"), str(tmp_path / "own.json"),
               "--", sys.executable, "-c", f"open({str(ran)!r}, 'w').write('trained')"]
    subprocess.run(command, check=True, cwd=REPO)
    return tmp_path


def test_an_alias_copies_the_full_set_outputs_and_runs_nothing(tmp_path):
    out = _unless_alias(tmp_path, alias=True)
    assert not (out / "ran").exists()
    assert (out / "own" / "weights").read_text() == "w"
    assert read_json(out / "own.json") == {"mean": 50.0, "source": "bonito", "alias_of": str(out / "full.json")}


def test_a_true_subset_runs_its_command(tmp_path):
    out = _unless_alias(tmp_path, alias=False)
    assert (out / "ran").read_text() == "trained" and not (out / "own").exists()


def test_an_alias_copy_killed_half_way_leaves_no_torn_output(tmp_path):
    """SIGKILL while the alias copies a full-set adapter folder: the size point's folder is absent
    (its copy went to a temporary beside it), and the rerun copies it whole and removes the
    killed copy's temporary."""
    manifest, full, own = tmp_path / "subset.json", tmp_path / "full", tmp_path / "own"
    write_json({"alias_of_full_set": True, "counts": {"size": 9, "rows_in": 5}}, manifest)
    full.mkdir()
    for i in range(3000):  # enough files that the copy is caught half-way
        (full / f"shard-{i:05d}").write_text("w" * 100)
    command = [sys.executable, "-m", "bonito_repro", "ablations", "unless-alias", "--subset", str(manifest),
               "--copy", str(full), str(own), "--", "false"]
    copy = subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(p.is_dir() and any(p.iterdir()) for p in tmp_path.iterdir() if p.name != "full"):
            assert copy.poll() is None and time.monotonic() < deadline, "the copy ended before it was caught"
            time.sleep(0.001)
    finally:
        os.kill(copy.pid, signal.SIGKILL)  # only the process this test started
        copy.wait()
    assert not own.exists() or len(list(own.iterdir())) == 3000, "a torn copy at the declared path"
    subprocess.run(command, check=True, cwd=REPO, stderr=subprocess.DEVNULL)
    assert len(list(own.iterdir())) == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "own", "subset.json"]


def test_an_alias_file_copy_that_fails_half_way_leaves_no_torn_output(tmp_path, monkeypatch):
    manifest, full, own = tmp_path / "subset.json", tmp_path / "full.parquet", tmp_path / "own.parquet"
    write_json({"alias_of_full_set": True, "counts": {"size": 9, "rows_in": 5}}, manifest)
    full.write_bytes(b"x" * 1000)

    def half_copy(src, dst, **kwargs):
        Path(dst).write_bytes(Path(src).read_bytes()[:500])
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(shutil, "copyfile", half_copy)
    with pytest.raises(OSError):
        ablations.unless_alias(manifest, [(str(full), str(own))], ["false"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.parquet", "subset.json"]


def test_transfer_pairs_stay_within_a_task_type(paper):
    pairs = transfer_pairs(paper)
    assert ("pubmed_qa", "privacy_qa") in pairs and ("contract_nli", "vitaminc") in pairs
    assert ("squadshifts_nyt", "squadshifts_reddit") in pairs
    assert ("pubmed_qa", "contract_nli") not in pairs
    assert len(pairs) == 2 * 2 + 2 * 2 + 3 * 3  # the diagonal included


def test_cells_reuse_the_main_grids_paths(paper):
    size = ablation_cells(paper, "size")
    full = [c for c in size if c.label == "all"]
    assert {c.source for c in full} == {"bonito"}
    assert all(c.eval == f"results/eval/{c.target}/bonito/{c.test_dataset}.json" for c in full)
    assert {c.label for c in size if c.role == "point"} == {"1000", "2000", "5000", "10000", "20000", "50000", "all"}
    assert {c.role for c in size} == {"point", "zero_shot", "tapt"}
    chain = ablation_cells(paper, "chain")
    assert {c.source for c in chain} == {"zero_shot", "tapt", "bonito", "tapt+bonito"}
    # the in-domain cells of the transfer matrix are the main grid's evaluations
    diagonal = [c for c in ablation_cells(paper, "transfer") if c.train_dataset == c.test_dataset]
    assert all(c.eval == f"results/eval/{c.target}/bonito/{c.test_dataset}.json" for c in diagonal)


def test_the_generators_are_the_listed_ones_or_every_declared_generator(paper):
    listed = {c.label for c in ablation_cells(paper, "generators") if c.role == "point"}
    # Bonito regenerated and released, the generators the authors name (GPT-4, Mistral-Instruct),
    # Zephyr and the released alternative sets; backtranslation labelled beyond the paper
    assert listed == {"bonito", "bonito_released", "gpt4", "mistral_instruct", "zephyr_beta",
                      "mistral_instruct_published", "zephyr_beta_published", "backtranslation (beyond the paper)"}
    config = copy.deepcopy(paper)
    config["ablations"]["generators"]["generators"] = None
    config["generators"] = {"bonito": paper["generators"]["bonito"], "other": paper["generators"]["bonito"]}
    labels = {c.label for c in ablation_cells(config, "generators") if c.role == "point"}
    assert labels == {"bonito", "other"}


def test_jobs_each_ablation_adds_are_counted_once(paper):
    counts = ablation_jobs(paper)
    targets, datasets = 2, len(paper["run"]["datasets"])
    sizes = paper["ablations"]["size"]["sizes"]
    matched = paper["ablations"]["generators"]["matched_n"]
    generators = len(paper["ablations"]["generators"]["generators"])
    # the main grid trains bonito's full sets; each other generator's full set and matched-N point
    # are the ablation's; bonito's matched-N point is a size point too, counted once, here
    assert counts["generators"]["adapt"] == targets * datasets * (1 + 2 * (generators - 1))
    assert counts["size"]["adapt"] == targets * datasets * len([n for n in sizes if n != matched])
    off_diagonal = len(transfer_pairs(paper)) - datasets
    # the chain trains; the transfer matrix only evaluates (common-N adapters: the matched-N ones)
    assert counts["domain"]["adapt"] == targets * datasets
    assert counts["domain"]["evaluate"] == targets * (datasets + 2 * off_diagonal)


def _config_with(**ablation_changes) -> dict:
    base = read_yaml(REPO / "config.yaml")
    return merge(base, {"ablations": ablation_changes})


def test_ablations_cover_what_run_selects_and_name_declared_generators():
    config = validate(merge(_config_with(size={"targets": ["mistral_7b", "nobody"]},
                                         domain={"transfer_datasets": ["pubmed_qa", "privacy_qa", "imdb"]}),
                            {"run": {"datasets": ["pubmed_qa", "privacy_qa"]}}))
    # an overlay running other datasets (one's own corpus) leaves the rest out instead of failing
    assert {c.target for c in ablation_cells(config, "size") if c.role == "point"} == {"mistral_7b"}
    assert {c.test_dataset for c in ablation_cells(config, "transfer")} == {"pubmed_qa", "privacy_qa"}
    with pytest.raises(ConfigError, match=r"ablations: generators \['nope'\] are not declared"):
        validate(_config_with(generators={"generators": ["nope"]}))


def test_a_generator_named_like_a_size_point_is_refused():
    config = merge(read_yaml(REPO / "config.yaml"), {"generators": {"bonito.n5": {"kind": "bonito", "base": "mistral_7b"}},
                                                     "run": {"sources": ["tapt", "bonito", "bonito.n5"]}})
    with pytest.raises(ConfigError, match=r"generators\.bonito\.n5: names ending in \.nN"):
        validate(config)


def _fake_results(tmp_path: Path, cells, kept: dict[str, int]) -> None:
    """Evaluation JSONs and manifests at the cells' paths, with distinct numbers."""
    for i, cell in enumerate(cells):
        write_json({"mean": 10.0 + i, "ci": [5.0 + i, 15.0 + i], "n_examples": 8}, tmp_path / cell.eval)
        if cell.adapter_manifest:
            write_json({"steps": 3 + i, "effective_batch": 4}, tmp_path / cell.adapter_manifest)
        if cell.tasks_manifest:
            generator = cell.source.split(".n")[0].removeprefix("tapt+")
            n = kept.get(generator, 20)
            write_json({"counts": {"kept": n, "generated": 30}}, tmp_path / cell.tasks_manifest)


@pytest.mark.parametrize("figure", sorted(ablations.FIGURES))
def test_each_figure_reads_its_numbers_from_the_evaluations(tmp_path, monkeypatch, paper, figure):
    cells = ablation_cells(paper, figure)
    _fake_results(tmp_path, cells, kept={})
    monkeypatch.chdir(tmp_path)
    params = {"scale": "local", "dpi": 40, "decimals": 1, "one_epoch_below": 160000, "max_steps": 10000,
              "matched_n": 10000, "common_n": 10000}
    data = write_figure(figure, [c.__dict__ for c in cells], params, Path("f.png"), Path("f.csv"), Path("f.md"))
    assert Path("f.png").stat().st_size > 0
    csv = pd.read_csv("f.csv")
    assert len(csv) == len(cells)
    for row in csv.itertuples():
        assert row.f1 == read_json(row.eval)["mean"]
    assert "embedded demo data" in Path("f.md").read_text().lower()
    if figure.startswith("transfer"):  # datasets of another task type are blank, not nan
        assert "nan" not in Path("f.md").read_text()
    if figure == "chain":  # the chain's steps: TAPT's and its own
        assert cells[-1].source == "tapt+bonito"
        own = read_json(cells[-1].adapter_manifest)["steps"]
        tapt = read_json(f"results/adapters/{cells[-1].target}/tapt/{cells[-1].train_dataset}.manifest.json")["steps"]
        assert data.iloc[-1]["steps"] == own + tapt
    if figure == "size":  # examples seen: steps x batch, at most the set's tasks
        points = data[data["role"] == "point"]
        assert (points["examples_seen"] == (points["steps"] * 4).clip(upper=points["tasks"])).all()
        assert "Steps grow with N" in Path("f.md").read_text()


@pytest.mark.parametrize("figure", sorted(ablations.FIGURES))
def test_each_figure_and_caption_says_it_is_this_projects_reading(tmp_path, monkeypatch, figure):
    """No available source gives the paper's ablation sizes, targets or designs: the figure's
    title, its table's caption, the report's caption and the jobs listing say whose they are."""
    from bonito_repro.reporting import ablation_figures

    local = load_scale("local", REPO)
    cells = ablation_cells(local, figure) or ablation_cells(load_scale("paper", REPO), figure)
    _fake_results(tmp_path, cells, kept={})
    monkeypatch.chdir(tmp_path)
    titles = []
    monkeypatch.setattr(ablation_figures, "_save", lambda fig, path, dpi: titles.append(fig._suptitle.get_text()))
    params = {"scale": "local", "dpi": 40, "decimals": 1, "one_epoch_below": 16, "max_steps": 4,
              "matched_n": 16, "common_n": 16}
    write_figure(figure, [c.__dict__ for c in cells], params, Path("f.png"), Path("f.csv"), Path("f.md"))
    reading = "This project's reading of the paper's ablation"
    assert len(titles) == 1 and reading in titles[0]
    assert reading in Path("f.md").read_text().split("|")[0]  # the caption above the table
    assert "**This project's reading of the paper's ablation:**" in (REPO / "report/ablation.rst").read_text()


def test_the_jobs_listing_says_the_ablations_are_this_projects_reading(capsys):
    assert ablations.main(["jobs", "--scale", "local", "--root", str(REPO)]) == 0
    assert capsys.readouterr().out.startswith("This project's reading of the paper's ablation")


def test_an_empty_set_shows_no_tasks_instead_of_a_score(tmp_path, monkeypatch):
    config = copy.deepcopy(load_scale("paper", REPO))
    config["generators"]["empty"] = config["generators"]["bonito"]
    config["ablations"]["generators"]["generators"] = ["bonito", "empty"]
    cells = ablation_cells(config, "generators")
    _fake_results(tmp_path, cells, kept={"empty": 0})
    for cell in cells:  # an empty set has no evaluation at all
        if cell.source == "empty":
            (tmp_path / cell.eval).unlink()
    monkeypatch.chdir(tmp_path)
    params = {"scale": "paper", "dpi": 40, "decimals": 1, "one_epoch_below": 1, "max_steps": 1,
              "matched_n": 1, "common_n": 1}
    write_figure("generators", [c.__dict__ for c in cells], params, Path("f.png"), Path("f.csv"), Path("f.md"))
    table = Path("f.md").read_text()
    assert "no tasks (0 of 30 kept)" in table
    assert "| empty " in table and "--" in table  # no average over fewer datasets


def test_a_null_n_turns_off_its_matched_variant_and_only_its_jobs(paper):
    config = copy.deepcopy(paper)
    config["ablations"]["domain"]["common_n"] = None
    assert ablations.figures_of(config, "domain") == ["chain", "transfer"]
    assert ablations.figures_of(config, "generators") == ["generators", "generators_matched"]
    before, after = ablation_jobs(paper), ablation_jobs(config)
    assert after["generators"] == before["generators"] and after["size"] == before["size"]
    assert after["domain"]["evaluate"] < before["domain"]["evaluate"]
    config["ablations"]["generators"]["matched_n"] = None
    assert "generators_matched" not in ablations.figures_of(config)
    assert ablations.figures_of(load_scale("local", REPO)) == [f for f in ablations.FIGURES if f != "transfer_common"]


# --- the workflow


@pytest.mark.dag
def test_paper_dry_run_lists_every_ablation_job_once_with_resources(paper):
    result = snakemake("-n", "--profile", "slurm", "all", "ablations")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    keys = [(j.rule, tuple(sorted(j.wildcards.items()))) for j in jobs]
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    counts = Counter(j.rule for j in jobs)
    main_adapt = len(paper["targets"]) * len(paper["datasets"]) * len(paper["run"]["sources"])
    added = ablation_jobs(paper)
    assert counts["adapt"] == main_adapt + sum(c["adapt"] for c in added.values())
    assert counts["subsample"] == sum(c["subsample"] for c in added.values())
    evaluations = sum(counts[r] for r in ("evaluate", "evaluate_generation", "evaluate_transfer",
                                          "evaluate_transfer_generation"))
    main_eval = len(paper["targets"]) * len(paper["datasets"]) * (1 + len(paper["run"]["sources"]))
    assert evaluations == main_eval + sum(c["evaluate"] for c in added.values())
    for job in jobs:
        if job.rule in ("adapt", "evaluate_transfer", "evaluate_transfer_generation"):
            assert int(job.resources["gpu"]) == 1 and int(job.resources["runtime"]) > 0, job
    assert counts["ablation_figure"] == len(ablations.figures_of(paper)) == len(ablations.FIGURES)


@pytest.mark.dag
def test_one_ablation_target_requests_only_its_figures():
    result = snakemake("-n", "ablation_size", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    figures = [j.wildcards["figure"] for j in jobs if j.rule == "ablation_figure"]
    assert figures == ["size"]
    assert not any(j.rule.startswith("evaluate_transfer") for j in jobs)


SMOKE_OVERLAY = {  # a second extractive QA dataset, so that the transfer matrix has off-diagonal cells
    "run": {"datasets": ["pubmed_qa", "squadshifts_nyt", "squadshifts_amazon", "contract_nli"]},
    "ablations": {"generators": {"datasets": ["pubmed_qa", "squadshifts_nyt", "contract_nli"]},
                  "size": {"datasets": ["pubmed_qa", "squadshifts_nyt", "contract_nli"]},
                  "domain": {"chain_datasets": ["pubmed_qa", "squadshifts_nyt", "contract_nli"]}},
}


@pytest.fixture(scope="module")
def smoke_ablations(tmp_path_factory, smoke_run) -> Path:
    """The ablations on a copy of the smoke run: its ctga, generator and main-grid jobs are reused
    (the shared jobs are not rerun), the ablations' own and the extra dataset's jobs run."""
    workdir = tmp_path_factory.mktemp("ablations")
    shutil.copytree(smoke_run, workdir, symlinks=True, dirs_exist_ok=True)
    overlay = workdir / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(SMOKE_OVERLAY))
    result = snakemake("-s", str(REPO / "Snakefile"), "-d", str(workdir), "-c2", "ablations", "--configfile",
                       str(REPO / "config/smoke.yaml"), str(overlay), timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    (workdir / "ablations.log").write_text(result.stdout + result.stderr)
    return workdir


@pytest.mark.slow
def test_smoke_ablations_rerun_none_of_the_main_grids_jobs(smoke_ablations):
    ran = Counter(job.rule for job in dry_run_jobs((smoke_ablations / "ablations.log").read_text()))
    assert ran["adapt"] > 0 and ran["subsample"] > 0
    for shared in ("ctga", "train_bonito", "prepare_model", "parse_check"):
        assert ran[shared] == 0, ran
    # the main grid's jobs on its three datasets were done; only the added dataset's generation runs
    assert ran["generate"] == 1, ran


@pytest.mark.slow
def test_smoke_ablations_draw_every_figure_from_the_evaluations(smoke_ablations):
    out = smoke_ablations / "results" / "paper" / "ablations"
    for figure in ablations.FIGURES:
        assert (out / f"{figure}.png").stat().st_size > 0
        csv = pd.read_csv(out / f"{figure}.csv")
        assert (csv["data"] == "Embedded demo data (smoke scale), not comparable with the paper.").all()
        for row in csv.itertuples():
            assert row.f1 == read_json(smoke_ablations / row.eval)["mean"]
    transfer = pd.read_csv(out / "transfer.csv")
    assert ((transfer["train_dataset"] == "squadshifts_nyt") & (transfer["test_dataset"] == "squadshifts_amazon")).any()


@pytest.mark.slow
def test_smoke_size_point_above_the_set_is_an_alias_not_a_training(smoke_ablations):
    results = smoke_ablations / "results"
    for dataset in ("pubmed_qa", "squadshifts_nyt", "contract_nli"):
        assert read_json(results / f"synthetic/bonito/{dataset}.n64.manifest.json")["alias_of_full_set"]
        full, alias = (read_json(results / f"eval/mistral/{s}/{dataset}.json") for s in ("bonito", "bonito.n64"))
        assert alias.pop("alias_of") == f"results/eval/mistral/bonito/{dataset}.json" and alias == full
        log = (results / f"logs/adapt/mistral/bonito.n64/{dataset}.log").read_text()
        assert "copied the full set's outputs" in log
    size = pd.read_csv(results / "paper/ablations/size.csv")
    assert size[size["label"] == "64"]["alias_of_full_set"].all()


@pytest.mark.slow
def test_smoke_ablations_rerun_no_model_job_after_a_style_edit(smoke_ablations, tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({**SMOKE_OVERLAY, "plots": {"dpi": 55}}))
    result = snakemake("-s", str(REPO / "Snakefile"), "-d", str(smoke_ablations), "-n", "ablations",
                       "--configfile", str(REPO / "config/smoke.yaml"), str(overlay))
    assert result.returncode == 0, result.stderr[-3000:]
    rules = {j.rule for j in dry_run_jobs(result.stdout + result.stderr)}
    assert rules <= {"ablation_figure", "ablations", "funnel_plot", "loss_curve"}, rules
    assert "ablation_figure" in rules
