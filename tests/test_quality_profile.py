"""The quality profile per (generator, dataset): each measure on crafted tasks with known answers,
and the table and its CLI across two generators."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.reporting.quality_profile import (answer_in_passage_share, distinct_n, label_balance, label_of,
                                                   markdown, mean_words, passages_of, profile_row, profile_table)

PASSAGES = ["The Vell river is 312 kilometres long.", "Skerra has about 300 people."]


def manifest(generated: int, kept: int, removed: dict, flagged: dict) -> dict:
    return {"funnel": {"generated": generated}, "kept": kept, "removed": removed,
            "flagged": {"exact_duplicate": 0, "near_duplicate": 0, "contaminated": 0, **flagged}}


def test_labels_of_responses():
    assert [label_of(r) for r in ["Yes", "no.", "The answer is yes", "True", "Maybe!", "Not enough info", "Neutral"]] \
        == ["yes", "no", "other", "yes", "maybe", "maybe", "maybe"]
    assert label_balance(["Yes", "yes", "No", "perhaps"]) == {"yes": 0.5, "no": 0.25, "maybe": 0.0, "other": 0.25}
    assert all(math.isnan(v) for v in label_balance([]).values())


def test_answer_in_passage_normalises_as_squad():
    responses = ["312 kilometres", "the Vell River", "400 people", ""]
    passages = [PASSAGES[0], PASSAGES[0], PASSAGES[1], PASSAGES[1]]
    assert answer_in_passage_share(responses, passages) == 0.5
    assert math.isnan(answer_in_passage_share([], []))


def test_distinct_2_and_lengths():
    assert distinct_n(["a b c", "a b d"], 2) == 3 / 4      # (a b) repeats
    assert distinct_n(["same words", "Same words"], 2) == 1 / 2
    assert math.isnan(distinct_n(["one"], 2))
    assert mean_words(["one two", "three"]) == 1.5


def test_passages_by_context_id_or_the_instruction():
    tasks = pd.DataFrame({"input": ["q1", "Skerra has about 300 people. How many?"], "output": ["a", "b"],
                          "context_id": pd.array([0, None], dtype="Int64")})
    assert passages_of(tasks, PASSAGES) == [PASSAGES[0], "Skerra has about 300 people. How many?"]


def test_profile_rows_of_two_kinds():
    bonito = pd.DataFrame({"input": [f"{PASSAGES[0]}\nHow long is the Vell?", f"{PASSAGES[1]}\nWho lives there?"],
                           "output": ["312 kilometres", "sheep"], "context_id": pd.array([0, 1], dtype="Int64")})
    row = profile_row("bonito", "nyt", "exqa", bonito, manifest(3, 2, {"unparsable": 1, "empty": 0},
                                                                   {"exact_duplicate": 1}), PASSAGES)
    assert row["answer_in_passage"] == 0.5
    assert row["instruction_words"] == 4.0          # the passage taken out: "How long is the Vell?", ...
    assert row["distinct_2"] == 1.0 and row["response_words"] == 1.5
    assert (row["generated"], row["kept"], row["dropped_unparsable"], row["exact_duplicates"]) == (3, 2, 1, 1)
    assert math.isnan(row["label_yes"])             # not a labelled task type
    backtranslated = pd.DataFrame({"input": ["Describe the Vell."], "output": [PASSAGES[0]],
                                   "context_id": pd.array([0], dtype="Int64")})
    other = profile_row("backtranslation", "pubmed_qa", "yes-no question answering", backtranslated,
                        manifest(2, 1, {"empty": 0, "unrated": 1}, {}), PASSAGES)
    assert other["label_other"] == 1.0 and math.isnan(other["answer_in_passage"])
    table = profile_table([row, other])
    assert table["dropped_unrated"].tolist() == [0, 1] and table["dropped_unparsable"].tolist() == [1, 0]
    text = markdown(table, 1)
    assert "unparsable 1" in text and "unrated 1" in text and "50.0" in text and "nan" not in text


def test_cli_writes_one_table_across_generators(tmp_path):
    unannotated = tmp_path / "u.parquet"
    pd.DataFrame({"input": PASSAGES}).to_parquet(unannotated)
    files = {}
    for generator in ("bonito", "backtranslation"):
        rows = tmp_path / f"{generator}.parquet"
        pd.DataFrame({"input": ["Is it long?"], "output": ["Yes"], "context_id": pd.array([0], dtype="Int64")}).to_parquet(rows)
        meta = tmp_path / f"{generator}.json"
        meta.write_text(json.dumps(manifest(1, 1, {"empty": 0}, {})))
        files[generator] = (rows, meta)
    out_csv, out_md = tmp_path / "p.csv", tmp_path / "p.md"
    cells = [["bonito", "pubmed_qa", "ynqa"], ["backtranslation", "pubmed_qa", "ynqa"]]
    assert bonito_repro(["quality-profile", "--synthetic", *(str(f[0]) for f in files.values()),
                         "--manifests", *(str(f[1]) for f in files.values()),
                         "--passages", str(unannotated), str(unannotated),
                         "--params", json.dumps({"cells": cells, "decimals": 1, "data": "Data: real rows from your own files."}),
                         "--out-csv", str(out_csv), "--out-md", str(out_md)]) == 0
    table = pd.read_csv(out_csv)
    assert table["generator"].tolist() == ["bonito", "backtranslation"] and table["label_yes"].tolist() == [1.0, 1.0]
    assert out_md.read_text().startswith("Data: real rows from your own files.")


def test_cli_refuses_cells_and_files_that_differ(tmp_path):
    with pytest.raises(SystemExit, match="differ in length"):
        bonito_repro(["quality-profile", "--synthetic", "a", "--manifests", "b", "--passages", "c",
                      "--params", json.dumps({"cells": [], "decimals": 1, "data": ""}), "--out-csv", str(tmp_path / "x"), "--out-md", str(tmp_path / "y")])
