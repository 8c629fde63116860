"""The evaluation score collector: one row per result JSON, the caption line naming the data."""
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


@pytest.mark.parametrize("data", ["Data: the embedded demo rows (local scale), not comparable with the paper.",
                                  "Data: the paper's rows, read from the Hub."])
def test_table_files_and_data_label(results, tmp_path, data):
    csv, md = tmp_path / "scores.csv", tmp_path / "scores.md"
    assert main(["--inputs", *map(str, results), "--data", data, "--csv", str(csv), "--md", str(md)]) == 0
    table, text = pd.read_csv(csv), md.read_text()
    assert len(table) == 2 and "f1" in table.columns
    assert f"**{data}**" in text and (table["data"] == data).all()
    assert "| a " in text and "[10.0, 30.0] (95%)" in text


def test_not_a_result_is_an_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"target": "a"}))
    with pytest.raises(ValueError, match="x.json"):
        collect_scores([path])


def test_the_data_caption_names_demo_real_and_the_papers_rows(local_config, tmp_path):
    from bonito_repro.core.config import load_scale
    from bonito_repro.reporting.data_caption import data_caption
    from conftest import REPO

    local = local_config["datasets"]
    assert data_caption(local, "local") == "Data: the embedded demo rows (local scale), not comparable with the paper."
    assert data_caption(load_scale("paper", REPO)["datasets"], "paper") == "Data: the paper's rows, read from the Hub."
    own = {**local["pubmed_qa"], "title": "My QA", "file": str(tmp_path / "my_qa.yaml"),
           "test": {"files": "my_qa.jsonl"}, "unannotated": {"hub": {"id": "me/passages"}}}
    mixed = {"pubmed_qa": local["pubmed_qa"], "my_qa": own}
    assert data_caption(mixed, "local") == ("Data: PubMedQA: the embedded demo rows (local scale), not comparable "
                                            "with the paper; My QA: real rows from your own files.")
    assert data_caption({"my_qa": own}, "local", "unannotated") == "Data: real rows read from the Hub."
