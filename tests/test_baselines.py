"""Baselines that need no model: known answers, the same rows as the evaluation, the CLI's tables."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bonito_repro.core.config import load_scale
from bonito_repro.reporting import baselines
from bonito_repro.core.io import read_parquet
from conftest import REPO

BOOTSTRAP = {"samples": 200, "confidence": 0.95, "seed": 0}


def test_random_span_is_one_to_three_consecutive_words():
    passage = "one two three four five six"
    rng = np.random.default_rng(0)
    spans = [baselines.random_span(passage, rng) for _ in range(200)]
    assert {len(s.split()) for s in spans} == {1, 2, 3}
    assert all(s in passage for s in spans)
    assert baselines.random_span("   ", rng) == ""


def test_majority_class_macro_f1_known_answer():
    # always "yes" on yes, yes, yes, no: F1(yes) = 6/7, F1(no) = 0, macro over the two seen = 3/7
    majority, uniform = baselines.rank_baselines(["yes", "yes", "yes", "no"], ["maybe", "no", "yes"],
                                                 "d", BOOTSTRAP, seed=1)
    assert majority["baseline"] == "majority class" and uniform["baseline"] == "random label"
    assert majority["f1"] == pytest.approx(100 * 3 / 7)
    assert majority["ci_low"] <= majority["f1"] <= majority["ci_high"]
    assert majority["n_examples"] == 4


def test_span_baseline_scores_a_passage_that_is_the_answer():
    row = baselines.span_baseline(["Paris", "Rome"], ["Paris", "Berlin"], "d", BOOTSTRAP, seed=0)
    assert row["f1"] == pytest.approx(50.0)
    assert row["ci_low"] <= 50.0 <= row["ci_high"]


def test_cli_scores_the_evaluated_rows_of_the_local_test_sets(tmp_path):
    config = load_scale("local", REPO)
    datasets = {"pubmed_qa": "test/pubmed_qa", "squadshifts_nyt": "test/squadshifts_nyt"}
    tests = []
    for dataset, embedded in datasets.items():
        rows = [json.loads(line) for line in
                (REPO / "src/bonito_repro/data/embedded" / f"{embedded}.jsonl").read_text().splitlines()]
        path = tmp_path / f"{dataset}.parquet"
        pd.DataFrame(rows).to_parquet(path)
        tests.append(path)
    evaluation = {**{k: config["evaluation"][k] for k in ("max_examples", "seed")}, "bootstrap": BOOTSTRAP}
    params = {"scale": "local", "tables": {"decimals": 1}, "evaluation": evaluation,
              "datasets": {d: {k: config["datasets"][d].get(k) for k in ("title", "task_type", "labels",
                                                                                  "passage", "test_fields")}
                           for d in datasets}}
    out = {name: tmp_path / f"baselines.{name}" for name in ("csv", "md")}
    assert baselines.main(["--tests", *map(str, tests), "--params", json.dumps(params), "--csv", str(out["csv"]),
                           "--md", str(out["md"]), "--manifest", str(tmp_path / "m.json")]) == 0
    table = pd.read_csv(out["csv"])
    assert sorted(zip(table.baseline, table.dataset)) == [
        ("majority class", "pubmed_qa"), ("random label", "pubmed_qa"), ("random span", "squadshifts_nyt")]
    n_rows = min(len(read_parquet(tests[0]).to_pylist()), config["evaluation"]["max_examples"] or 10**9)
    assert table.set_index("dataset").loc["squadshifts_nyt", "n_examples"] > 0
    assert table[table.dataset == "pubmed_qa"].n_examples.tolist() == [n_rows, n_rows]
    text = out["md"].read_text()
    assert "PubMedQA" in text and "NYT" in text and "--" in text and "not comparable" in text
