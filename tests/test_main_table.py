"""The main table: layout, deltas, published comparison, demo label, missing cells."""
from __future__ import annotations

import itertools
from pathlib import Path
import json

import numpy as np
import pandas as pd
import pytest

from bonito_repro.core.config import load_scale
from bonito_repro.reporting.main_table import deltas, published_comparison, score_grid, write_tables
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


def test_a_write_killed_half_way_leaves_no_torn_table(tmp_path, monkeypatch):
    local = load_scale("local", REPO)
    real = Path.write_text

    def killed_half_way(self, text, *args, **kwargs):
        real(self, text[:len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(Path, "write_text", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_tables(scores_for(local), local, tmp_path)
    assert not (tmp_path / "main_table.md").exists()  # the declared path is whole or absent


def test_files_and_demo_label(tmp_path):
    local = load_scale("local", REPO)
    outputs = write_tables(scores_for(local), local, tmp_path)
    assert {p.name for p in outputs.values()} >= {"main_table.csv", "main_table.md", "main_table.tex"}
    markdown = (tmp_path / "main_table.md").read_text()
    assert "not comparable with the paper" in markdown and "PubMedQA" in markdown
    assert "not comparable with the paper" in (tmp_path / "main_table.tex").read_text()
    assert "smollm2_p3: a P3-style adapter trained in this workflow" in markdown
    csv = pd.read_csv(tmp_path / "main_table.csv")
    assert list(csv["adaptation"][:3]) == ["zero-shot", "TAPT", "Bonito"]
