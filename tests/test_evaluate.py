"""Evaluation: templates on the embedded test rows, exact wrapped token ids, rank classification
(crafted model, batched == per-choice), and the CLI end to end on a tiny model."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from bonito_repro.core.config import load_dataset_file, shipped_datasets
from bonito_repro.evaluate.cli import check_params, main
from bonito_repro.evaluate.encoder import PromptEncoder
from bonito_repro.evaluate.errors import EvaluationError
from bonito_repro.evaluate.rank_classification import gold_labels
from bonito_repro.runtime.scoring import score_choices, score_choices_separately
from bonito_repro.core.templates import EvalTemplate, TemplateError, load_templates, render_all
from bonito_repro.core.io import seeded_subset
from bonito_repro.runtime.models import encode_prompts, load_for_inference, load_tokenizer
from bonito_repro.core.origins import embedded_path
from bonito_repro.core.schemas import canonical_label
from conftest import REPO

DATASETS = shipped_datasets()
PARAMS = {"generation_backend": "transformers", "max_new_tokens": 5, "max_examples": 6, "max_length": 512,
          "truncation": "right", "batch_tokens": 2048, "bf16": False,
          "vllm": {"gpu_memory_utilization": 0.9, "enforce_eager": True},
          "bootstrap": {"samples": 50, "confidence": 0.95, "seed": 1}, "seed": 42}


def embedded_rows(dataset: str) -> list[dict]:
    return pd.read_json(embedded_path("test", dataset), lines=True).to_dict("records")


def templates_of(spec: dict) -> list[EvalTemplate]:
    """The templates of a resolved dataset entry."""
    return load_templates(spec["templates"], spec.get("labels"), spec["test_fields"], spec["file"])


def shipped_templates(dataset: str) -> list[EvalTemplate]:
    """The templates of a dataset file shipped in the package."""
    return templates_of(load_dataset_file(dataset, "embedded")[1])


@pytest.mark.parametrize("dataset", DATASETS)
def test_five_templates_render_on_the_embedded_rows(dataset, local_config):
    spec = local_config["datasets"][dataset]
    templates = templates_of(spec)
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


# --- the authors' templates (docs/protocol.md, section 8.4), kept verbatim in the dataset files ---

AUTHORS = ["pubmed_qa", "privacy_qa", "contract_nli", "vitaminc"]
# one hand-written row per dataset, in the schema of its test split
FIXED_ROWS = {
    "pubmed_qa": {"pubid": 7, "question": "Does tea lower blood pressure?", "final_decision": "maybe",
                  "context": {"contexts": ["We followed 40 adults.", "Pressure fell in some."]},
                  "long_answer": "Possibly."},
    "privacy_qa": {"question": "Do you sell my data?", "text": "We never sell personal data.", "answer": "Relevant"},
    "contract_nli": {"premise": "The parties keep all terms secret.", "hypothesis": "Terms may be shared.", "label": 0},
    "vitaminc": {"evidence": "The lake is 16 m deep.", "claim": "The lake is deep.", "label": "SUPPORTS",
                 "unique_id": "u1", "case_id": "c1", "page": "Lake"},
}
# the prompt of one template of each on its fixed row, as promptsource renders it (stripped)
PROMPTS = {
    ("pubmed_qa", "Given a passage (question at end)"):
        "Given a passage: We followed 40 adults. Pressure fell in some.\n\nAnswer the question: Does tea lower "
        "blood pressure?\n\nSummarize the above answer as YES, NO, or MAYBE?",
    ("privacy_qa", "prompt_4"): "As a lawyer, can you answer the question given the context?\nQuestion: Do you "
                                "sell my data?\nContext:We never sell personal data.",
    ("contract_nli", "prompt_3"): 'Take the following as truth: The parties keep all terms secret. Then the following '
                                  'statement: "Terms may be shared." is true, false, or inconclusive?',
    ("vitaminc", "prompt_4"): 'The lake is 16 m deep.\nBased on that information, is the claim: "The lake is deep." '
                              'true, false, or inconclusive?',
}
YES_NO_MAYBE = [("no", "No"), ("yes", "Yes"), ("maybe", "Maybe")]
TRUE_FALSE = [("no", "False"), ("yes", "True"), ("maybe", "Inconclusive")]
# the answer text scored for each canonical label, in the authors' order of answer_choices
CHOICES = {
    "pubmed_qa": {name: [("yes", "yes"), ("no", "no"), ("maybe", "maybe")] for name in [
        "Given a passage (question at end)", "Im a doctor", "What is the answer", "Please answer",
        "Given a passage (question at start)"]},
    "privacy_qa": {"prompt_1": [("yes", "Relevant"), ("no", "Irrelevant")],
                   **{f"prompt_{i}": [("yes", "Yes"), ("no", "No")] for i in range(2, 6)}},
    "contract_nli": {"prompt_1": YES_NO_MAYBE, "prompt_2": YES_NO_MAYBE, "prompt_3": TRUE_FALSE,
                     "prompt_4": TRUE_FALSE, "prompt_5": YES_NO_MAYBE},
    "vitaminc": {"prompt_1": YES_NO_MAYBE, "prompt_2": YES_NO_MAYBE, "prompt_3": TRUE_FALSE,
                 "prompt_4": TRUE_FALSE, "prompt_5": YES_NO_MAYBE},
}


def promptsource_template(entry: dict):
    """promptsource's own Template over a dataset file's verbatim entry."""
    from promptsource.templates import Template

    return Template(name=entry["name"], jinja=entry["jinja"], reference="", answer_choices=entry["answer_choices"])


@pytest.mark.parametrize("dataset", AUTHORS)
def test_authors_prompts_are_what_promptsource_renders_from_their_jinja(dataset, local_config):
    spec = local_config["datasets"][dataset]
    entries = spec["templates"]["verbatim"]
    templates = templates_of(spec)
    assert [t.name for t in templates] == [e["name"] for e in entries] == list(CHOICES[dataset])
    row = FIXED_ROWS[dataset]
    for entry, template in zip(entries, templates):
        assert entry["jinja"].count("|||") == 1  # prompt ||| target, kept whole in the file
        assert template.render(row) == promptsource_template(entry).apply(dict(row))[0]
    (name, prompt), = [(n, p) for (d, n), p in PROMPTS.items() if d == dataset]
    assert {t.name: t for t in templates}[name].render(row) == prompt


@pytest.mark.parametrize("dataset", AUTHORS)
def test_answer_choices_come_from_rendering_each_labels_target(dataset, local_config):
    """Which answer text each canonical label scores: what the authors' target renders for a row of
    that label (e.g. ContractNLI's answer_choices[label], Vitamin C's spaced " Yes " stripped)."""
    spec = local_config["datasets"][dataset]
    templates = templates_of(spec)
    assert {t.name: list(t.choices.items()) for t in templates} == CHOICES[dataset]
    labels = spec["labels"]
    for entry, template in zip(spec["templates"]["verbatim"], templates):
        source = promptsource_template(entry)
        assert template.answer_texts == source.get_fixed_answer_choices_list()
        for row in embedded_rows(dataset):  # the authors' target of every demo row is its label's choice
            assert source.apply(dict(row))[1] == template.choices[canonical_label(row[labels["field"]], labels)]


@pytest.mark.parametrize("dataset", AUTHORS)
def test_demo_rows_hold_every_field_the_templates_read_and_the_real_labels(dataset, local_config):
    from jinja2 import Environment, meta

    spec = local_config["datasets"][dataset]
    read = set().union(*(meta.find_undeclared_variables(Environment().parse(e["jinja"]))
                         for e in spec["templates"]["verbatim"])) - {"answer_choices"}
    assert read <= set(spec["test_fields"]["required"])
    rows = embedded_rows(dataset)
    assert all(row.get(name) is not None for row in rows for name in read)
    labels = spec["labels"]
    real = {"pubmed_qa": {"yes", "no", "maybe"}, "privacy_qa": {"Relevant", "Irrelevant"},
            "contract_nli": {0, 1, 2}, "vitaminc": {"SUPPORTS", "REFUTES", "NOT ENOUGH INFO"}}[dataset]
    assert {row[labels["field"]] for row in rows} == real
    assert set(labels["map"]) == {str(label) for label in real}


def verbatim(jinja: str, answer_choices: str) -> dict:
    return {"verbatim": [{"name": "mine", "jinja": jinja, "answer_choices": answer_choices}]}


NLI_TARGET = '{% if label == "REFUTES" %} No {% elif label == "SUPPORTS" %} Yes {% else %} Maybe {% endif %}'
NLI_LABELS = {"field": "label", "map": {"SUPPORTS": "yes", "REFUTES": "no", "NOT ENOUGH INFO": "maybe"}}
NLI_FIELDS = {"required": {"claim": "str", "evidence": "str", "label": "str"}, "label": "label"}


@pytest.mark.parametrize("templates, labels, message", [
    (verbatim("{{claim}}|||" + NLI_TARGET, "No ||| Yes ||| Unsure"), NLI_LABELS,
     "my.yaml: template 'mine': label 'NOT ENOUGH INFO' (maybe) renders the target 'Maybe', which is not one of "
     "its answer choices ['No', 'Yes', 'Unsure']"),
    (verbatim('{{claim}}|||{% if label == "REFUTES" %} No {% else %} Yes {% endif %}', "No ||| Yes ||| Maybe"),
     NLI_LABELS,
     "my.yaml: template 'mine': labels 'SUPPORTS' (yes) and 'NOT ENOUGH INFO' (maybe) both render the target 'Yes'"),
    (verbatim("{{claim}}|||" + NLI_TARGET, "No ||| Yes ||| Maybe"),
     {**NLI_LABELS, "map": {**NLI_LABELS["map"], "NOT ENOUGH INFO": "yes"}},
     "my.yaml: template 'mine': labels 'SUPPORTS' and 'NOT ENOUGH INFO' are both yes but render the targets "
     "'Yes' and 'Maybe'"),
    (verbatim("{{claim}} {{evidence}}", "No ||| Yes ||| Maybe"), NLI_LABELS,
     "my.yaml: template 'mine': its jinja needs one '|||' between the prompt and the target, it has 0"),
    (verbatim("{{claim}}|||" + NLI_TARGET, "No ||| Yes ||| Maybe ||| Perhaps"), NLI_LABELS,
     "my.yaml: template 'mine': no label renders the answer choice(s) ['Perhaps']; each choice needs a gold label"),
    (verbatim("{{claim}}|||{{answer_choices[label]}}", "{{evidence}} ||| Yes"), NLI_LABELS,
     "my.yaml: template 'mine': answer_choices must be a fixed list (no template variables)"),
    (verbatim("{{claim}}|||{{ label.first.second }}", "No ||| Yes ||| Maybe"), NLI_LABELS,
     "my.yaml: template 'mine': its target fails for label 'SUPPORTS': "),
    (verbatim("{{claim}}|||" + NLI_TARGET, "No ||| Yes ||| No"), NLI_LABELS,
     "my.yaml: template 'mine': answer_choices repeat a choice: ['No', 'Yes', 'No']"),
])
def test_a_target_that_is_not_one_answer_choice_fails_at_load(templates, labels, message):
    with pytest.raises(TemplateError, match=re.escape(message)):
        load_templates(templates, labels, NLI_FIELDS, "my.yaml")


def test_squadshifts_templates_follow_the_paper():
    reddit = {t.name: t for t in shipped_templates("squadshifts_reddit")}
    assert "I searched Reddit and this is what I found" in reddit["wondered"].jinja
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
    encoder = PromptEncoder(tokenizer, wrapper, max_length=512, truncation="right", dataset="test")
    (ids,) = encoder.encode(["  Is it so? "])
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
    encoder = PromptEncoder(tokenizer, "chat", max_length=512, truncation="right", dataset="test")
    (ids,) = encoder.encode(["  Is it so? "])
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Is it so?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert tokenizer.decode(ids) == chat and chat.startswith(tokenizer.bos_token)
    assert ids[0] == tokenizer.bos_token_id != ids[1]
    assert chat.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nIs it so?<|im_end|>" in chat
    assert encoder.answer(" Yes ") == tokenizer("Yes", add_special_tokens=False)["input_ids"]  # no EOS
    (plain,) = PromptEncoder(tokenizer, "plain", max_length=512, truncation="right", dataset="test").encode(["Is it so?"])
    assert tokenizer.decode(plain) == "<|im_start|>Instruct: Is it so?\nAnswer:"  # the pretrained models' wrapper


# --- prompts over max_length (evaluation.truncation) ---------------------------------------------

INSTRUCTION = "Summarize the above answer as YES, NO, or MAYBE?"


def long_pubmed_row() -> dict:
    """A PubMedQA row of a real abstract's length (about 280 words in four sections, over 512
    tokens in any template for the tiny tokenizer): the question of one embedded row, the
    passage made of the next four rows' sections."""
    rows = embedded_rows("pubmed_qa")
    sections = [" ".join(row["context"]["contexts"]) for row in rows[1:5]]
    return {**rows[0], "context": {**rows[0]["context"], "contexts": sections}}


def long_squad_row(dataset: str) -> dict:
    row = embedded_rows(dataset)[0]
    return {**row, "context": " ".join([row["context"]] * 8)}


def test_passage_truncation_keeps_the_question_and_the_instruction(tokenizer):
    row = long_pubmed_row()
    encoder = PromptEncoder(tokenizer, "io", 512, "passage", dataset="pubmed_qa", passage=["context.contexts"])
    templates, excess = shipped_templates("pubmed_qa"), 0
    for template in templates:
        whole = encoder.encode([template.render(row)])[0]
        excess += len(whole) - 512
        (ids,) = encoder.prompts(template, [row], [7], seed=0)
        text = tokenizer.decode(ids)
        assert len(whole) > 560 and 504 <= len(ids) <= 512  # fits, and the passage lost no more than it had to
        assert row["question"] in text and f"{INSTRUCTION}\n<|output|>" in text, text
        assert row["context"]["contexts"][0] in text and row["context"]["contexts"][-1][-200:] not in text
        assert INSTRUCTION not in tokenizer.decode(whole[:512])  # what the authors' right cut keeps
    assert encoder.counts["passage_shortened"] == len(templates) and encoder.counts["truncated_right"] == 0
    assert excess <= encoder.counts["passage_shortened_tokens"] <= excess + 8 * len(templates)


def test_passage_truncation_draws_the_same_random_words_and_leaves_short_prompts_alone(tokenizer):
    """question_num_hint_answer draws its first words at random: the shortened prompt keeps them."""
    template = {t.name: t for t in shipped_templates("squadshifts_nyt")}["question_num_hint_answer"]
    rows = embedded_rows("squadshifts_nyt")[1:4]
    rows[1] = long_squad_row("squadshifts_nyt")
    right = PromptEncoder(tokenizer, "io", 512, "right", dataset="squadshifts_nyt")
    passage = PromptEncoder(tokenizer, "io", 512, "passage", dataset="squadshifts_nyt", passage=["context"])
    cut, shortened = right.prompts(template, rows, [1, 2, 3], seed=5), passage.prompts(template, rows, [1, 2, 3], seed=5)
    assert shortened[0] == cut[0] and shortened[2] == cut[2] and len(shortened[1]) <= 512
    head = re.compile(r"(Question|Problem) \d+: ")
    assert head.search(tokenizer.decode(shortened[1])).group() == head.search(tokenizer.decode(cut[1])).group()
    assert passage.counts["passage_shortened"] == right.counts["truncated_right"] == 1


def test_right_truncation_keeps_the_first_max_length_tokens_as_the_authors(tokenizer):
    rows = [long_pubmed_row(), *embedded_rows("pubmed_qa")[5:7]]
    encoder = PromptEncoder(tokenizer, "plain", 512, "right", dataset="pubmed_qa")
    cut = 0
    for template in shipped_templates("pubmed_qa"):
        whole = encode_prompts(tokenizer, [p.strip() for p in render_all(template, rows, 42)], "plain")
        assert encoder.prompts(template, rows, [0, 5, 6], seed=42) == [whole[0][:512], whole[1], whole[2]]
        cut += len(whole[0]) - 512
    assert encoder.counts == {"truncated_right": 5, "truncated_right_tokens": cut, "passage_shortened": 0,
                              "passage_shortened_tokens": 0}
    for template in shipped_templates("squadshifts_nyt"):  # the same words drawn at random as render_all's
        rows = embedded_rows("squadshifts_nyt")
        whole = encode_prompts(tokenizer, [p.strip() for p in render_all(template, rows, 42)], "plain")
        assert encoder.prompts(template, rows, list(range(len(rows))), seed=42) == whole


def test_fail_truncation_names_the_dataset_template_row_and_lengths(tokenizer):
    template = shipped_templates("pubmed_qa")[0]
    rows = [embedded_rows("pubmed_qa")[3], long_pubmed_row()]
    encoder = PromptEncoder(tokenizer, "io", 512, "fail", dataset="pubmed_qa")
    length = len(encoder.encode([template.render(rows[1])])[0])
    with pytest.raises(EvaluationError, match=re.escape(
            f"pubmed_qa: template {template.name!r}, row 7: the prompt is {length} tokens, over "
            "evaluation.max_length 512 (evaluation.truncation: fail)")):
        encoder.prompts(template, rows, [3, 7], seed=0)


def test_a_prompt_too_long_even_without_its_passage_names_the_row(tokenizer):
    template = shipped_templates("pubmed_qa")[0]
    row = {**long_pubmed_row(), "question": "Is it so? " * 300}
    encoder = PromptEncoder(tokenizer, "io", 512, "passage", dataset="pubmed_qa", passage=["context.contexts"])
    with pytest.raises(EvaluationError, match=re.escape(f"pubmed_qa: template {template.name!r}, row 4: the prompt is ")
                       + r"\d+ tokens with an empty passage \(context\.contexts\), over evaluation\.max_length 512"):
        encoder.prompts(template, [row], [4], seed=0)
    with pytest.raises(EvaluationError, match="pubmed_qa: evaluation.truncation is 'passage', but no passage field"):
        PromptEncoder(tokenizer, "io", 512, "passage", dataset="pubmed_qa")


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
    encoder = PromptEncoder(tokenizer, "plain", max_length=512, truncation="right", dataset="test")
    prompts = encoder.encode(["Is the sky blue?", "A much longer question about " * 5 + "grass?"])
    choices = [[encoder.answer(t) for t in texts]] * len(prompts)
    for favourite in range(3):
        token = tokenizer(texts[favourite], add_special_tokens=False)["input_ids"][0]
        scores = score_choices(crafted_model(tiny_model_dir, token), prompts, choices, batch_tokens=4096,
                               pad_id=tokenizer.pad_token_id)
        for row in scores:
            assert max(range(3), key=row.__getitem__) == favourite
            assert row[favourite] > max(s for j, s in enumerate(row) if j != favourite) + 10


def test_batched_scoring_equals_per_choice_scoring(model, tokenizer):
    encoder = PromptEncoder(tokenizer, "io", max_length=512, truncation="right", dataset="contract_nli")
    rows = embedded_rows("contract_nli")[:5]
    prompts, choices = [], []
    for template in shipped_templates("contract_nli")[:3]:
        answers = [encoder.answer(t) for t in template.answer_texts]
        prompts += encoder.prompts(template, rows, range(5), seed=0)
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


def run_cli(tmp_path, tiny_model_dir, dataset: str, spec: dict, params: dict, rows: list[dict] | None = None,
            wrapper: str = "io") -> tuple[dict, pd.DataFrame, dict]:
    """The evaluate command on ``rows`` (default: the embedded test split), ``spec`` the dataset's
    resolved entry: its result, predictions and manifest."""
    test = tmp_path / f"{dataset}.parquet"
    tmp_path.mkdir(exist_ok=True)
    pd.DataFrame(rows or embedded_rows(dataset)).to_parquet(test)
    out = tmp_path / "eval" / f"{dataset}.json"
    argv = ["--model", str(tiny_model_dir), "--wrapper", wrapper, "--dataset", dataset,
            "--task-type", spec["task_type"], "--test", str(test), "--params", json.dumps(params),
            "--templates", json.dumps(spec["templates"]), "--labels", json.dumps(spec.get("labels")),
            "--fields", json.dumps(spec["test_fields"]), "--passage", json.dumps(spec["passage"]), "--out", str(out),
            "--predictions", str(tmp_path / "eval" / f"{dataset}.predictions.parquet"),
            "--target", "tiny", "--threads", "1", "--device", "cpu"]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "eval" / f"{dataset}.manifest.json").read_text())
    return json.loads(out.read_text()), pd.read_parquet(tmp_path / "eval" / f"{dataset}.predictions.parquet"), manifest


def test_cli_with_the_chat_wrapper(tmp_path, tiny_model_dir, local_config):
    """The local instruction-tuned target is evaluated under `chat`: the CLI takes it and the
    predictions come from the tokenizer's chat template."""
    import shutil

    model = tmp_path / "chat_model"
    shutil.copytree(tiny_model_dir, model)
    tokenizer = load_tokenizer(model)
    tokenizer.chat_template = ("{% for m in messages %}<s>User: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}Assistant:{% endif %}")
    tokenizer.save_pretrained(model)
    params = {**PARAMS, "truncation": "right"}
    result, predictions, _ = run_cli(tmp_path, model, "pubmed_qa", local_config["datasets"]["pubmed_qa"], params,
                                     wrapper="chat")
    assert result["wrapper"] == "chat" and len(predictions) == 5 * PARAMS["max_examples"]


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
    params = {**PARAMS, "truncation": local_config["evaluation"]["truncation"]}  # the local scale's: passage
    result, predictions, manifest = run_cli(tmp_path, tiny_model_dir, dataset, local_config["datasets"][dataset], params)
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


@pytest.mark.parametrize("dataset", ["pubmed_qa", "squadshifts_amazon"])  # rank classification and generation
def test_the_manifest_counts_prompts_over_max_length_by_mode(tmp_path, tiny_model_dir, dataset, local_config):
    rows = embedded_rows(dataset)[:3]
    rows[1] = long_pubmed_row() if dataset == "pubmed_qa" else long_squad_row(dataset)
    params = {**PARAMS, "max_examples": None, "max_new_tokens": 2}
    counts = {}
    for mode in ("right", "passage"):
        result, _, manifest = run_cli(tmp_path / mode, tiny_model_dir, dataset, local_config["datasets"][dataset],
                                      {**params, "truncation": mode}, rows)
        counts[mode] = {k: manifest["counts"][k] for k in ("truncated_right", "truncated_right_tokens",
                                                           "passage_shortened", "passage_shortened_tokens")}
        assert result["truncation"] == {"mode": mode, **counts[mode]} and manifest["params"]["truncation"] == mode
        assert manifest["counts"]["prompts"] == 15
    assert counts["right"]["truncated_right"] == 5 and counts["right"]["truncated_right_tokens"] > 5 * 40
    assert counts["passage"]["passage_shortened"] == 5 and counts["passage"]["passage_shortened_tokens"] > 5 * 40
    assert counts["right"]["passage_shortened"] == counts["passage"]["truncated_right"] == 0
    with pytest.raises(EvaluationError, match=re.escape(f"{dataset}: template ") + r".*, row 1: the prompt is \d+ "
                       r"tokens, over evaluation.max_length 512 \(evaluation.truncation: fail\)"):
        run_cli(tmp_path / "fail", tiny_model_dir, dataset, local_config["datasets"][dataset],
                {**params, "truncation": "fail"}, rows)


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
    from bonito_repro.prepare import target_data
    from bonito_repro.core.config import load_config

    rows = [{"id": i, "clause": f"The tenant may end the lease with {i + 1} months' notice in writing.",
             "question": f"Can the tenant leave with {i + 1 + i % 2} months' notice?", "answer": "NY"[i % 2]}
            for i in range(8)]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "corpus.jsonl").write_text('{"input": "The landlord repairs the roof."}\n')
    (tmp_path / "legal_qa.yaml").write_text(LEGAL_QA)
    (tmp_path / "run.yaml").write_text(f"run: {{datasets: [{tmp_path / 'legal_qa.yaml'}]}}\n")
    spec = load_config(REPO / "config.yaml", tmp_path / "run.yaml")["datasets"]["legal_qa"]
    templates = templates_of(spec)
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
                 "--labels", json.dumps(spec["labels"]), "--fields", json.dumps(spec["test_fields"]),
                 "--params", json.dumps(PARAMS), "--out", str(out), "--predictions", str(predictions),
                 "--threads", "1", "--device", "cpu"]) == 0
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
    (verbatim("{{q}}|||{{a}}", "Yes ||| No"), "ynqa",
     "--templates of mine: template 'mine': answer_choices need the dataset's labels"),
])
def test_the_cli_checks_the_templates_it_is_given(tmp_path, templates, task_type, message):
    argv = ["--model", str(tmp_path), "--wrapper", "io", "--dataset", "mine", "--task-type", task_type,
            "--test", str(tmp_path / "t.parquet"), "--templates", json.dumps(templates),
            "--fields", json.dumps({"required": {"q": "str", "a": "str"}}),
            "--params", json.dumps(PARAMS), "--out", str(tmp_path / "out.json"), "--device", "cpu"]
    with pytest.raises(ValueError, match=re.escape(message)):  # EvaluationError or TemplateError
        main(argv)


def test_unmapped_label_is_an_error_naming_the_row():
    rows = [{"label": "SUPPORTS"}, {"label": "supports"}]
    labels = {"field": "label", "map": {"SUPPORTS": "yes", "REFUTES": "no", "NOT ENOUGH INFO": "maybe"}}
    with pytest.raises(EvaluationError, match=r"^test\.parquet: row 7: label 'supports' is not in the "
                                              r"dataset's labels\.map"):
        gold_labels(rows, labels, "test.parquet", row_ids=[3, 7])


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
    encoder = PromptEncoder(tokenizer, "io", max_length=512, truncation="right", dataset="squadshifts_amazon")
    answer = encoder.answer("about 30 hours")
    examples = []
    for template in shipped_templates("squadshifts_amazon"):
        examples += [(p, answer) for p in encoder.prompts(template, rows, range(3), EXQA_PARAMS["seed"])]
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
    spec = load_dataset_file("squadshifts_amazon", "embedded")[1]
    return ["--model", str(tiny_model_dir), "--adapter", str(adapter), "--wrapper", "io",
            "--dataset", "squadshifts_amazon", "--task-type", "exqa", "--test", str(test),
            "--templates", json.dumps(spec["templates"]), "--fields", json.dumps(spec["test_fields"]),
            "--params", json.dumps({**EXQA_PARAMS, "generation_backend": backend}),
            "--out", str(out), "--threads", "1", "--device", "cpu"]


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
