"""Evaluation metrics (docs/protocol.md, section 8).

- Extractive QA: the SQuAD v1.1 answer normalisation, token F1 and exact match (what the paper's
  HF ``evaluate("squad")`` computes), per prediction against a list of references (max over them).
- Rank classification: macro F1 and accuracy with scikit-learn's semantics (HF ``evaluate``'s
  "f1" with ``average="macro"`` is a thin wrapper of scikit-learn); a vectorised macro F1 for the
  bootstrap, equal to scikit-learn's on every resample.
- A percentile bootstrap interval over resampled examples.
Single scores are fractions in [0, 1]; the evaluation stage reports them in percent as the paper's
tables do.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Callable, Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1: lower case, drop punctuation, drop the articles a/an/the, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(prediction: str, reference: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:  # v1.1 gives 0 here even when both sides are empty
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def _references(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("at least one reference answer is needed")
    return refs


def squad_f1(prediction: str, references: str | Sequence[str]) -> float:
    """SQuAD v1.1 token F1 of one prediction: the best over the references given."""
    return max(_token_f1(prediction, ref) for ref in _references(references))


def squad_exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(ref) for ref in _references(references)))


def macro_f1(predictions: Sequence, labels: Sequence) -> float:
    """Unweighted mean of per-class F1 over the classes seen in labels or predictions
    (scikit-learn's ``f1_score(labels, predictions, average="macro")``)."""
    from sklearn.metrics import f1_score

    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    return float(f1_score(list(labels), list(predictions), average="macro", zero_division=0))


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not len(labels):
        raise ValueError("accuracy of no examples")
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def macro_f1_rows(predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro F1 of every row of two (rows, examples) arrays of class indices in [0, n_classes),
    with the same semantics as :func:`macro_f1` (per class F1 = 2 TP / (predicted + gold))."""
    f1_sum = np.zeros(predictions.shape[0])
    present = np.zeros(predictions.shape[0])
    for c in range(n_classes):
        pred_c, gold_c = predictions == c, labels == c
        denominator = pred_c.sum(axis=1) + gold_c.sum(axis=1)
        true_pos = (pred_c & gold_c).sum(axis=1)
        seen = denominator > 0
        f1_sum += np.where(seen, 2 * true_pos / np.maximum(denominator, 1), 0.0)
        present += seen
    return f1_sum / np.maximum(present, 1)


def bootstrap_interval(statistic: Callable[[np.ndarray], np.ndarray], n_examples: int, samples: int,
                       confidence: float, seed: int) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over ``samples`` resamples of the examples (drawn with
    replacement). ``statistic`` maps a (samples, n_examples) index array to one value per row."""
    if n_examples < 1:
        raise ValueError("a bootstrap needs at least one example")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n_examples, size=(samples, n_examples), dtype=np.int64)
    values = np.asarray(statistic(index), dtype=float)
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)
