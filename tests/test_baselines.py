"""Baselines that need no model: known answers, exact expectations checked by enumeration, the
same rows as the evaluation, the CLI's tables."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from bonito_repro.core import metrics
from bonito_repro.core.config import load_scale
from bonito_repro.reporting import baselines
from bonito_repro.core.io import read_parquet
from conftest import REPO

BOOTSTRAP = {"samples": 200, "confidence": 0.95, "seed": 0}


def test_spans_are_every_run_of_one_to_three_consecutive_words():
    assert baselines.spans("one two three four") == [
        ["one", "two", "three", "four"], ["one two", "two three", "three four"], ["one two three", "two three four"]]
    assert baselines.spans("one two") == [["one", "two"], ["one two"]]
    assert baselines.spans("   ") == []


@pytest.mark.parametrize("gold, n_classes", [
    ([2, 2, 2, 1], 3),        # a class absent from gold: it counts only when predicted
    ([0, 1, 2, 0, 1], 3),
    ([0, 0, 0], 3),           # two absent classes
    ([0, 1, 1, 1, 2], 4),
])
def test_random_label_is_the_exact_expectation_over_every_labelling(gold, n_classes):
    every = [metrics.macro_f1(list(predicted), gold) for predicted in itertools.product(range(n_classes), repeat=len(gold))]
    assert baselines.expected_random_label_f1(np.bincount(gold, minlength=n_classes)) == pytest.approx(np.mean(every))


def test_random_span_is_the_exact_expectation_over_lengths_then_starts():
    # "the" is an article, dropped by the metric. Length 1: "cat" of 6 words scores 1 (1/6);
    # length 2: "The cat" 1 and "cat sat" 2/3 of 5 spans (1/3); length 3: "The cat sat" 2/3 and
    # "cat sat on" 1/2 of 4 spans (7/24); the three lengths equally likely
    assert baselines.expected_span_f1("The cat sat on the mat", "cat") == pytest.approx((1 / 6 + 1 / 3 + 7 / 24) / 3)
    assert baselines.expected_span_f1("", "cat") == 0.0


def test_majority_class_macro_f1_known_answer():
    # always "yes" on yes, yes, yes, no: F1(yes) = 6/7, F1(no) = 0, macro over the two seen = 3/7
    majority, uniform = baselines.rank_baselines(["yes", "yes", "yes", "no"], ["maybe", "no", "yes"], "d", BOOTSTRAP)
    assert majority["baseline"] == "majority class" and uniform["baseline"] == "random label"
    assert majority["f1"] == pytest.approx(100 * 3 / 7)
    assert majority["ci_low"] <= majority["f1"] <= majority["ci_high"]
    assert majority["n_examples"] == 4
    assert uniform["f1"] == pytest.approx(100 * baselines.expected_random_label_f1([0, 1, 3]))
    assert uniform["ci_low"] <= uniform["f1"] <= uniform["ci_high"]


def test_span_baseline_scores_a_passage_that_is_the_answer():
    row = baselines.span_baseline(["Paris", "Rome"], ["Paris", "Berlin"], "d", BOOTSTRAP)
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
    data = "Data: the embedded demo rows (local scale), not comparable with the paper."
    params = {"data": data, "tables": {"decimals": 1}, "evaluation": evaluation,
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
    assert "PubMedQA" in text and "NYT" in text and "--" in text and data in text and "expected F1" in text
