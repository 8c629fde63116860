"""Hub cards: a synthetic set's folder loads with datasets.load_dataset and its card's counts are
the manifest's; an adapter's folder loads with PeftModel.from_pretrained and its card carries the
F1; both cards' metadata parse with huggingface_hub's card classes, offline."""
from __future__ import annotations

import json
from pathlib import Path
import re
import zlib

import numpy as np
import pandas as pd
import pytest

from bonito_repro.reporting import cards
from bonito_repro.generate.formats import FORMATS, export_formats
from bonito_repro.generate.funnel import funnel_counts, run_funnel

PASSAGES = ["Loans last three weeks.", "Fines stop at five dollars.", "Rooms are free for public meetings."]
GENERATIONS = [
    "Do loans last three weeks?\n{{context}}\n<|pipe|>\nYes",
    "Do loans last three weeks?\n{{context}}\n<|pipe|>\nYes",   # an exact duplicate
    "no pipe here",                                           # unparsable
    "Is a public meeting charged?\n{{context}}\n<|pipe|>\nNo",
]


def embed(texts):
    """Distinct texts, distinct unit vectors (a hash's one-hot): no near duplicates, offline."""
    vectors = np.zeros((len(texts), 256), dtype=np.float32)
    for i, text in enumerate(texts):
        vectors[i, zlib.crc32(text.encode()) % 256] = 1.0
    return vectors


@pytest.fixture
def synthetic_set(tmp_path, local_config):
    params = {**local_config["generation"], "filters": {"exact_duplicates": True, "near_duplicates": False,
                                                        "contaminated": False, "answer_not_in_passage": False}}
    records = run_funnel(pd.DataFrame({"passage": [PASSAGES[0], PASSAGES[0], PASSAGES[1], PASSAGES[2]],
                                       "generation": GENERATIONS, "context_id": [0, 0, 1, 2]}),
                         params, embed=embed, task_type="ynqa", device="cpu")
    summary = funnel_counts(records, params)
    kept = records[records["kept"]]
    rows = [{"input": i, "output": o, "context_id": c} for i, o, c in zip(kept["input"], kept["output"], kept["context_id"])]
    pd.DataFrame(rows).to_parquet(tmp_path / "tasks.parquet")
    formats = export_formats(rows, tmp_path / "formats", dataset="library")
    manifest = {"counts": {"passages": 3, "generated": 4, "kept": summary["kept"]}, **summary,
                "provenance": {"model": "results/models/smollm2", "adapter": "results/generators/bonito/adapter"},
                "formats": formats}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "passages.json").write_text(json.dumps({"counts": {"rows_in": 4, "rows_out": 3},
                                                        "drops": {"blank_input": 1}}))
    info = {"dataset": "library", "title": "Library", "task_type": "ynqa", "origin": "the user's files",
            "license": "cc0-1.0", "scale": "local", "evaluated": True, "generator": "bonito",
            "generator_spec": {"kind": "bonito", "base": "smollm2"}, "generation": params}
    return tmp_path, manifest, info


def test_synthetic_set_folder_loads_and_its_card_counts_are_the_manifests(synthetic_set):
    import datasets
    from huggingface_hub import DatasetCard

    where, manifest, info = synthetic_set
    out = where / "library.hub"
    assert cards.main(["dataset", "--tasks", str(where / "tasks.parquet"), "--manifest", str(where / "manifest.json"),
                       "--formats", str(where / "formats"), "--passages-manifest", str(where / "passages.json"),
                       "--info", json.dumps(info), "--out", str(out)]) == 0
    assert manifest["kept"] == 2 and manifest["funnel"]["unparsable"] == 1  # the funnel above did its work
    rows = datasets.load_dataset(str(out), split="train")
    assert len(rows) == manifest["kept"] and rows.column_names == ["input", "output", "context_id"]
    for name in FORMATS:  # bagel's formats come along, one config each
        assert len(datasets.load_dataset(str(out), name, split="train")) == manifest["kept"]
    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "cc0-1.0" and card.data.size_categories == ["n<1K"]
    assert card.data.task_categories == ["text-generation"]
    table = dict(re.findall(r"^\| (\w+) \| (\d+) \| (?:removed|kept) \|$", card.text, re.MULTILINE))
    assert {k: int(v) for k, v in table.items()} == {k: v for k, v in manifest["funnel"].items() if k != "generated"}
    assert f"kept {manifest['kept']} of {manifest['funnel']['generated']}" in card.text
    assert "3 passages of 4 rows (dropped: {'blank_input': 1})" in card.text
    assert "<|tasktype|>\nyes-no question answering\n<|context|>\n{passage}\n<|task|>" in card.text


def test_a_card_rewrite_replaces_the_folder_whole(synthetic_set):
    where, _, info = synthetic_set
    out = where / "library.hub"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    args = ["dataset", "--tasks", str(where / "tasks.parquet"), "--manifest", str(where / "manifest.json"),
            "--formats", str(where / "formats"), "--passages-manifest", str(where / "passages.json"),
            "--info", json.dumps(info), "--out", str(out)]
    assert cards.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data", "formats"]


def trained_adapter(tmp_path, tiny_model_dir) -> tuple:
    """A LoRA adapter of the tiny model with the manifests and info its card reads."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                   LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    (tmp_path / "train.json").write_text(json.dumps({"effective_batch": 4, "steps": 12, "epochs": 1.0,
                                                     "wrapper": "chat"}))
    (tmp_path / "eval.json").write_text(json.dumps({
        "mean": 61.25, "ci": [50.0, 70.0], "confidence": 0.95, "n_examples": 16, "method": "rank_classification",
        "wrapper": "chat", "templates": {f"t{i}": {"f1": 60.0 + i} for i in range(5)}}))
    (tmp_path / "data.json").write_text(json.dumps({"kept": 2}))
    training = {"quantization": "nf4", "lora": {"r": 64, "alpha": 16, "dropout": 0.0}, "learning_rate": 1e-3,
                "lr_scheduler": "linear", "optimizer": "adamw_torch", "seed": 42}
    info = {"dataset": "library", "title": "Library", "task_type": "ynqa", "origin": "the user's files",
            "license": "cc0-1.0", "scale": "paper", "evaluated": True, "target": "smollm2", "source": "bonito",
            "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "base_model_on_hub": True, "init_adapter": None,
            "training": training}
    return adapter, info


def test_adapter_folder_loads_with_peft_and_its_card_has_the_f1(tmp_path, tiny_model_dir):
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter, info = trained_adapter(tmp_path, tiny_model_dir)
    (adapter / ".snakemake_timestamp").touch()  # as Snakemake leaves in a directory output
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in adapter.iterdir()}
    out = tmp_path / "adapter.hub"
    assert cards.main(["model", "--adapter", str(adapter), "--manifest", str(tmp_path / "train.json"),
                       "--evaluation", str(tmp_path / "eval.json"), "--data-manifest", str(tmp_path / "data.json"),
                       "--info", json.dumps(info), "--out", str(out)]) == 0
    # the adapter is untouched (its timestamp unlinked: Snakemake touching the card folder's would
    # rerun every evaluation of the adapter), and its own README is not the card's
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in adapter.iterdir()} == before
    assert not (out / ".snakemake_timestamp").exists()
    assert (out / "README.md").stat().st_ino != (adapter / "README.md").stat().st_ino
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out))
    assert model.peft_config["default"].r == 4
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    result = card.data.eval_results[0]
    assert (result.metric_type, result.metric_value, result.dataset_type) == ("f1", 61.25, "library")
    assert "| steps | 12 |" in card.text and "2 synthetic tasks generated by `bonito`" in card.text
    assert "## Intended use and limits" in card.text

    local = tmp_path / "local.hub"  # a stand-in base (no Hub id) is named in the text only
    assert cards.main(["model", "--adapter", str(adapter), "--manifest", str(tmp_path / "train.json"),
                       "--data-manifest", str(tmp_path / "data.json"), "--out", str(local), "--info",
                       json.dumps({**info, "base_model": "smollm2", "base_model_on_hub": False,
                                   "evaluated": False})]) == 0
    card = ModelCard.load(local / "README.md")
    assert card.data.base_model is None and "A LoRA adapter of `smollm2`" in card.text
    assert "Not evaluated: Library has no labelled test set" in card.text

    passages = tmp_path / "passages.json"  # TAPT trains on the passages: their manifest has no tasks
    passages.write_text(json.dumps({"stage": "unannotated", "counts": {"rows_in": 40, "rows_out": 38}}))
    tapt = tmp_path / "tapt.hub"
    assert cards.main(["model", "--adapter", str(adapter), "--manifest", str(tmp_path / "train.json"),
                       "--data-manifest", str(passages), "--out", str(tapt), "--info",
                       json.dumps({**info, "source": "tapt", "evaluated": False})]) == 0
    assert "38 unannotated passages of Library (TAPT: next-word prediction" in ModelCard.load(tapt / "README.md").text


@pytest.mark.parametrize("license, refusal", [
    ("", "dataset card metadata: missing ['license']"),
    ("CC-BY 4", "license 'CC-BY 4' is not an identifier the Hub knows"),
])
def test_a_dataset_card_needs_a_license_the_hub_knows(synthetic_set, caplog, license, refusal):
    where, _, info = synthetic_set
    args = ["dataset", "--tasks", str(where / "tasks.parquet"), "--manifest", str(where / "manifest.json"),
            "--formats", str(where / "formats"), "--passages-manifest", str(where / "passages.json"),
            "--info", json.dumps({**info, "license": license}), "--out", str(where / "x.hub")]
    assert cards.main(args) == 1
    assert refusal in caplog.records[-1].getMessage()
    assert not (where / "x.hub").exists()


@pytest.mark.parametrize("language", [["de"], None])
def test_the_card_takes_its_language_from_the_dataset_file_and_cites_the_paper(synthetic_set, language):
    from huggingface_hub import DatasetCard

    where, _, info = synthetic_set
    out = where / "library.hub"
    assert cards.main(["dataset", "--tasks", str(where / "tasks.parquet"), "--manifest", str(where / "manifest.json"),
                       "--formats", str(where / "formats"), "--passages-manifest", str(where / "passages.json"),
                       "--info", json.dumps({**info, "language": language}), "--out", str(out)]) == 0
    card = DatasetCard.load(out / "README.md")
    assert card.data.language == language  # never a guessed "en"
    assert "Language: `de`" in card.text if language else "Language: not given by the dataset file" in card.text
    assert "@inproceedings{nayak-etal-2024-learning" in card.text and "arxiv:2402.18334" in card.data.tags


def test_the_hub_license_list_names_its_source_and_date():
    from bonito_repro.core.licenses import HUB_LICENSES, hub_licenses

    header = "".join(line for line in HUB_LICENSES.read_text().splitlines(True) if line.startswith("#"))
    assert "huggingface/hub-docs" in header and "2026-06-06" in header
    assert {"apache-2.0", "cc-by-4.0", "other", "llama2"} <= set(hub_licenses()) and len(hub_licenses()) > 60


def dataset_card_folder(synthetic_set) -> Path:
    where, _, info = synthetic_set
    out = where / "library.hub"
    assert cards.main(["dataset", "--tasks", str(where / "tasks.parquet"), "--manifest", str(where / "manifest.json"),
                       "--formats", str(where / "formats"), "--passages-manifest", str(where / "passages.json"),
                       "--info", json.dumps(info), "--out", str(out)]) == 0
    return out


READ_BACK = """
import sys
import datasets
from peft import PeftModel
from transformers import AutoModelForCausalLM
dataset_repo, model_repo, base = sys.argv[1:]
rows = datasets.load_dataset(dataset_repo, split="train")
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), model_repo)
print(len(rows), rows.column_names, model.peft_config["default"].r)
"""


@pytest.mark.slow  # a local Hub, five subprocesses
def test_push_uploads_card_folders_that_load_back_from_the_hub(synthetic_set, tiny_model_dir, local_hub, tmp_path):
    """`bonito-repro push` against the local Hub: repository creation, the metadata check, preupload,
    the LFS batch, upload and verify, and the commit; the pushed set loads with datasets and the
    pushed adapter with PeftModel, from the Hub; the token is in no output."""
    import subprocess
    import sys
    from collections import Counter

    dataset_folder = dataset_card_folder(synthetic_set)
    adapter, info = trained_adapter(tmp_path, tiny_model_dir)
    model_folder = tmp_path / "adapter.hub"
    assert cards.main(["model", "--adapter", str(adapter), "--manifest", str(tmp_path / "train.json"),
                       "--evaluation", str(tmp_path / "eval.json"), "--data-manifest", str(tmp_path / "data.json"),
                       "--info", json.dumps(info), "--out", str(model_folder)]) == 0
    user = json.loads((local_hub.root / "tokens.json").read_text())[local_hub.token]
    pushed = len(local_hub.requests())
    for folder, repo in ((dataset_folder, f"{user}/library-tasks"), (model_folder, f"{user}/library-adapter")):
        for _ in range(2):  # a second push of the same folder finds the repository and changes nothing
            result = local_hub.run(["push", folder, repo], tmp_path / "hf", token=True)
            assert result.returncode == 0, result.stderr[-3000:]
            assert local_hub.token not in result.stdout + result.stderr
    requests = local_hub.requests()[pushed:]
    endpoints = Counter(r["endpoint"] for r in requests)
    assert {"create_repo", "validate_yaml", "preupload", "lfs_batch", "lfs_upload", "lfs_verify"} <= set(endpoints)
    assert endpoints["commit"] == 2  # one a folder: its second push finds every file unchanged
    assert all(r["status"] < 400 or (r["endpoint"], r["status"]) == ("create_repo", 409) for r in requests), requests
    read = subprocess.run([sys.executable, "-c", READ_BACK, f"{user}/library-tasks", f"{user}/library-adapter",
                           str(tiny_model_dir)], env=local_hub.env(tmp_path / "hf-reader"),
                          capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-3000:]
    assert read.stdout.split("\n")[-2] == "2 ['input', 'output', 'context_id'] 4"


def test_push_refuses_a_folder_that_is_no_card_folder_or_no_token(synthetic_set, tmp_path, monkeypatch, capsys):
    from bonito_repro.__main__ import main as bonito_repro

    assert bonito_repro(["push", str(tmp_path), "user/x"]) == 1
    assert "no README.md" in capsys.readouterr().err
    folder = dataset_card_folder(synthetic_set)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert bonito_repro(["push", str(folder), "user/x"]) == 1
    assert "HF_TOKEN is not set" in capsys.readouterr().err
    readme = folder / "README.md"
    readme.write_text(readme.read_text().replace("license: cc0-1.0", "license: CC0"))
    monkeypatch.setenv("HF_TOKEN", "hf_never_sent")
    assert bonito_repro(["push", str(folder), "user/x"]) == 1
    assert "license 'CC0' is not an identifier the Hub knows" in capsys.readouterr().err


def test_a_size_points_subset_gets_a_card_of_its_own_rows(synthetic_set, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    from bonito_repro.workflow.ablations import subsample

    where, manifest, info = synthetic_set
    subsample(where / "tasks.parquet", 1, 7, where / "tasks.n1.parquet", where / "tasks.n1.manifest.json")
    out = where / "library.n1.hub"
    common = ["dataset", "--tasks", str(where / "tasks.n1.parquet"), "--manifest", str(where / "manifest.json"),
              "--passages-manifest", str(where / "passages.json"), "--info", json.dumps(info), "--out", str(out)]
    assert cards.main(common) == 1  # neither --formats nor --subset-manifest: which set is it?
    assert cards.main([*common, "--subset-manifest", str(where / "tasks.n1.manifest.json")]) == 0
    assert len(datasets.load_dataset(str(out), split="train")) == 1
    card = DatasetCard.load(out / "README.md")
    assert card.data.pretty_name == "Library: bonito tasks, a subset of 1"
    assert f"A seeded subset (seed 7) of 1 of the set's {manifest['kept']} tasks" in card.text
