"""The evaluation score collector: one row per result JSON, the demo label below paper scale."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bonito_repro.reporting.table import collect_scores, main


def result(target: str, source: str, dataset: str, f1s: list[float]) -> dict:
    return {"target": target, "source": source, "dataset": dataset, "task_type": "nli", "wrapper": "plain",
            "n_examples": 40, "templates": {f"t{i}": {"f1": f, "accuracy": f, "n": 40} for i, f in enumerate(f1s)},
            "mean": sum(f1s) / len(f1s), "median": sorted(f1s)[len(f1s) // 2], "ci": [10.0, 30.0],
            "confidence": 0.95}


@pytest.fixture()
def results(tmp_path):
    paths = []
    for target, source, dataset, f1s in [("b", "zero_shot", "vitaminc", [10, 20, 30, 40, 50]),
                                         ("a", "tapt", "contract_nli", [5, 5, 5, 5, 5])]:
        path = tmp_path / f"{target}_{source}_{dataset}.json"
        path.write_text(json.dumps(result(target, source, dataset, f1s)))
        paths.append(path)
    return paths


def test_collect_scores(results):
    scores = collect_scores(results)
    assert list(scores["target"]) == ["a", "b"]  # sorted
    row = scores.iloc[1]
    assert (row.f1, row.f1_median, row.ci_low, row.ci_high, row.templates) == (30, 30, 10, 30, 5)
    assert row.template_f1.startswith("t0: 10.0; t1: 20.0")


@pytest.mark.parametrize("scale", ["local", "paper"])
def test_table_files_and_demo_label(results, tmp_path, scale):
    csv, md = tmp_path / "scores.csv", tmp_path / "scores.md"
    assert main(["--inputs", *map(str, results), "--scale", scale, "--csv", str(csv), "--md", str(md)]) == 0
    table, text = pd.read_csv(csv), md.read_text()
    assert len(table) == 2 and "f1" in table.columns
    labelled = "not comparable with the paper" in text
    assert labelled == (scale != "paper") and ("data" in table.columns) == (scale != "paper")
    assert "| a " in text and "[10.0, 30.0] (95%)" in text


def test_not_a_result_is_an_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"target": "a"}))
    with pytest.raises(ValueError, match="x.json"):
        collect_scores([path])
