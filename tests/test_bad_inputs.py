"""Bad inputs stop with one line that names the culprit, never a library traceback.

Each class of bad input, through the readers every stage uses (bonito_repro.core.io) and through the
stage commands as the rules run them (`python -m bonito_repro STAGE`): files that are not what
their name says, text that is not UTF-8, empty files, rows that lack a field, outputs that
cannot be written (found before any model is loaded) and config files that do not parse. Each
case asserts that the message names the file, and the row, line or key where there is one, and
that the command exits 1. Rows a config value drops instead (long passages, blank passages,
empty training rows) are counted by reason: see the tests named in docs/reliability.md.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.core.config import ConfigError, read_yaml
from bonito_repro.core.errors import InputError
from bonito_repro.core.io import check_rows_file, check_writable, read_csv, read_json, read_jsonl, read_parquet
from bonito_repro.core.origins import embedded_path


def _text_column(values: list[bytes]) -> pa.Array:
    """A string column holding exactly these bytes (arrow writes them unchecked, as a foreign tool may)."""
    offsets = [0]
    for value in values:
        offsets.append(offsets[-1] + len(value))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.array(offsets, pa.int32()).buffers()[1],
                                                            pa.py_buffer(b"".join(values))])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _bad_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "passages.parquet"
    pq.write_table(pa.table({"input": _text_column([b"fine", b"also fine", b"caf\xe9"])}), path)
    return path


def _surrogate_bytes_parquet(tmp_path: Path) -> Path:  # a surrogate encoded as UTF-8 bytes (CESU-8)
    path = tmp_path / "cesu.parquet"
    pq.write_table(pa.table({"input": _text_column([b"ok", b"\xed\xa0\x80 lone"])}), path)
    return path


def _nested_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "nested.parquet"
    texts = _text_column([b"ok", b"b\xffd"])
    pq.write_table(pa.table({"answers": pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), texts)}), path)
    return path


# (case, file maker, what the one line must name)
BAD_FILES = [
    ("invalid UTF-8 in a parquet string column", _bad_parquet, ["passages.parquet", "row 2", "'input'", "UTF-8"]),
    ("a surrogate's bytes in a parquet column", _surrogate_bytes_parquet, ["cesu.parquet", "row 1", "UTF-8"]),
    ("invalid UTF-8 in a nested parquet column", _nested_parquet, ["nested.parquet", "'answers'", "UTF-8"]),
    ("random bytes named .parquet", lambda d: _write(d / "noise.parquet", os.urandom(300)),
     ["noise.parquet", "not a readable parquet file"]),
    ("a 0-byte JSONL file", lambda d: _write(d / "empty.jsonl", b""), ["empty.jsonl", "empty file"]),
    ("invalid UTF-8 in a JSONL file", lambda d: _write(d / "bytes.jsonl", b'{"input": "ok"}\n{"input": "b\xffd"}\n'),
     ["bytes.jsonl", "line 2", "0xff", "UTF-8"]),
    ("a lone surrogate in a JSONL file", lambda d: _write(d / "lone.jsonl", b'{"input": "ok"}\n{"input": "x\\ud800"}\n'),
     ["lone.jsonl", "line 2", "'input'", "surrogate"]),
    ("a JSONL line cut short", lambda d: _write(d / "cut.jsonl", b'{"input": "ok"}\n{"input": "cu'),
     ["cut.jsonl", "line 2", "not valid JSON"]),
    ("a JSONL line that is not an object", lambda d: _write(d / "list.jsonl", b'{"input": "ok"}\n["input"]\n'),
     ["list.jsonl", "line 2", "expected a JSON object"]),
    ("a JSON array holding a string", lambda d: _write(d / "array.json", b'[{"input": "ok"}, "stray"]'),
     ["array.json", "item 1", "expected a JSON object"]),
    ("a Latin-1 CSV file", lambda d: _write(d / "latin1.csv", "input\nok\ncaf\xe9\n".encode("latin-1")),
     ["latin1.csv", "line 3", "0xe9", "iconv"]),
    ("a 0-byte CSV file", lambda d: _write(d / "empty.csv", b""), ["empty.csv", "empty file"]),
    ("a CSV row with more fields than the header", lambda d: _write(d / "wide.csv", b"input,n\nok,1\na,2,3\n"),
     ["wide.csv", "not valid CSV", "Expected 2 fields in line 3, saw 3"]),
    ("a CSV quote never closed", lambda d: _write(d / "quote.csv", b'input,n\nok,1\n"a,2\nb,3\n'),
     ["quote.csv", "not valid CSV", "EOF inside string"]),
    ("a file of another format", lambda d: _write(d / "rows.tsv", b"input\nx\n"), ["rows.tsv", "unknown format"]),
]


@pytest.mark.parametrize("case, make, named", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_input_file_is_named_with_its_row_or_line(tmp_path, case, make, named):
    path = make(tmp_path)
    with pytest.raises(InputError) as error:
        check_rows_file(path)
    message = str(error.value)
    assert "\n" not in message and all(part in message for part in named), message


def test_the_readers_return_the_rows_of_good_files(tmp_path):
    """The checks cost nothing to a good file: UTF-8 text, JSON with escapes, quoted CSV."""
    jsonl = _write(tmp_path / "ok.jsonl", '{"input": "caf\\u00e9"}\n\n{"input": "na\u00efve"}\n'.encode())
    assert read_jsonl(jsonl) == [{"input": "café"}, {"input": "naïve"}]
    csv = _write(tmp_path / "ok.csv", 'input,n\n"a, b",1\nc,2\n'.encode())
    assert read_csv(csv).to_dict("records") == [{"input": "a, b", "n": 1}, {"input": "c", "n": 2}]
    pd.DataFrame({"input": ["über", None]}).to_parquet(tmp_path / "ok.parquet")
    assert read_parquet(tmp_path / "ok.parquet", ["input"]).column("input").to_pylist() == ["über", None]


def test_a_missing_column_or_file_is_named(tmp_path):
    pd.DataFrame({"text": ["a"]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"x.parquet: missing column\(s\) \['input'\]; it has \['text'\]"):
        read_parquet(tmp_path / "x.parquet", ["input"])
    with pytest.raises(InputError, match="gone.parquet: no such file"):
        read_parquet(tmp_path / "gone.parquet")
    with pytest.raises(InputError, match=r"cut.json: line 2: not valid JSON"):
        read_json(_write(tmp_path / "cut.json", b'{"a":\n'))


def _one_line(capsys, caplog) -> str:
    """What a command said of its failure: stderr and its error log lines, with no traceback."""
    said = capsys.readouterr().err + "".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "Traceback" not in said, said
    return said


@pytest.mark.parametrize("case, make, named", BAD_FILES[:9], ids=[c[0] for c in BAD_FILES[:9]])
def test_the_data_command_stops_on_a_bad_file_in_one_line(tmp_path, capsys, caplog, case, make, named):
    """`target-data` over a user's file (`files:` origin) exits 1 naming it."""
    path = make(tmp_path)
    argv = ["target-data", "unannotated", "--dataset", "mine", "--origin", json.dumps({"files": str(path)}),
            "--out", str(tmp_path / "out.parquet"), "--manifest", str(tmp_path / "out.json")]
    assert bonito_repro(argv) == 1
    said = _one_line(capsys, caplog)
    assert all(part in said for part in named), said
    assert not (tmp_path / "out.parquet").exists()


def test_the_data_command_names_a_row_of_the_wrong_type(tmp_path, capsys, caplog):
    """A readable file whose rows break the schema: the row and field, and what was expected."""
    pd.DataFrame({"input": ["a passage", 7, "another"]}, dtype=object).to_json(tmp_path / "mixed.jsonl",
                                                                              orient="records", lines=True)
    argv = ["target-data", "unannotated", "--dataset", "mine", "--origin",
            json.dumps({"files": str(tmp_path / "mixed.jsonl")}), "--out", str(tmp_path / "o.parquet"),
            "--manifest", str(tmp_path / "o.json")]
    assert bonito_repro(argv) == 1
    said = _one_line(capsys, caplog)
    assert "mixed.jsonl: row 1 (0-based): field 'input': expected str, got int 7" in said, said


def _evaluate_argv(tmp_path: Path, spec: dict, test: Path, model: str, out: Path) -> list[str]:
    params = {"generation_backend": "transformers", "max_new_tokens": 4, "max_examples": 2, "max_length": 256,
              "truncation": "passage", "batch_tokens": 512, "bf16": False,
              "vllm": {"gpu_memory_utilization": 0.9, "enforce_eager": True}, "seed": 0,
              "bootstrap": {"samples": 10, "confidence": 0.9, "seed": 0}}
    return ["evaluate", "--model", model, "--wrapper", "io", "--dataset", "pubmed_qa", "--task-type",
            spec["task_type"], "--test", str(test), "--params", json.dumps(params),
            "--templates", json.dumps(spec["templates"]), "--labels", json.dumps(spec["labels"]),
            "--fields", json.dumps(spec["test_fields"]), "--passage", json.dumps(spec["passage"]),
            "--out", str(out), "--device", "cpu"]


def test_evaluate_checks_its_test_rows_before_loading_a_model(tmp_path, capsys, caplog, local_config):
    """A test file without `question` once scored an F1 (each template rendered the missing
    question as nothing); the model path does not even exist: the rows are checked first."""
    rows = pd.read_json(embedded_path("test", "pubmed_qa"), lines=True).drop(columns=["question"])
    rows.to_parquet(tmp_path / "test.parquet")
    argv = _evaluate_argv(tmp_path, local_config["datasets"]["pubmed_qa"], tmp_path / "test.parquet",
                          str(tmp_path / "no_model"), tmp_path / "eval" / "pubmed_qa.json")
    assert bonito_repro(argv) == 1
    said = _one_line(capsys, caplog)
    assert "test.parquet" in said and "need column(s) ['question']" in said, said
    assert not (tmp_path / "eval" / "pubmed_qa.json").exists()


def test_evaluate_names_a_bad_row(tmp_path, capsys, caplog, local_config):
    rows = pd.read_json(embedded_path("test", "pubmed_qa"), lines=True)
    rows.loc[3, "final_decision"] = "perhaps"
    rows.to_parquet(tmp_path / "test.parquet")
    argv = _evaluate_argv(tmp_path, local_config["datasets"]["pubmed_qa"], tmp_path / "test.parquet",
                          str(tmp_path / "no_model"), tmp_path / "out.json")
    assert bonito_repro(argv) == 1
    said = _one_line(capsys, caplog)
    assert "test.parquet: row 3 (0-based)" in said and "'perhaps'" in said, said


def _blocked(tmp_path: Path) -> Path:
    """An output folder that cannot be made (a file holds its name; chmod would not stop root)."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    return tmp_path / "blocked" / "out"


def test_an_unwritable_output_stops_evaluate_before_any_model_loads(tmp_path, capsys, caplog, local_config):
    embedded = pd.read_json(embedded_path("test", "pubmed_qa"), lines=True)
    embedded.to_parquet(tmp_path / "test.parquet")
    argv = _evaluate_argv(tmp_path, local_config["datasets"]["pubmed_qa"], tmp_path / "test.parquet",
                          str(tmp_path / "no_model"), _blocked(tmp_path) / "pubmed_qa.json")
    assert bonito_repro(argv) == 1
    said = _one_line(capsys, caplog)
    assert "blocked/out/pubmed_qa.json: cannot write here" in said and "no_model" not in said, said


def test_check_writable_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "a" / "x.json", None, tmp_path / "y.parquet")
    assert [p.name for p in tmp_path.rglob("*")] == ["a"]  # the folder an output needs, no probe file
    with pytest.raises(InputError, match="blocked/out/x.json: cannot write here"):
        check_writable(_blocked(tmp_path) / "x.json")


def _stage_argvs(tmp_path: Path, model: Path) -> dict[str, list[str]]:
    """Each stage command with a good model (where it needs one) and its outputs under a file."""
    out = _blocked(tmp_path)
    pd.DataFrame({"input": ["a passage"], "output": ["a task"]}).to_parquet(tmp_path / "rows.parquet")
    rows = str(tmp_path / "rows.parquet")
    training = {"tapt_block_size": 64}  # any: the outputs are checked before the values are used
    return {
        "models": ["models", "--name", "m", "--spec", json.dumps({"path": str(model)}), "--out", f"{out}/m",
                   "--manifest", f"{out}/m.json"],
        "target-data": ["target-data", "unannotated", "--dataset", "d", "--origin", json.dumps({"files": rows}),
                        "--out", f"{out}/d.parquet", "--manifest", f"{out}/d.json"],
        "train": ["train", "--mode", "tapt", "--base", str(model), "--data", rows, "--out", f"{out}/adapter",
                  "--checkpoints", f"{out}/ckpt/x", "--manifest", f"{out}/t.json", "--params", json.dumps(training),
                  "--device", "cpu"],
        "parse-check": ["parse-check", "--base", str(model), "--adapter", str(model), "--validation", rows,
                        "--params", json.dumps({"contexts": 1, "max_new_tokens": 1, "bf16": False}),
                        "--out", f"{out}/p.json", "--device", "cpu"],
        "generate": ["generate", "--dataset", "d", "--task-type", "ynqa", "--passages", rows, "--test", rows,
                     "--model", str(model), "--params", "{}", "--out", f"{out}/g.parquet", "--manifest", f"{out}/g.json",
                     "--device", "cpu"],
        "table": ["table", "--inputs", f"{tmp_path}/r.json", "--scale", "smoke", "--csv", f"{out}/s.csv",
                  "--md", f"{out}/s.md"],
        "main-table": ["main-table", "--scores", rows, "--predictions", rows, "--params", "{}", "--out-dir", str(out)],
        "plot": ["plot", "loss", "--manifest", f"{tmp_path}/m.json", "--params", json.dumps({"dpi": 50}),
                 "--out", f"{out}/loss.png"],
    }


@pytest.mark.parametrize("stage", ["models", "target-data", "train", "parse-check", "table", "main-table", "plot"])
def test_every_stage_checks_its_outputs_can_be_written_first(tmp_path, capsys, caplog, tiny_model_dir, stage):
    """Before a download, a model load, inference or training: the blocked output is named."""
    if stage == "train":  # its values are checked before its outputs: give it whole ones
        from bonito_repro.core.config import load_scale
        from conftest import REPO

        argvs = _stage_argvs(tmp_path, tiny_model_dir)
        params = {**load_scale("smoke", REPO)["adaptation"]}
        argv = argvs["train"]
        argv[argv.index("--params") + 1] = json.dumps(params)
    else:
        argv = _stage_argvs(tmp_path, tiny_model_dir)[stage]
    assert bonito_repro(argv) == 1
    said = _one_line(capsys, caplog)
    assert "blocked/out/" in said and "cannot write here" in said, said


def test_generate_checks_its_outputs_and_inputs_before_loading_a_model(tmp_path, capsys, caplog, local_config):
    params = json.dumps(local_config["generation"])
    argv = _stage_argvs(tmp_path, tmp_path / "no_model")["generate"]
    argv[argv.index("--params") + 1] = params
    assert bonito_repro(argv) == 1
    assert "blocked/out/g.parquet: cannot write here" in _one_line(capsys, caplog)
    # a passages file without `input`, then a test file that is no parquet: named, model never read
    pd.DataFrame({"text": ["a"]}).to_parquet(tmp_path / "p.parquet")
    argv[argv.index("--passages") + 1] = str(tmp_path / "p.parquet")
    argv[argv.index("--out") + 1], argv[argv.index("--manifest") + 1] = f"{tmp_path}/g.parquet", f"{tmp_path}/g.json"
    assert bonito_repro(argv) == 1
    assert "p.parquet: missing column(s) ['input']" in _one_line(capsys, caplog)
    argv[argv.index("--test") + 1] = str(_write(tmp_path / "t.parquet", b"not parquet"))
    assert bonito_repro(argv) == 1
    assert "t.parquet: not a readable parquet file" in _one_line(capsys, caplog)


def test_train_names_a_data_file_without_its_columns(tmp_path, capsys, caplog, tiny_model_dir):
    from bonito_repro.core.config import load_scale
    from conftest import REPO

    pd.DataFrame({"input": ["a prompt"]}).to_parquet(tmp_path / "pairs.parquet")
    params = load_scale("smoke", REPO)["adaptation"]
    argv = ["train", "--mode", "pairs", "--base", str(tiny_model_dir), "--data", str(tmp_path / "pairs.parquet"),
            "--out", str(tmp_path / "a"), "--checkpoints", str(tmp_path / "c"), "--manifest", str(tmp_path / "m.json"),
            "--params", json.dumps(params), "--wrapper", "io", "--device", "cpu"]
    assert bonito_repro(argv) == 1
    assert "pairs.parquet: missing column(s) ['output']" in _one_line(capsys, caplog)


def test_the_table_commands_name_a_file_that_is_not_what_they_read(tmp_path, capsys, caplog):
    _write(tmp_path / "r.json", b'{"target": "t", "source": ')
    argv = ["table", "--inputs", str(tmp_path / "r.json"), "--scale", "smoke", "--csv", str(tmp_path / "s.csv"),
            "--md", str(tmp_path / "s.md")]
    assert bonito_repro(argv) == 1
    assert "r.json: line 1: not valid JSON" in _one_line(capsys, caplog)
    _write(tmp_path / "r.json", b'{"target": "t"}')
    assert bonito_repro(argv) == 1
    assert "r.json: not an evaluation result (no key(s) ['source'" in _one_line(capsys, caplog)
    pd.DataFrame({"target": ["t"], "f1": [1.0]}).to_csv(tmp_path / "scores.csv", index=False)
    argv = ["main-table", "--scores", str(tmp_path / "scores.csv"), "--predictions", str(tmp_path / "r.json"),
            "--params", "{}", "--out-dir", str(tmp_path / "p")]
    assert bonito_repro(argv) == 1
    assert "scores.csv: missing column(s) ['source', 'dataset']" in _one_line(capsys, caplog)
    _write(tmp_path / "m.json", b'{"name": "x", "train_loss": []}')
    argv = ["plot", "loss", "--manifest", str(tmp_path / "m.json"), "--params", '{"dpi": 50}',
            "--out", str(tmp_path / "l.png")]
    assert bonito_repro(argv) == 1
    assert "m.json: not a training manifest (no key(s) ['validation_loss'])" in _one_line(capsys, caplog)


CONFIG_FILES = [
    ("an empty file", b"", "empty file; expected a mapping of config keys"),
    ("a comment only", b"# nothing yet\n", "empty file; expected a mapping of config keys"),
    ("a YAML syntax error", b"run:\n  datasets: [a\n  b: c\n", "line 3, column 4"),
    ("a list at the top level", b"- a\n- b\n", "expected a mapping at the top level, got a list"),
    ("a key written twice", b"generation:\n  n: 1\nevaluation: {}\ngeneration:\n  n: 2\n",
     "line 4: key 'generation' is written twice"),
    ("a nested key written twice", b"generation:\n  n: 1\n  n: 2\n", "line 3: key 'generation.n' is written twice"),
    ("bytes that are not UTF-8", b"scale: caf\xe9\n", "not UTF-8"),
]


@pytest.mark.parametrize("case, data, named", CONFIG_FILES, ids=[c[0] for c in CONFIG_FILES])
def test_a_bad_config_file_is_named_with_its_line(tmp_path, case, data, named):
    path = _write(tmp_path / "my_run.yaml", data)
    with pytest.raises(ConfigError) as error:
        read_yaml(path)
    assert str(error.value).startswith(f"{path}: ") and named in str(error.value), str(error.value)


def test_missing_files_and_model_folders_stop_the_config_check(tmp_path):
    """What a job would find missing hours into a run is found when the config loads, naming the
    file and key: a dataset's own corpus, a model folder."""
    import yaml

    from bonito_repro.core.config import DATASETS_DIR, merged_config, validate
    from conftest import REPO

    spec = yaml.safe_load((DATASETS_DIR / "pubmed_qa.yaml").read_text())
    spec["unannotated"] = {"files": "corpus.jsonl"}  # beside the dataset file, which does not hold it
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(spec))
    config = merged_config([REPO / "config.yaml", REPO / "config" / "smoke.yaml"])
    config["run"]["datasets"] = [str(tmp_path / "mine.yaml")]
    config["models"][config["targets"][config["run"]["targets"][0]]["model"]] = {"path": str(tmp_path / "gone")}
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert f"{tmp_path / 'mine.yaml'}: unannotated.files: no file '{tmp_path / 'corpus.jsonl'}'" in message, message
    assert f"path: no folder '{tmp_path / 'gone'}'" in message, message


def test_models_and_plot_check_their_values_against_the_config_schema(tmp_path, capsys, caplog):
    """A stage command checks the config entry it is given as the config check does."""
    argv = ["models", "--name", "m", "--spec", json.dumps({"tiny": {"architecture": "gpt"}}),
            "--out", str(tmp_path / "m"), "--manifest", str(tmp_path / "m.json")]
    assert bonito_repro(argv) == 1
    said = _one_line(capsys, caplog)
    assert "invalid --spec" in said and "model.tiny" in said, said
    assert not (tmp_path / "m").exists()
    _write(tmp_path / "t.json", json.dumps({"name": "x", "train_loss": [], "validation_loss": []}).encode())
    argv = ["plot", "loss", "--manifest", str(tmp_path / "t.json"), "--params", '{"dpi": 5}',
            "--out", str(tmp_path / "l.png")]
    assert bonito_repro(argv) == 1
    assert "plots.dpi: 5 is less than the minimum of 10" in _one_line(capsys, caplog)
