"""Target data: the row schemas (each dataset file's test_fields), the embedded demo data and the
data stage's loaders, on local files in the Hub schemas (embedded JSONL, the user's parquet/jsonl/csv).
Hub specs are read from the local Hub in test_hub.py."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from bonito_repro.prepare import target_data as data
from bonito_repro.core.config import shipped_datasets
from bonito_repro.core.schemas import SchemaError, canonical_label, type_problem, validate_rows
from bonito_repro.core.origins import embedded_path, load_origin

DATASETS = shipped_datasets()  # the package's seven; the local config must name the same (below)
SQUAD = [d for d in DATASETS if d.startswith("squadshifts_")]


@pytest.fixture(scope="module")
def local_labels(local_config) -> dict[str, dict | None]:
    """Each dataset's `labels` section in its dataset file."""
    return {d: spec.get("labels") for d, spec in local_config["datasets"].items()}


@pytest.fixture(scope="module")
def local_fields(local_config) -> dict[str, dict]:
    """Each dataset's `test_fields` section in its dataset file."""
    return {d: spec["test_fields"] for d, spec in local_config["datasets"].items()}


def embedded_rows(kind: str, dataset: str) -> list[dict]:
    return [json.loads(line) for line in embedded_path(kind, dataset).read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_config_names_the_seven_datasets_each_with_a_schema(local_config):
    names = sorted(local_config["datasets"])
    assert names == sorted(["pubmed_qa", "privacy_qa", "squadshifts_nyt", "squadshifts_amazon",
                            "squadshifts_reddit", "contract_nli", "vitaminc"])
    assert names == DATASETS
    assert all(spec["test_fields"]["required"] for spec in local_config["datasets"].values())


@pytest.mark.parametrize("dataset", DATASETS)
def test_embedded_data_loads_and_matches_the_schema(dataset, local_config, local_labels, local_fields):
    spec = local_config["datasets"][dataset]
    unannotated = load_origin(spec["unannotated"], "unannotated")
    test = load_origin(spec["test"], "test")
    assert unannotated.column_names == ["input"]
    assert validate_rows(unannotated, dataset, "unannotated", "u", columns=unannotated.column_names) >= 40
    assert validate_rows(test, dataset, "test", "t", test_fields=local_fields[dataset],
                         labels=local_labels[dataset], columns=test.column_names) >= 40
    passages = unannotated["input"]
    assert len(set(passages)) == len(passages)
    assert all(10 <= len(p.split()) <= 100 for p in passages)  # short: prompts stay cheap on CPU


@pytest.mark.parametrize("dataset", SQUAD)
def test_squad_answers_are_exact_spans_and_passages_are_the_test_contexts(dataset):
    rows = embedded_rows("test", dataset)
    for row in rows:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
            assert row["context"][start:start + len(text)] == text
    assert len({r["id"] for r in rows}) == len(rows)
    # zero-shot adaptation reads the test passages without their labels, as in the paper's data
    assert {r["input"] for r in embedded_rows("unannotated", dataset)} == {r["context"] for r in rows}


@pytest.mark.parametrize("dataset", ["contract_nli", "vitaminc", "pubmed_qa", "privacy_qa"])
def test_embedded_labels_are_mixed(dataset, local_labels):
    labels = local_labels[dataset]
    counts = Counter(canonical_label(r[labels["field"]], labels) for r in embedded_rows("test", dataset))
    n_choices = len(set(labels["map"].values()))
    assert len(counts) == n_choices
    assert min(counts.values()) >= 40 / n_choices * (0.6 if dataset == "pubmed_qa" else 0.9)


@pytest.mark.parametrize("dataset", ["contract_nli", "vitaminc", "pubmed_qa", "privacy_qa"])
def test_nli_and_qa_passages_are_not_the_test_passages(dataset):
    passage = {"contract_nli": "premise", "vitaminc": "evidence", "privacy_qa": "text"}.get(dataset)
    test = embedded_rows("test", dataset)
    contexts = {r[passage] if passage else " ".join(r["context"]["contexts"]) for r in test}
    assert not contexts & {r["input"] for r in embedded_rows("unannotated", dataset)}


def test_every_label_is_mapped_explicitly_and_integer_labels_match_by_text(local_labels):
    vitaminc, contract, pubmed = local_labels["vitaminc"], local_labels["contract_nli"], local_labels["pubmed_qa"]
    assert canonical_label("SUPPORTS", vitaminc) == "yes"
    assert canonical_label("REFUTES", vitaminc) == "no"
    assert canonical_label("NOT ENOUGH INFO", vitaminc) == "maybe"
    assert canonical_label("supports", vitaminc) is None  # no fall-through to maybe
    assert [canonical_label(i, contract) for i in (0, 1, 2)] == ["no", "yes", "maybe"]
    assert canonical_label("perhaps", pubmed) is None


@pytest.mark.parametrize("dataset, field, value", [
    ("pubmed_qa", "final_decision", "perhaps"),
    ("vitaminc", "label", "supports"),  # the real label lower-cased: not read as not enough info
    ("vitaminc", "label", "DISPUTED"),
])
def test_a_label_outside_the_map_is_an_error_naming_file_row_and_value(local_labels, local_fields,
                                                                       dataset, field, value):
    rows = embedded_rows("test", dataset)[:3]
    rows[2][field] = value
    with pytest.raises(SchemaError, match=rf"^bad\.jsonl: row 2 \(0-based\): field '{field}': label "
                                          rf"'{value}' is not in the dataset's labels\.map"):
        validate_rows(rows, dataset, "test", "bad.jsonl", test_fields=local_fields[dataset],
                      labels=local_labels[dataset])


def test_the_data_stage_stops_on_an_unknown_label(tmp_path, caplog, local_labels, local_fields):
    rows = embedded_rows("test", "vitaminc")
    rows[5]["label"] = "supports"
    path = write_jsonl(tmp_path / "vitaminc.jsonl", rows)
    code = run_stage("test", "--dataset", "vitaminc", "--origin", json.dumps({"files": str(path)}),
                     "--fields", json.dumps(local_fields["vitaminc"]), "--labels", json.dumps(local_labels["vitaminc"]),
                     "--out", tmp_path / "t.parquet", "--manifest", tmp_path / "t.json")
    assert code == 1
    assert f"{path}: row 5 (0-based): field 'label': label 'supports' is not in the dataset's labels.map" in caplog.text
    assert not (tmp_path / "t.parquet").exists()


@pytest.mark.parametrize("dataset, row, change, message", [
    ("contract_nli", 1, {"label": "1"}, r"row 1 \(0-based\): field 'label': expected int, got str"),
    ("contract_nli", 0, {"label": True}, r"field 'label': expected int, got bool"),
    ("privacy_qa", 2, {"text": None}, r"row 2 \(0-based\): field 'text': missing"),
    ("pubmed_qa", 0, {"context": {"labels": ["RESULTS"]}}, r"field 'context\.contexts': missing"),
    ("pubmed_qa", 1, {"context": {"contexts": ["a", 3]}}, r"field 'context\.contexts\[1\]': expected str"),
    ("pubmed_qa", 0, {"pubid": "123"}, r"field 'pubid': expected int"),  # optional, checked if present
    ("squadshifts_nyt", 1, {"answers": {"text": ["x", "y"], "answer_start": [0]}},
     r"field 'answers': 2 texts but 1 answer_start values"),
    ("squadshifts_nyt", 0, {"answers": {"text": [], "answer_start": []}}, r"no gold answer"),
])
def test_schema_errors_name_file_row_and_field(dataset, row, change, message, local_labels, local_fields):
    rows = embedded_rows("test", dataset)[:3]
    rows[row] = {**rows[row], **change}
    with pytest.raises(SchemaError, match=r"^my/file\.jsonl: .*" + message):
        validate_rows(rows, dataset, "test", "my/file.jsonl", test_fields=local_fields[dataset],
                      labels=local_labels[dataset])


def test_missing_column_names_the_columns_found(local_labels, local_fields):
    with pytest.raises(SchemaError, match=r"f\.csv: test rows of 'vitaminc' need column\(s\) \['claim'\]; "
                                          r"columns found: \['evidence', 'label'\]"):
        validate_rows([], "vitaminc", "test", "f.csv", test_fields=local_fields["vitaminc"],
                      labels=local_labels["vitaminc"], columns=["evidence", "label"])
    with pytest.raises(SchemaError, match="no test_fields for dataset 'my_data'"):
        validate_rows([], "my_data", "test", "f.csv")
    with pytest.raises(SchemaError, match="labels.field"):
        validate_rows([], "contract_nli", "test", "f.csv", test_fields=local_fields["contract_nli"], labels=None)


def test_type_problem_accepts_the_hub_types():
    assert type_problem({"text": ["a"], "answer_start": [3]},
                        {"text": "list[str]", "answer_start": "list[int]"}, "answers") is None
    assert "expected a struct" in type_problem("a", {"text": "list[str]"}, "answers")


def run_stage(*argv: str) -> int:
    return data.main([str(a) for a in argv])


def test_unannotated_from_files_counts_drops_and_duplicates(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"input": "  A passage.  "}, {"input": ""},
                                                 {"input": None}, {"input": "A passage."},
                                                 {"input": "Another one.\n"}, {"input": "   "}])
    out, manifest = tmp_path / "u.parquet", tmp_path / "u.json"
    assert run_stage("unannotated", "--dataset", "pubmed_qa", "--origin", json.dumps({"files": str(path)}),
                     "--out", out, "--manifest", manifest) == 0
    assert pd.read_parquet(out)["input"].tolist() == ["A passage.", "A passage.", "Another one."]
    record = json.loads(manifest.read_text())
    assert record["counts"] == {"rows_in": 6, "rows_out": 3, "exact_duplicates_kept": 1}
    assert record["drops"] == {"blank_input": 2, "null_input": 1}
    assert record["counts"]["rows_in"] == record["counts"]["rows_out"] + sum(record["drops"].values())


@pytest.mark.parametrize("suffix", ["parquet", "jsonl", "csv"])
def test_unannotated_files_need_an_input_column(tmp_path, suffix):
    frame = pd.DataFrame({"text": ["a passage"], "id": [1]})
    path = tmp_path / f"mine.{suffix}"
    {"parquet": frame.to_parquet, "csv": lambda p: frame.to_csv(p, index=False),
     "jsonl": lambda p: frame.to_json(p, orient="records", lines=True)}[suffix](path)
    with pytest.raises(SchemaError, match=r"mine\.%s: .*need column\(s\) \['input'\]; columns found: "
                                          r"\['text', 'id'\]" % suffix):
        data.unannotated_passages({"files": str(path)}, "my_corpus")


def test_test_split_from_parquet_keeps_the_nested_squad_schema(tmp_path, local_fields):
    rows = embedded_rows("test", "squadshifts_amazon")
    path = tmp_path / "amazon.parquet"
    pd.DataFrame(rows).to_parquet(path)
    out, manifest = tmp_path / "t.parquet", tmp_path / "t.json"
    assert run_stage("test", "--dataset", "squadshifts_amazon", "--origin", json.dumps({"files": str(path)}),
                     "--fields", json.dumps(local_fields["squadshifts_amazon"]), "--labels", "null",
                     "--out", out, "--manifest", manifest) == 0
    back = load_origin({"files": str(out)}, "test")
    assert back.to_list() == rows
    record = json.loads(manifest.read_text())
    assert record["counts"]["rows_in"] == record["counts"]["rows_out"] == len(rows)
    assert record["drops"] == {}


def test_test_split_from_csv_keeps_every_row_and_counts_labels(tmp_path, local_labels, local_fields):
    rows = embedded_rows("test", "contract_nli")
    path = tmp_path / "contract.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out, manifest = tmp_path / "t.parquet", tmp_path / "t.json"
    assert run_stage("test", "--dataset", "contract_nli", "--origin", json.dumps({"files": str(path)}),
                     "--fields", json.dumps(local_fields["contract_nli"]),
                     "--labels", json.dumps(local_labels["contract_nli"]), "--out", out, "--manifest", manifest) == 0
    assert len(pd.read_parquet(out)) == len(rows) == 40
    record = json.loads(manifest.read_text())
    assert record["drops"] == {}
    assert record["counts"]["label_distribution"]["raw"] == {"0": 13, "1": 14, "2": 13}


def _test_split_of(tmp_path, rows: list[dict], fields: dict, labels: dict | None) -> tuple[int, dict]:
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    out, manifest = tmp_path / "t.parquet", tmp_path / "t.json"
    code = run_stage("test", "--dataset", "mine", "--origin", json.dumps({"files": str(path)}),
                     "--fields", json.dumps(fields), "--labels", json.dumps(labels), "--out", out, "--manifest", manifest)
    return code, json.loads(manifest.read_text()) if code == 0 else {}


@pytest.mark.parametrize("duplicates, rows_out, drops, kept", [
    (None, 6, {"exact_duplicate": 2}, None),   # a set of one's own: dropped by default
    ("drop", 6, {"exact_duplicate": 2}, None),
    ("keep", 8, {}, 2),                        # the paper's datasets: scored as loaded
])
def test_exact_duplicate_test_rows_are_counted_and_dropped_or_kept(tmp_path, local_labels, local_fields,
                                                                  duplicates, rows_out, drops, kept):
    """8 rows of which 2 repeat another: without the count they weighed twice in F1 (8 examples
    scored for 6 distinct rows)."""
    rows = embedded_rows("test", "pubmed_qa")[:6]
    rows += [rows[0], rows[3]]
    fields = {k: v for k, v in local_fields["pubmed_qa"].items() if k != "duplicates"}
    if duplicates:
        fields["duplicates"] = duplicates
    code, record = _test_split_of(tmp_path, rows, fields, local_labels["pubmed_qa"])
    assert code == 0
    assert record["counts"]["rows_in"] == 8 and record["counts"]["rows_out"] == rows_out
    assert record["drops"] == drops and record["counts"].get("exact_duplicates_kept") == kept
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == rows_out


def test_two_test_rows_with_one_id_that_differ_stop_naming_the_id_and_file(tmp_path, caplog, local_labels, local_fields):
    rows = embedded_rows("test", "pubmed_qa")[:5]
    rows[4] = {**rows[4], "pubid": rows[1]["pubid"]}
    code, _ = _test_split_of(tmp_path, rows, local_fields["pubmed_qa"], local_labels["pubmed_qa"])
    assert code == 1
    assert (f"{tmp_path / 'mine.jsonl'}: row 4 (0-based): pubid {rows[1]['pubid']!r} is also the id of "
            f"{tmp_path / 'mine.jsonl'}: row 1, a different row") in caplog.text
    assert not (tmp_path / "t.parquet").exists()


def test_the_paper_datasets_keep_repeated_rows_and_name_their_ids(local_fields):
    assert {d: f.get("duplicates") for d, f in local_fields.items()} == {d: "keep" for d in DATASETS}
    assert {d: f["id"] for d, f in local_fields.items() if "id" in f} == {
        "pubmed_qa": "pubid", "vitaminc": "unique_id", **{d: "id" for d in SQUAD}}


def test_bad_row_in_the_second_file_names_that_file_and_its_row(tmp_path, caplog, local_labels, local_fields):
    rows = embedded_rows("test", "vitaminc")
    first = write_jsonl(tmp_path / "part1.jsonl", rows[:5])
    rows[7]["claim"] = None
    second = write_jsonl(tmp_path / "part2.jsonl", rows[5:10])
    origin = json.dumps({"files": [str(first), str(second)]})
    code = run_stage("test", "--dataset", "vitaminc", "--origin", origin, "--fields", json.dumps(local_fields["vitaminc"]),
                     "--labels", json.dumps(local_labels["vitaminc"]), "--out", tmp_path / "t.parquet",
                     "--manifest", tmp_path / "t.json")
    assert code == 1
    assert f"{second}: row 2 (0-based): field 'claim': missing" in caplog.text
    assert not (tmp_path / "t.parquet").exists() and not (tmp_path / "t.json").exists()


def test_malformed_fields_stop_the_stage_naming_the_key(tmp_path, caplog):
    code = run_stage("test", "--dataset", "mine", "--origin", json.dumps({"files": str(tmp_path / "t.jsonl")}),
                     "--fields", json.dumps({"required": {"answer": "float"}}), "--labels", "null",
                     "--out", tmp_path / "t.parquet", "--manifest", tmp_path / "t.json")
    assert code == 1
    assert "invalid --fields" in caplog.text and "test_fields.required.answer" in caplog.text

