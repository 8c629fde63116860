"""Evaluation: templates on the embedded test rows, exact wrapped token ids, rank classification
(crafted model, batched == per-choice), and the CLI end to end on a tiny model."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from bonito_repro.config import load_dataset_file, shipped_datasets
from bonito_repro.evaluate.cli import check_params, main
from bonito_repro.evaluate.encoder import PromptEncoder
from bonito_repro.evaluate.errors import EvaluationError
from bonito_repro.evaluate.rank_classification import gold_labels
from bonito_repro.evaluate.scoring import score_choices, score_choices_separately
from bonito_repro.evaluate.templates import EvalTemplate, load_templates, render_all
from bonito_repro.io import seeded_subset
from bonito_repro.models import load_for_inference, load_tokenizer
from bonito_repro.origins import embedded_path
from conftest import REPO

DATASETS = shipped_datasets()
PARAMS = {"generation_backend": "transformers", "max_new_tokens": 5, "max_examples": 6, "max_length": 512,
          "batch_tokens": 2048, "bf16": False, "bootstrap": {"samples": 50, "confidence": 0.95, "seed": 1},
          "seed": 42}


def embedded_rows(dataset: str) -> list[dict]:
    return pd.read_json(embedded_path("test", dataset), lines=True).to_dict("records")


def shipped_templates(dataset: str) -> list[EvalTemplate]:
    """The templates of a dataset file shipped in the package."""
    _, spec = load_dataset_file(dataset, "embedded")
    return load_templates(spec["templates"], spec["file"])


@pytest.mark.parametrize("dataset", DATASETS)
def test_five_templates_render_on_the_embedded_rows(dataset, local_config):
    spec = local_config["datasets"][dataset]
    templates = load_templates(spec["templates"], spec["file"])
    rows = embedded_rows(dataset)
    assert len(templates) == 5 and len({t.name for t in templates}) == 5
    rank = spec["task_type"] != "exqa"
    for template in templates:
        prompts = render_all(template, rows, seed=0)
        assert len(prompts) == len(rows) and all(p.strip() == p and len(p) > 20 for p in prompts)
        assert "{{" not in prompts[0] and "Amazon" not in "".join(prompts) * (dataset == "squadshifts_reddit")
        assert (template.choices is not None) == rank
    if rank:
        gold = gold_labels(rows, spec["labels"], dataset)
        assert all(g in t.choices for t in templates for g in gold)
        assert len(set(gold)) >= 2


def test_template_content_follows_the_paper():
    nli = {t.name: t for t in shipped_templates("vitaminc")}
    row = {"evidence": "The lake is 16 m deep.", "claim": "The lake is deep.", "label": "SUPPORTS"}
    assert nli["can we infer"].render(row) == 'Suppose The lake is 16 m deep. Can we infer that "The lake is deep."? Yes, no, or maybe?'
    assert nli["take the following as truth"].choices == {"yes": "True", "maybe": "Inconclusive", "no": "False"}
    reddit = {t.name: t for t in shipped_templates("squadshifts_reddit")}
    assert "I searched Reddit and this is what I found" in reddit["wondered"].jinja
    privacy = shipped_templates("privacy_qa")
    assert sum(t.choices == {"yes": "Relevant", "no": "Irrelevant"} for t in privacy) == 1
    assert sum(t.choices == {"yes": "Yes", "no": "No"} for t in privacy) == 4
    # question_num_hint_answer draws a word and a number at random: from its lists, seeded by render_all
    hint = {t.name: t for t in shipped_templates("squadshifts_nyt")}["question_num_hint_answer"]
    rows = embedded_rows("squadshifts_nyt")
    first = render_all(hint, rows, seed=5)
    assert render_all(hint, rows, seed=5) == first
    assert render_all(hint, rows, seed=6) != first
    drawn = [re.match(r"(Question|Problem) (\d+): (.*)\n\nHint: ", p, re.S) for p in first]
    assert all(m and 1 <= int(m.group(2)) <= 11 and m.group(3) == r["question"] for m, r in zip(drawn, rows))
    assert {m.group(1) for m in drawn} == {"Question", "Problem"}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_for_inference(tiny_model_dir)


@pytest.mark.parametrize("wrapper, text", [
    ("plain", "Instruct: Is it so?\nAnswer:"),
    ("inst", "[INST] Is it so? [/INST]"),
    ("io", "<|input|>\nIs it so?\n<|output|>\n"),
])
def test_wrapped_prompt_and_answer_ids(tokenizer, wrapper, text):
    encoder = PromptEncoder(tokenizer, wrapper, max_length=512)
    (ids,) = encoder.prompts(["  Is it so? "])
    assert ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in ids[1:]
    assert tokenizer.decode(ids[1:]) == text
    answer = encoder.answer(" Yes ")
    body = tokenizer("Yes", add_special_tokens=False)["input_ids"]
    assert answer == (body if wrapper == "inst" else body + [tokenizer.eos_token_id])


def test_the_chat_wrapper_is_the_local_models_own_template_with_one_bos(smollm2_tokenizer):
    """SmolLM2-Instruct after `<|im_start|>Instruct: ...\nAnswer:` most likely ends the turn, so an
    instruction-tuned model is prompted with its own chat template; the template starts with the
    BOS (<|im_start|>) itself, so the encoder must not add a second one."""
    tokenizer = smollm2_tokenizer
    encoder = PromptEncoder(tokenizer, "chat", max_length=512)
    (ids,) = encoder.prompts(["  Is it so? "])
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Is it so?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert tokenizer.decode(ids) == chat and chat.startswith(tokenizer.bos_token)
    assert ids[0] == tokenizer.bos_token_id != ids[1]
    assert chat.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nIs it so?<|im_end|>" in chat
    assert encoder.answer(" Yes ") == tokenizer("Yes", add_special_tokens=False)["input_ids"]  # no EOS
    (plain,) = PromptEncoder(tokenizer, "plain", max_length=512).prompts(["Is it so?"])
    assert tokenizer.decode(plain) == "<|im_start|>Instruct: Is it so?\nAnswer:"  # the pretrained models' wrapper


def test_long_prompts_lose_their_end_and_are_counted(tokenizer):
    encoder = PromptEncoder(tokenizer, "plain", max_length=16)
    short, long = encoder.prompts(["Yes?", "word " * 100])
    full = PromptEncoder(tokenizer, "plain", max_length=10_000).prompts(["word " * 100])[0]
    assert len(long) == 16 and long == full[:16] and encoder.truncated == 1 and len(short) < 16


def single_token_texts(tokenizer, n: int) -> list[str]:
    texts = []
    for token_id in range(100, len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text.strip() == text and tokenizer(text, add_special_tokens=False)["input_ids"] == [token_id]:
            texts.append(text)
        if len(texts) == n:
            return texts
    raise AssertionError("no single-token texts")


def crafted_model(tiny_model_dir, favourite: int):
    """Every position predicts token ``favourite`` with near certainty: constant embeddings, no
    layer output, and an output head that only knows that token."""
    model = load_for_inference(tiny_model_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight.fill_(1.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = model.get_output_embeddings().weight
        head.zero_()
        head[favourite] = 0.5
    return model


def test_rank_classification_picks_the_choice_the_model_prefers(tiny_model_dir, tokenizer):
    texts = single_token_texts(tokenizer, 3)
    encoder = PromptEncoder(tokenizer, "plain", max_length=512)
    prompts = encoder.prompts(["Is the sky blue?", "A much longer question about " * 5 + "grass?"])
    choices = [[encoder.answer(t) for t in texts]] * len(prompts)
    for favourite in range(3):
        token = tokenizer(texts[favourite], add_special_tokens=False)["input_ids"][0]
        scores = score_choices(crafted_model(tiny_model_dir, token), prompts, choices, batch_tokens=4096,
                               pad_id=tokenizer.pad_token_id)
        for row in scores:
            assert max(range(3), key=row.__getitem__) == favourite
            assert row[favourite] > max(s for j, s in enumerate(row) if j != favourite) + 10


def test_batched_scoring_equals_per_choice_scoring(model, tokenizer):
    encoder = PromptEncoder(tokenizer, "io", max_length=512)
    rows = embedded_rows("contract_nli")[:5]
    prompts, choices = [], []
    for template in shipped_templates("contract_nli")[:3]:
        answers = [encoder.answer(t) for t in template.answer_texts]
        prompts += encoder.prompts(render_all(template, rows, seed=0))
        choices += [answers] * len(rows)
    choices[0] = choices[0][:2]  # examples may have different numbers of choices
    reference = score_choices_separately(model, prompts, choices, batch_tokens=100_000,
                                         pad_id=tokenizer.pad_token_id)
    for budget in (100_000, 300):  # one batch, and one example a batch
        batched = score_choices(model, prompts, choices, batch_tokens=budget, pad_id=tokenizer.pad_token_id)
        assert [len(s) for s in batched] == [len(c) for c in choices]
        assert torch.allclose(torch.tensor(sum(batched, [])), torch.tensor(sum(reference, [])), atol=1e-4)


def test_decoding_values_are_needed_only_for_extractive_qa():
    rank = {k: v for k, v in PARAMS.items() if k not in ("generation_backend", "max_new_tokens")}
    assert check_params(rank, "nli") == rank
    with pytest.raises(EvaluationError, match="(?s)generation_backend.*max_new_tokens"):
        check_params(rank, "exqa")


def test_seeded_subset_is_seeded_and_ordered():
    assert seeded_subset(5, None, 0) == [0, 1, 2, 3, 4] and seeded_subset(5, 9, 0) == [0, 1, 2, 3, 4]
    picked = seeded_subset(100, 10, 7)
    assert picked == sorted(picked) and len(set(picked)) == 10 and picked == seeded_subset(100, 10, 7)


def run_cli(tmp_path, tiny_model_dir, dataset: str, spec: dict, wrapper: str = "io") -> tuple[dict, pd.DataFrame, dict]:
    test = tmp_path / f"{dataset}.parquet"
    pd.DataFrame(embedded_rows(dataset)).to_parquet(test)
    out = tmp_path / "eval" / f"{dataset}.json"
    argv = ["--model", str(tiny_model_dir), "--wrapper", wrapper, "--dataset", dataset,
            "--task-type", spec["task_type"], "--test", str(test), "--params", json.dumps(PARAMS),
            "--templates", json.dumps(spec["templates"]), "--labels", json.dumps(spec.get("labels")), "--out", str(out),
            "--predictions", str(tmp_path / "eval" / f"{dataset}.predictions.parquet"),
            "--target", "tiny", "--threads", "1"]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "eval" / f"{dataset}.manifest.json").read_text())
    return json.loads(out.read_text()), pd.read_parquet(tmp_path / "eval" / f"{dataset}.predictions.parquet"), manifest


def bootstrap_from_predictions(predictions: pd.DataFrame, bootstrap: dict) -> list[float]:
    """The interval recomputed from the per-example predictions, with scikit-learn's macro F1 for
    rank classification: the mean over templates of each resample of the examples, its percentiles."""
    from sklearn.metrics import f1_score

    templates = [group.sort_values("row") for _, group in predictions.groupby("template")]
    n = len(templates[0])
    resamples = np.random.default_rng(bootstrap["seed"]).integers(0, n, size=(bootstrap["samples"], n))
    if "correct" in predictions:
        score = lambda t, i: f1_score(t["gold"].to_numpy()[i], t["prediction"].to_numpy()[i],  # noqa: E731
                                      average="macro", zero_division=0)
    else:
        score = lambda t, i: t["f1"].to_numpy()[i].mean()  # noqa: E731
    means = [100 * np.mean([score(t, i) for t in templates]) for i in resamples]
    tail = (1 - bootstrap["confidence"]) / 2
    return list(np.quantile(means, [tail, 1 - tail]))


@pytest.mark.parametrize("dataset", ["pubmed_qa", "squadshifts_amazon"])
def test_cli_end_to_end(tmp_path, tiny_model_dir, dataset, local_config):
    result, predictions, manifest = run_cli(tmp_path, tiny_model_dir, dataset, local_config["datasets"][dataset])
    assert result["target"] == "tiny" and result["source"] == "zero_shot" and result["wrapper"] == "io"
    assert result["n_examples"] == PARAMS["max_examples"] and len(result["templates"]) == 5
    f1s = [t["f1"] for t in result["templates"].values()]
    assert result["mean"] == pytest.approx(sum(f1s) / 5)
    low, high = result["ci"]
    assert low <= result["mean"] <= high
    assert [low, high] == pytest.approx(bootstrap_from_predictions(predictions, PARAMS["bootstrap"]))
    scores = predictions["correct" if dataset == "pubmed_qa" else "f1"]
    assert (low < high) == (scores.nunique() > 1), scores.tolist()
    assert len(predictions) == 5 * PARAMS["max_examples"]
    assert manifest["counts"]["evaluated"] == 6 and manifest["drops"]["beyond_max_examples"] == 34 + 10 * (
        dataset != "pubmed_qa")
    if dataset == "pubmed_qa":
        assert set(predictions["prediction"]) <= {"yes", "no", "maybe"}
        for name, scores in result["templates"].items():
            rows = predictions[predictions.template == name]
            assert scores["accuracy"] == pytest.approx(100 * rows.correct.mean())
    else:
        assert "exact_match" in next(iter(result["templates"].values()))


# A dataset of one's own: one file (its rows' files beside it, labels, test fields, inline templates).
LEGAL_QA = r"""
title: LegalQA
task_type: ynqa
unannotated: {files: corpus.jsonl}
test: {files: test.jsonl}
labels: {field: answer, map: {"Y": "yes", "N": "no"}}
test_fields:
  required: {clause: str, question: str, answer: str}
  optional: {id: int}
  label: answer
templates:
  fields: {passage: clause}
  inline:
    - name: clause then question
      jinja: "Clause: {{passage}}\nQuestion: {{question}} Yes or no?"
      choices: {"yes": "Yes", "no": "No"}
    - name: does the clause say so
      jinja: "Does this clause answer \"{{question}}\" with yes?\n{{passage}}"
      choices: {"yes": "True", "no": "False"}
"""


def test_a_dataset_file_of_ones_own_loads_validates_and_evaluates(tmp_path, tiny_model_dir):
    from bonito_repro import target_data
    from bonito_repro.config import load_config

    rows = [{"id": i, "clause": f"The tenant may end the lease with {i + 1} months' notice in writing.",
             "question": f"Can the tenant leave with {i + 1 + i % 2} months' notice?", "answer": "NY"[i % 2]}
            for i in range(8)]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "legal_qa.yaml").write_text(LEGAL_QA)
    (tmp_path / "run.yaml").write_text(f"run: {{datasets: [{tmp_path / 'legal_qa.yaml'}]}}\n")
    spec = load_config(REPO / "config.yaml", tmp_path / "run.yaml")["datasets"]["legal_qa"]
    templates = load_templates(spec["templates"], spec["file"])
    assert templates[0].render(rows[0]).startswith("Clause: The tenant may end the lease with 1 months'")

    test = tmp_path / "test.parquet"
    assert target_data.main(["test", "--dataset", "legal_qa", "--origin", json.dumps(spec["test"]),
                             "--fields", json.dumps(spec["test_fields"]), "--labels", json.dumps(spec["labels"]),
                             "--out", str(test), "--manifest", str(tmp_path / "test.manifest.json")]) == 0
    counts = json.loads((tmp_path / "test.manifest.json").read_text())["counts"]
    assert counts["label_distribution"]["canonical"] == {"no": 4, "yes": 4}

    out, predictions = tmp_path / "eval" / "legal_qa.json", tmp_path / "eval" / "legal_qa.predictions.parquet"
    assert main(["--model", str(tiny_model_dir), "--wrapper", "io", "--dataset", "legal_qa",
                 "--task-type", spec["task_type"], "--test", str(test), "--templates", json.dumps(spec["templates"]),
                 "--labels", json.dumps(spec["labels"]), "--params", json.dumps(PARAMS), "--out", str(out),
                 "--predictions", str(predictions), "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "legal_qa" and result["method"] == "rank_classification"
    assert list(result["templates"]) == ["clause then question", "does the clause say so"]
    assert result["n_examples"] == PARAMS["max_examples"]
    predicted = pd.read_parquet(predictions)
    assert len(predicted) == 2 * PARAMS["max_examples"] and set(predicted["prediction"]) <= {"yes", "no"}


@pytest.mark.parametrize("templates, task_type, message", [
    ({"inline": [{"name": "x"}]}, "ynqa", "templates.inline.0: 'jinja' is a required property"),
    ({"inline": [{"name": "x", "jinja": "{{question}}", "choices": {"yes": "Y", "no": "N"}}]}, "exqa",
     "--templates of mine: the dataset is 'exqa' but its templates have answer choices"),
    ({"inline": [{"name": "x", "jinja": "{{q}}", "choices": {"yes": "Y", "no": "N"}}, {"name": "x", "jinja": "{{q}}"}]},
     "ynqa", "--templates of mine: duplicate template names"),
])
def test_the_cli_checks_the_templates_it_is_given(tmp_path, templates, task_type, message):
    argv = ["--model", str(tmp_path), "--wrapper", "io", "--dataset", "mine", "--task-type", task_type,
            "--test", str(tmp_path / "t.parquet"), "--templates", json.dumps(templates),
            "--params", json.dumps(PARAMS), "--out", str(tmp_path / "out.json")]
    with pytest.raises(ValueError, match=re.escape(message)):  # EvaluationError or TemplateError
        main(argv)


def test_unmapped_label_is_an_error_naming_the_row():
    rows = [{"label": "SUPPORTS"}, {"label": "MAYBE?"}]
    with pytest.raises(ValueError, match="row 1"):
        gold_labels(rows, {"field": "label", "map": {"SUPPORTS": "yes", "REFUTES": "no"}}, "test.parquet")
    assert gold_labels(rows, {"field": "label", "map": {"SUPPORTS": "yes"}, "default": "maybe"}, "x") == ["yes", "maybe"]


# --- an adapter that knows the answers: transformers here, vLLM in its own environment ---------

VLLM_PY = REPO / ".venv-vllm" / "bin" / "python"
EXQA_PARAMS = {**PARAMS, "max_examples": None, "max_new_tokens": 8}


@pytest.fixture(scope="module")
def answering_adapter(tiny_model_dir, tokenizer, tmp_path_factory):
    """A LoRA adapter trained to answer "about 30 hours" under every template (io wrapper), and a
    test file of three squadshifts rows with that gold answer; the base model does not know it."""
    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("answering")
    rows = [{**row, "answers": {"text": ["about 30 hours"], "answer_start": [0]}}
            for row in embedded_rows("squadshifts_amazon")[:3]]
    pd.DataFrame(rows).to_parquet(out / "test.parquet")
    encoder = PromptEncoder(tokenizer, "io", max_length=512)
    answer = encoder.answer("about 30 hours")
    examples = []
    for template in shipped_templates("squadshifts_amazon"):
        examples += [(p, answer) for p in encoder.prompts(render_all(template, rows, EXQA_PARAMS["seed"]))]
    torch.manual_seed(0)
    model = get_peft_model(load_for_inference(tiny_model_dir).train(),
                           LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj",
                                                                             "up_proj", "down_proj"]))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(90):
        prompt, answer = examples[step % len(examples)]
        ids = torch.tensor([prompt + answer])
        labels = torch.tensor([[-100] * len(prompt) + answer])
        model(input_ids=ids, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.save_pretrained(out / "adapter")
    return out / "adapter", out / "test.parquet"


def exqa_args(tiny_model_dir, adapter, test, out, backend):
    templates = load_dataset_file("squadshifts_amazon", "embedded")[1]["templates"]
    return ["--model", str(tiny_model_dir), "--adapter", str(adapter), "--wrapper", "io",
            "--dataset", "squadshifts_amazon", "--task-type", "exqa", "--test", str(test),
            "--templates", json.dumps(templates),
            "--params", json.dumps({**EXQA_PARAMS, "generation_backend": backend}),
            "--out", str(out), "--threads", "1"]


def test_adapter_is_merged_for_generation(tiny_model_dir, answering_adapter, tmp_path):
    adapter, test = answering_adapter
    assert main(exqa_args(tiny_model_dir, adapter, test, tmp_path / "out.json", "transformers")) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["source"] == "adapter" and result["mean"] > 80  # the adapter's answer
    base = tmp_path / "base.json"
    assert main([a for a in exqa_args(tiny_model_dir, adapter, test, base, "transformers")
                 if a not in ("--adapter", str(adapter))]) == 0
    assert json.loads(base.read_text())["mean"] < 50


@pytest.mark.vllm
@pytest.mark.skipif(not VLLM_PY.exists(), reason=f"{VLLM_PY} is missing (make setup-vllm)")
def test_vllm_backend_with_an_adapter(tiny_model_dir, answering_adapter, tmp_path):
    import os
    import subprocess

    adapter, test = answering_adapter
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    run = subprocess.run([str(VLLM_PY), "-m", "bonito_repro", "evaluate",
                          *exqa_args(tiny_model_dir, adapter, test, tmp_path / "out.json", "vllm")],
                         capture_output=True, text=True, env=env, timeout=400, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["method"] == "greedy_generation (vllm)" and len(result["templates"]) == 5
    assert result["mean"] > 80  # the merged adapter's answer (vLLM's CPU build computes in bf16)
