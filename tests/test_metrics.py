"""SQuAD v1.1 F1 / exact match on hand-worked cases; macro F1 and its vectorised form against
scikit-learn; the bootstrap interval."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from bonito_repro.core.metrics import (accuracy, bootstrap_interval, macro_f1, macro_f1_rows, normalize_answer,
                                  squad_exact_match, squad_f1)


@pytest.mark.parametrize("text, normalised", [
    ("The Cat", "cat"),
    ("a dog, an apple; the end.", "dog apple end"),
    ("  $48   million!  ", "48 million"),
    ("theater", "theater"),  # articles only as whole words
    ("", ""),
])
def test_normalize_answer(text, normalised):
    assert normalize_answer(text) == normalised


@pytest.mark.parametrize("prediction, reference, f1, em", [
    ("the cat sat", "A cat sat.", 1.0, 1.0),            # articles and punctuation do not count
    ("PARIS", "paris", 1.0, 1.0),                        # case does not count
    ("big red barn", "red barn door", 2 / 3, 0.0),       # 2 shared tokens: P = R = 2/3
    ("red", "red barn door", 0.5, 0.0),                  # P = 1, R = 1/3 -> F1 = 0.5
    ("in 1894 it opened", "1894", 0.4, 0.0),             # P = 1/4, R = 1 -> F1 = 0.4
    ("", "about 30 hours", 0.0, 0.0),                    # empty prediction
    ("the", "a", 0.0, 1.0),                              # both normalise to empty: v1.1 F1 is 0, EM 1
    ("x x y", "x y y", 2 / 3, 0.0),                      # token counts are clipped (multiset overlap)
])
def test_squad_hand_worked(prediction, reference, f1, em):
    assert squad_f1(prediction, [reference]) == pytest.approx(f1)
    assert squad_exact_match(prediction, [reference]) == em


def test_squad_takes_the_best_reference():
    assert squad_f1("red barn", ["blue house", "red barn door"]) == pytest.approx(0.8)
    assert squad_exact_match("Red Barn", ["blue house", "the red barn"]) == 1.0
    assert squad_f1("red barn", "red barn") == 1.0  # a single string is one reference
    with pytest.raises(ValueError):
        squad_f1("x", [])


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 3, size=30)
        predictions = rng.integers(0, 3, size=30)
        assert macro_f1(predictions, labels) == pytest.approx(f1_score(labels, predictions, average="macro"))
    # a class seen only in the predictions counts (F1 0); one seen nowhere does not
    assert macro_f1([0, 1, 2, 2], [0, 1, 1, 1]) == pytest.approx(
        f1_score([0, 1, 1, 1], [0, 1, 2, 2], average="macro", zero_division=0))
    assert macro_f1(["yes", "no"], ["yes", "no"]) == 1.0
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    with pytest.raises(ValueError):
        macro_f1([1], [1, 0])


def test_macro_f1_rows_equals_sklearn_on_every_row():
    rng = np.random.default_rng(1)
    predictions = rng.integers(0, 3, size=(200, 12))
    labels = rng.integers(0, 2, size=(200, 12))  # class 2 only ever predicted, sometimes nowhere
    expected = [f1_score(g, p, average="macro", zero_division=0) for p, g in zip(predictions, labels)]
    assert np.allclose(macro_f1_rows(predictions, labels, 3), expected)


def test_bootstrap_interval():
    values = np.array([0.0, 1.0] * 50)
    statistic = lambda index: values[index].mean(axis=1)  # noqa: E731
    low, high = bootstrap_interval(statistic, len(values), samples=500, confidence=0.95, seed=3)
    assert low < 0.5 < high and high - low < 0.3
    assert (low, high) == bootstrap_interval(statistic, len(values), 500, 0.95, 3)  # seeded
    constant = np.full(40, 0.7)
    assert bootstrap_interval(lambda i: constant[i].mean(axis=1), 40, 100, 0.95, 0) == pytest.approx((0.7, 0.7))
