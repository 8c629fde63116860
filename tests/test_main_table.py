"""The main table: layout, deltas with their paired bootstrap intervals, published comparison,
demo label, missing cells."""
from __future__ import annotations

import itertools
from pathlib import Path
import json

import numpy as np
import pandas as pd
import pytest

from bonito_repro.core import layout
from bonito_repro.core.config import load_scale
from bonito_repro.core.metrics import macro_f1
from bonito_repro.reporting.delta_intervals import cell_statistic, delta_intervals
from bonito_repro.reporting.data_caption import data_caption
from bonito_repro.reporting.main_table import deltas, main, published_comparison, score_grid, write_tables
from conftest import REPO

PUBLISHED_ZERO_SHOT = {"pubmed_qa": 25.6, "privacy_qa": 44.1, "squadshifts_nyt": 24.2, "squadshifts_amazon": 17.5,
                       "squadshifts_reddit": 12.0, "contract_nli": 31.2, "vitaminc": 38.9}
BONUS = {"zero_shot": 0.0, "tapt": -1.0, "bonito": 20.0, "bonito_v1": 20.0}


def scores_for(config: dict) -> pd.DataFrame:
    rows = []
    for target, source, dataset in itertools.product(config["targets"], ["zero_shot", *config["run"]["sources"]],
                                                     config["datasets"]):
        base = PUBLISHED_ZERO_SHOT.get(dataset, 30.0) if target == "mistral_7b" else 30.0
        rows.append({"target": target, "source": source, "dataset": dataset, "f1": base + BONUS[source]})
    return pd.DataFrame(rows)


def rank_predictions(correct: np.ndarray, templates=("t1", "t2")) -> pd.DataFrame:
    """Rank-classification predictions as the evaluation writes them: ``correct[i]`` says whether
    row i is answered right under every template; gold alternates yes and no."""
    gold = np.where(np.arange(len(correct)) % 2 == 0, "yes", "no")
    predicted = np.where(correct, gold, np.where(gold == "yes", "no", "yes"))
    return pd.DataFrame([{"template": t, "row": int(i), "gold": g, "prediction": p, "correct": bool(c)}
                         for t in templates for i, (g, p, c) in enumerate(zip(gold, predicted, correct))])


def predictions_for(scores: pd.DataFrame) -> dict:
    """Predictions of 40 rows for every scored cell (none for a cell with no tasks)."""
    rng = np.random.default_rng(0)
    return {(t, s, d): (pd.DataFrame() if isinstance(note, str) else rank_predictions(rng.random(40) < 0.5))
            for t, s, d, note in zip(scores.target, scores.source, scores.dataset,
                                     scores.get("no_tasks", pd.Series([None] * len(scores))))}


@pytest.fixture(scope="module")
def paper():
    return load_scale("paper", REPO)


def test_grid_layout_and_average(paper):
    grid = score_grid(scores_for(paper), paper)
    assert list(grid.columns) == ["pubmed_qa", "privacy_qa", "squadshifts_nyt", "squadshifts_amazon",
                                  "squadshifts_reddit", "contract_nli", "vitaminc", "average"]
    assert len(grid) == 5 * 3
    assert grid.loc[("mistral_7b", "zero_shot"), "average"] == pytest.approx(27.6, abs=0.05)


def test_rows_and_columns_in_the_papers_order_after_the_rules_json(paper):
    """The rule hands the config over as JSON with sorted keys; the order still comes from `run`:
    pretrained targets, then instruction-tuned ones, zero-shot, TAPT, Bonito within each."""
    passed = json.loads(json.dumps(paper, sort_keys=True))
    grid = score_grid(scores_for(passed), passed)
    assert [t for t, _ in grid.index[::3]] == ["mistral_7b", "llama2_7b", "mistral_7b_p3", "llama2_7b_p3",
                                                "mistral_7b_instruct"]
    assert [s for _, s in grid.index[:3]] == ["zero_shot", "tapt", "bonito"]
    assert list(grid.columns)[:3] == ["pubmed_qa", "privacy_qa", "squadshifts_nyt"]


def test_deltas_are_against_the_same_targets_zero_shot(paper):
    delta = deltas(score_grid(scores_for(paper), paper))
    assert set(delta.index.get_level_values("source")) == {"tapt", "bonito"}
    assert np.allclose(delta.loc[(slice(None), "bonito"), :], 20.0)
    assert np.allclose(delta.loc[(slice(None), "tapt"), :], -1.0)


def test_published_comparison(paper):
    table = published_comparison(score_grid(scores_for(paper), paper), paper,
                                 {"zero_shot_rows": [{"model": "mistralai/Mistral-7B-v0.1", "provenance": "card",
                                                      "scores": {**PUBLISHED_ZERO_SHOT, "average": 27.6}}],
                                  "average_deltas": [{"group": "instruction-tuned", "source": "bonito",
                                                      "delta": 22.1, "provenance": "abstract"}]})
    assert table["difference"].iloc[:8].abs().max() < 0.05  # our fake zero-shot row is the published one
    last = table.iloc[-1]
    assert "3 targets" in last["what"] and last["ours"] == pytest.approx(20.0)
    assert last["difference"] == pytest.approx(-2.1)


def test_the_published_generator_is_compared_as_the_papers_bonito():
    """config/from_bonito_v1.yaml: its rows stand for the paper's Bonito in the comparison."""
    config = load_scale("paper", REPO)
    config["run"]["sources"] = ["tapt", "bonito_v1"]
    table = published_comparison(score_grid(scores_for(config), config), config,
                                 {"zero_shot_rows": [], "average_deltas": [{"group": "instruction-tuned",
                                  "source": "bonito", "delta": 22.1, "provenance": "abstract"}]})
    assert list(table["what"]) == ["instruction-tuned average delta, bonito_v1 vs zero-shot (3 targets)"]
    assert table["difference"].iloc[0] == pytest.approx(-2.1)


def test_missing_cell_is_an_error(paper):
    scores = scores_for(paper)
    with pytest.raises(ValueError, match="llama2_7b"):
        score_grid(scores[~((scores.target == "llama2_7b") & (scores.dataset == "vitaminc"))], paper)


def local_config() -> dict:
    """The local scale as the rule passes it: with the caption line naming its data."""
    local = load_scale("local", REPO)
    return {**local, "data": data_caption(local["datasets"], "local")}


def test_a_write_killed_half_way_leaves_no_torn_table(tmp_path, monkeypatch):
    local = local_config()
    real = Path.write_text

    def killed_half_way(self, text, *args, **kwargs):
        real(self, text[:len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(Path, "write_text", killed_half_way)
    scores = scores_for(local)
    with pytest.raises(KeyboardInterrupt):
        write_tables(scores, local, tmp_path, predictions_for(scores))
    assert not (tmp_path / "main_table.md").exists()  # the declared path is whole or absent


def test_files_and_demo_label(tmp_path):
    local = local_config()
    scores = scores_for(local)
    outputs = write_tables(scores, local, tmp_path, predictions_for(scores))
    assert {p.name for p in outputs.values()} >= {"main_table.csv", "main_table.md", "main_table.tex"}
    markdown = (tmp_path / "main_table.md").read_text()
    assert "Data: the embedded demo rows (local scale), not comparable with the paper." in markdown
    assert "PubMedQA" in markdown
    assert "not comparable with the paper" in (tmp_path / "main_table.tex").read_text()
    assert "Data: the embedded demo rows" in (tmp_path / "main_table_deltas.md").read_text()
    assert "smollm2_p3: a P3-style adapter trained in this workflow" in markdown
    csv = pd.read_csv(tmp_path / "main_table.csv")
    assert list(csv["adaptation"][:3]) == ["zero-shot", "TAPT", "Bonito"]


# --- the deltas' paired intervals -----------------------------------------------------------

BOOTSTRAP = {"samples": 1000, "confidence": 0.95, "seed": 42}


def test_a_cells_statistic_is_its_table_number_on_the_rows_drawn():
    """On the rows as they are, the statistic is the evaluation's number (macro F1 per template,
    averaged); token F1 for extractive QA likewise."""
    frame = rank_predictions(np.random.default_rng(1).random(30) < 0.6)
    frame.loc[frame.template == "t2", "prediction"] = "maybe"  # a class only one template predicts
    rows = np.arange(30)
    expected = np.mean([100 * macro_f1(b.prediction, b.gold) for _, b in frame.groupby("template")])
    assert cell_statistic(frame, rows, "cell")(rows[None, :])[0] == pytest.approx(expected)
    squad = pd.DataFrame({"template": ["a"] * 3 + ["b"] * 3, "row": [5, 6, 7] * 2, "f1": [1.0, 0.0, 0.5, 0.5, 0.5, 0.5]})
    statistic = cell_statistic(squad, np.array([5, 6, 7]), "cell")
    assert statistic(np.array([[0, 1, 2], [0, 0, 0]])).tolist() == pytest.approx([50.0, 75.0])


def test_paired_intervals_see_a_difference_that_separate_intervals_hide():
    """The adapted cell answers right every row the zero-shot cell does and 12 of 200 more: a
    +6-point delta. Each cell's own interval is about 14 points wide and the two overlap, but the
    paired resamples keep the shared rows together and the delta's interval excludes 0; a cell
    that only reshuffles which rows are right gets an interval around 0."""
    rng = np.random.default_rng(3)
    zero = rng.random(200) < 0.5
    better = zero.copy()
    better[np.flatnonzero(~zero)[:12]] = True
    shuffled = rng.permutation(zero)
    predictions = {("m", "zero_shot", "d"): rank_predictions(zero), ("m", "bonito", "d"): rank_predictions(better),
                   ("m", "tapt", "d"): rank_predictions(shuffled)}
    rows = np.arange(200)
    point = {s: cell_statistic(predictions[("m", s, "d")], rows, s)(rows[None, :])[0] for s in ("zero_shot", "bonito", "tapt")}
    delta = pd.DataFrame({"d": [point["bonito"] - point["zero_shot"], point["tapt"] - point["zero_shot"]]},
                         index=pd.MultiIndex.from_tuples([("m", "bonito"), ("m", "tapt")], names=["target", "source"]))
    delta["average"] = delta["d"]
    low, high = delta_intervals(delta, predictions, BOOTSTRAP, {cell: "/".join(cell) for cell in predictions})
    assert 0 < low.loc[("m", "bonito"), "d"] < delta.loc[("m", "bonito"), "d"] < high.loc[("m", "bonito"), "d"]
    assert low.loc[("m", "tapt"), "d"] < 0 < high.loc[("m", "tapt"), "d"]
    assert low.loc[("m", "bonito"), "average"] == pytest.approx(low.loc[("m", "bonito"), "d"])  # one dataset
    # the cells' separate intervals (as the evaluation reports them) overlap
    from bonito_repro.core.metrics import bootstrap_interval
    separate = {s: bootstrap_interval(cell_statistic(predictions[("m", s, "d")], rows, s), 200, 1000, 0.95, 42)
                for s in ("zero_shot", "bonito")}
    assert separate["bonito"][0] < separate["zero_shot"][1]


def test_cells_evaluated_on_other_rows_are_not_paired():
    predictions = {("m", "zero_shot", "d"): rank_predictions(np.ones(20, bool)),
                   ("m", "bonito", "d"): rank_predictions(np.ones(20, bool)).assign(row=lambda f: f.row + 1)}
    delta = pd.DataFrame({"d": [0.0], "average": [0.0]},
                         index=pd.MultiIndex.from_tuples([("m", "bonito")], names=["target", "source"]))
    with pytest.raises(ValueError, match="eval/m/bonito/d.predictions.parquet: template 't1' does not have each"):
        delta_intervals(delta, predictions, BOOTSTRAP, {("m", "zero_shot", "d"): "z",
                                                        ("m", "bonito", "d"): "eval/m/bonito/d.predictions.parquet"})


def test_a_file_that_is_no_predictions_is_named():
    frame = pd.DataFrame({"template": ["t1"], "row": [0], "answer": ["yes"]})
    with pytest.raises(ValueError, match=r"eval/m/bonito/d.predictions.parquet: not an evaluation's predictions"):
        cell_statistic(frame, np.array([0]), "eval/m/bonito/d.predictions.parquet")


def test_the_command_writes_the_deltas_with_intervals_from_the_predictions(tmp_path, monkeypatch):
    """`main-table` as the rule runs it: the scores, every cell's predictions file by its place in
    the layout, the config's bootstrap; the deltas' CSV holds each interval beside its delta."""
    monkeypatch.chdir(tmp_path)
    local = local_config()
    config = {**local, "run": {**local["run"], "datasets": ["pubmed_qa", "contract_nli"], "sources": ["bonito"]}}
    rng = np.random.default_rng(5)
    rows = []
    paths = []
    for target in config["run"]["targets"]:
        zero = rng.random(60) < 0.4
        for source, correct in (("zero_shot", zero), ("bonito", zero | (rng.random(60) < 0.3))):
            for dataset in config["run"]["datasets"]:
                frame = rank_predictions(correct)
                path = tmp_path / layout.evaluation(target, source, dataset, suffix=layout.PREDICTIONS)
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.to_parquet(path)
                paths.append(str(path.relative_to(tmp_path)))
                f1 = cell_statistic(frame, np.arange(60), dataset)(np.arange(60)[None, :])[0]
                rows.append({"target": target, "source": source, "dataset": dataset, "f1": f1})
    pd.DataFrame(rows).to_csv("scores.csv", index=False)
    params = {**{k: config[k] for k in ("scale", "models", "targets", "tables", "run", "data")},
              "datasets": {d: {"title": config["datasets"][d]["title"]} for d in config["run"]["datasets"]},
              "evaluation": {"bootstrap": BOOTSTRAP}}
    argv = ["--scores", "scores.csv", "--params", json.dumps(params), "--out-dir", "paper", "--predictions"]
    assert main([*argv, *paths]) == 0
    table = pd.read_csv(tmp_path / "paper" / "main_table_deltas.csv")
    assert list(table.columns)[3:9] == ["PubMedQA", "PubMedQA low", "PubMedQA high", "ContractNLI", "ContractNLI low",
                                        "ContractNLI high"]
    assert (table["PubMedQA low"] < table["PubMedQA"]).all() and (table["PubMedQA"] < table["PubMedQA high"]).all()
    assert (table["Average low"] > 0).all()  # every bonito row answers more rows right
    markdown = (tmp_path / "paper" / "main_table_deltas.md").read_text()
    assert "paired 95% bootstrap interval" in markdown and " [" in markdown
    with pytest.raises(ValueError, match="no file for .*contract_nli.predictions.parquet"):
        main([*argv, *[p for p in paths if "contract_nli" not in p]])
