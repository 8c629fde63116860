"""Task generation: parsing and the funnel on crafted outputs, shard resume, a tiny trained
generator through the transformers backend, the CLI's outputs and errors, the parse check of a
trained generator, bagel's formats, and the vLLM backend really run in its own environment."""
from __future__ import annotations

import functools
import json
import re
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.core.config import load_scale
from bonito_repro.core.errors import InputError
from bonito_repro.runtime.backends import token_batches, vllm_lora_rank
from bonito_repro.generate import generate_tasks as generate_tasks_on, run_generation as run_generation_on
from bonito_repro.generate.cli import main
from bonito_repro.generate.formats import FORMATS, alpaca, chatml, llama2, vicuna
from bonito_repro.generate.funnel import REASONS, NgramIndex, probe_texts
from bonito_repro.generate.shards import passage_seed
from bonito_repro.core.prompts import bonito_input, bonito_output
from conftest import REPO

# every generation here runs on this machine's CPU
generate_tasks = functools.partial(generate_tasks_on, device="cpu")
run_generation = functools.partial(run_generation_on, device="cpu")

VLLM_PY = REPO / ".venv-vllm" / "bin" / "python"
PASSAGES = ["The heart pumps blood through the body.", "Rain falls when clouds get heavy.",
            "Bees make honey from flowers."]
QUESTION = "{{context}}\nIs this true?"


def generation(**changes) -> dict:
    """The paper's generation section with a test's changes (stages have no defaults in code)."""
    return {**load_scale("paper", REPO)["generation"], **changes}


class Scripted:
    """A backend that answers each passage with given completions, and can fail on a call."""

    def __init__(self, answers: dict[str, list[str]], task_type: str = "exqa", fail_on_call: int | None = None,
                 short: bool = False):
        self.by_prompt = {bonito_input(p, task_type): a for p, a in answers.items()}
        self.fail_on_call, self.short, self.calls = fail_on_call, short, 0

    def generate(self, prompts, seeds):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("backend died")
        out = [list(self.by_prompt[p]) for p in prompts]
        return out[:-1] if self.short else out


@pytest.fixture(scope="module")
def embed():
    from bonito_repro.generate.embeddings import Embedder

    return Embedder("cpu")


# --- parsing and the funnel -------------------------------------------------------------------

TEST_ROWS = [{"question": "Which river did the explorers follow north to reach the great lake in the spring?",
              "answers": {"text": ["the Nile"], "answer_start": [0]}},
             {"question": "Who wrote it?", "answers": {"text": ["a monk"], "answer_start": [0]}}]
CRAFTED = {
    "Passage one is about the sea.": ["no pipe at all"],
    "Passage two is about hills.": ["a <|pipe|> b <|pipe|> c"],
    "Passage three is about rain.": ["{{context}}\nWhat falls?\n<|pipe|>\n  "],
    "Passage four is about snow.": ["<|pipe|>\nsnow"],
    "Passage five is about wind.": ["{{context}}\nWhat moves the clouds?\n<|pipe|>\nwind"],
    "Sailors in old harbours watched the sky for storms.": ["{{context}}\nWhat moves the clouds?\n<|pipe|>\nwind"],
    "Passage seven is about the Nile.": [
        "{{context}}\nWhich river did the explorers follow north to reach the great lake in the spring?"
        "\n<|pipe|>\nthe Nile"],
    "Passage eight is about books.": ["{{context}}\nWho was the author of the book?\n<|pipe|>\nthe monk Bede"],
}
DUPLICATE = "Passage five is about wind."
TEXTS = list(CRAFTED) + [DUPLICATE]  # the last passage repeats the fifth: an exact duplicate task


def test_funnel_on_crafted_outputs(embed):
    result = run_generation(TEXTS, "exqa", generation(), backend=Scripted(CRAFTED), test_rows=TEST_ROWS, embed=embed)
    reasons = list(result.records["reason"])
    # "wind" is no span of the sailors' passage, "the monk Bede" none of the books' (extractive QA)
    assert reasons == ["unparsable", "unparsable", "empty", "empty", "clean", "answer_not_in_passage",
                       "contaminated", "answer_not_in_passage", "exact_duplicate"]
    funnel = result.summary["funnel"]
    assert funnel == {"generated": 9, "unparsable": 2, "empty": 2, "exact_duplicate": 1, "near_duplicate": 0,
                      "contaminated": 1, "answer_not_in_passage": 2, "clean": 1}
    assert sum(funnel[r] for r in REASONS) + funnel["clean"] == funnel["generated"]
    # by default only the format filter removes rows; the rest is measured and kept
    assert result.summary["removed"] == {"unparsable": 2, "empty": 2}
    assert result.summary["kept"] == 5 == len(result.rows)
    assert result.records["near_duplicate"].tolist()[-1]  # an exact duplicate is near one too
    assert [r["context_id"] for r in result.rows] == [4, 5, 6, 7, 8]
    assert result.rows[0] == {"input": "Passage five is about wind.\nWhat moves the clouds?", "output": "wind",
                              "context_id": 4}


def test_filters_remove_only_when_configured(embed):
    params = generation(filters={"exact_duplicates": True, "near_duplicates": True, "contaminated": True,
                                 "answer_not_in_passage": False})
    result = run_generation(TEXTS, "exqa", params, backend=Scripted(CRAFTED), test_rows=TEST_ROWS, embed=embed)
    assert result.summary["removed"] == {"unparsable": 2, "empty": 2, "exact_duplicate": 1, "near_duplicate": 0,
                                         "contaminated": 1}
    assert result.summary["kept"] + sum(result.summary["removed"].values()) == 9
    assert [r["context_id"] for r in result.rows] == [4, 5, 7]
    answers = generation(filters={**params["filters"], "answer_not_in_passage": True})
    result = run_generation(TEXTS, "exqa", answers, backend=Scripted(CRAFTED), test_rows=TEST_ROWS, embed=embed)
    assert result.summary["removed"]["answer_not_in_passage"] == 2
    assert [r["context_id"] for r in result.rows] == [4]


def test_near_duplicate_is_a_paraphrase_on_the_same_passage(embed):
    text = "The war ended in 1945 after six years."
    two_samples = {text: ["{{context}}\nWhat year did the war end?\n<|pipe|>\n1945",
                          "{{context}}\nIn which year did the war end?\n<|pipe|>\n1945"]}
    result = run_generation([text], "exqa", generation(n=2), backend=Scripted(two_samples), embed=embed)
    assert result.records["reason"].tolist() == ["clean", "near_duplicate"]
    assert result.records["sample"].tolist() == [0, 1] and len(result.rows) == 2


def test_ngram_contamination_rules():
    queries, answers = probe_texts(TEST_ROWS + [{"hypothesis": "The party may share data.", "premise": "x"},
                                                {"claim": "Paris is large.", "label": "SUPPORTS"}])
    assert queries[2:] == ["The party may share data.", "Paris is large."] and answers == ["the Nile", "a monk"]
    index = NgramIndex(queries, answers + ["one two three four five six seven eight nine ten eleven twelve thirteen"], 13)
    assert index.matches("Q: which river did the explorers follow north to reach the great lake in the spring")
    assert index.matches("Is it true that the party may share data?")  # a short hypothesis, whole
    assert not index.matches("The party may share the data.")
    assert not index.matches("It was the Nile, said a monk.")  # short answers recur in test passages
    assert index.matches("... one two three four five six seven eight nine ten eleven twelve thirteen!")


def test_vllm_reserves_a_lora_rank_it_allows():
    """vLLM 0.32 takes max_lora_rank from a fixed set (1, 8, 16, ...): an adapter of rank 4 (the
    local Hub's P3 adapters) made every vLLM evaluation of a P3 target fail to start."""
    assert [vllm_lora_rank(r) for r in (1, 4, 8, 9, 64, 300, 512)] == [1, 8, 8, 16, 64, 320, 512]
    with pytest.raises(ValueError, match="up to 512"):
        vllm_lora_rank(513)


def test_token_batches_respect_the_budget():
    lengths = [5, 30, 12, 30, 7, 100]
    batches = list(token_batches([2 * (n + 20) for n in lengths], 200))  # n=2 samples, 20 new tokens
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert batches[0] == [5]  # too long for a partner: alone, longest first
    for batch in batches:
        width = max(lengths[i] for i in batch) + 20
        assert len(batch) == 1 or len(batch) * 2 * width <= 200
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


def test_passage_seeds_are_spread():
    seeds = [passage_seed(42, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**31 for s in seeds)
    assert all(abs(a - b) > 1 for a, b in zip(seeds, seeds[1:]))


# --- shards and resume ------------------------------------------------------------------------

RESUME = {f"Passage {i} tells a story about the number {i}.": [f"{{{{context}}}}\nWhat number?\n<|pipe|>\n{i}"]
          for i in range(7)}


def test_killed_job_resumes_without_duplicated_or_lost_rows(tmp_path, embed):
    texts = list(RESUME)
    params = generation(shard_size=2)
    reference = run_generation(texts, "exqa", params, backend=Scripted(RESUME), embed=embed).rows
    shards = tmp_path / "shards"
    with pytest.raises(RuntimeError, match="backend died"):
        run_generation(texts, "exqa", params, backend=Scripted(RESUME, fail_on_call=3), shards_dir=shards,
                       embed=embed)
    assert len(list(shards.glob("shard-*.parquet"))) == 2  # the two finished shards, nothing else
    assert not list(shards.glob(".*"))  # no half-written file left behind
    (shards / ".shard-00002-stale.parquet.tmp").write_text("half a shard from a killed write")

    rerun = Scripted(RESUME)
    result = run_generation(texts, "exqa", params, backend=rerun, shards_dir=shards, embed=embed)
    assert rerun.calls == 2  # shards 2 and 3 only
    assert (result.shards["total"], result.shards["reused"], result.shards["generated"]) == (4, 2, 2)
    assert result.rows == reference
    assert sorted(r["context_id"] for r in result.rows) == list(range(7))

    again = Scripted(RESUME)
    assert run_generation(texts, "exqa", params, backend=again, shards_dir=shards, embed=embed).rows == reference
    assert again.calls == 0


def test_failed_call_is_never_recorded(tmp_path, embed):
    shards = tmp_path / "shards"
    with pytest.raises(RuntimeError, match="nothing recorded"):
        run_generation(list(RESUME), "exqa", generation(shard_size=3), backend=Scripted(RESUME, short=True),
                       shards_dir=shards, embed=embed)
    assert not list(shards.glob("*.parquet"))


def test_changed_sampling_does_not_reuse_shards(tmp_path, embed):
    shards = tmp_path / "shards"
    first = Scripted(RESUME)
    run_generation(list(RESUME), "exqa", generation(shard_size=4), backend=first, shards_dir=shards, embed=embed)
    changed = Scripted(RESUME)
    run_generation(list(RESUME), "exqa", generation(shard_size=4, temperature=0.7), backend=changed,
                   shards_dir=shards, embed=embed)
    assert first.calls == changed.calls == 2


# --- a tiny trained generator -----------------------------------------------------------------

@contextmanager
def one_thread():
    """Tiny models train fastest on one thread (two oversubscribe a shared 2-core machine)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def memorise(model, tokenizer, answer: str, steps: int = 100):
    """Train until the model reproduces the Bonito format for PASSAGES (seconds, tiny model)."""
    from bonito_repro.runtime.models import encode_with_bos

    ids = encode_with_bos(tokenizer, [bonito_input(p, "ynqa") + bonito_output(QUESTION, answer)
                                      + tokenizer.eos_token for p in PASSAGES])
    width = max(map(len, ids))
    x = torch.full((len(ids), width), tokenizer.pad_token_id)
    for row, seq in enumerate(ids):
        x[row, :len(seq)] = torch.tensor(seq)
    mask = (torch.arange(width)[None, :] < torch.tensor([len(s) for s in ids])[:, None]).long()
    labels = x.masked_fill(mask == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    model.train()
    for _ in range(steps):
        model(input_ids=x, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def tiny_generator(tiny_model_dir, tmp_path_factory):
    """(full model that answers "yes", LoRA adapter on it that answers "no"): the adapter visibly
    changes what is generated, so a backend that ignored it would fail the tests."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from bonito_repro.runtime.models import load_tokenizer

    out = tmp_path_factory.mktemp("generator")
    tokenizer = load_tokenizer(tiny_model_dir)
    with one_thread():
        model = memorise(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, "yes")
        model.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"])
        memorise(get_peft_model(model, lora), tokenizer, "no", steps=60).save_pretrained(out / "adapter")
    return out / "model", out / "adapter"


def test_generate_tasks_with_the_tiny_generator(tiny_generator, embed):
    model, adapter = tiny_generator
    rows = generate_tasks(PASSAGES, "ynqa", generation(backend="transformers", bf16=False, n=2, max_new_tokens=32),
                          model_dir=model)
    assert [r["context_id"] for r in rows] == [0, 0, 1, 1, 2, 2]
    assert {r["output"] for r in rows} == {"yes"}
    assert rows[2]["input"] == f"{PASSAGES[1]}\nIs this true?"
    adapted = generate_tasks(PASSAGES, "yes-no question answering",
                             generation(backend="transformers", bf16=False, max_new_tokens=32),
                             model_dir=model, adapter_dir=adapter)
    assert [(r["context_id"], r["output"]) for r in adapted] == [(0, "no"), (1, "no"), (2, "no")]


def test_generate_tasks_takes_a_dataset_column_and_returns_the_funnel(tiny_generator):
    from datasets import Dataset

    model, _ = tiny_generator
    params = generation(backend="transformers", bf16=False, max_new_tokens=32)
    tasks = generate_tasks(Dataset.from_dict({"text": PASSAGES, "id": [1, 2, 3]}), "ynqa", params,
                           column="text", model_dir=model)
    assert tasks == generate_tasks(PASSAGES, "ynqa", params, model_dir=model)
    assert tasks.counts["funnel"]["generated"] == 3 and tasks.counts["kept"] == 3
    assert tasks.generator == {"path": str(model.resolve())}
    with pytest.raises(ValueError, match=r"column='body' is not a column of the dataset \(\['text', 'id'\]\)"):
        generate_tasks(Dataset.from_dict({"text": PASSAGES, "id": [1, 2, 3]}), "ynqa", params, column="body",
                       model_dir=model)
    with pytest.raises(ValueError, match="passage 1 is not a non-empty string: None"):
        generate_tasks([PASSAGES[0], None], "ynqa", params, model_dir=model)


API_SCRIPT = """
import json, sys
from bonito_repro.generate import generate_tasks

passages, params, cache = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
found = {}
for generator in ("BatsResearch/bonito-v1", "bonito_v1"):
    tasks = generate_tasks(passages, "ynqa", params, generator=generator, backend="transformers",
                           device="cpu", cache_dir=cache)
    found[generator] = {"rows": tasks, "kept": tasks.counts["kept"], "generator": tasks.generator}
print(json.dumps(found))
"""


@pytest.mark.slow  # a local Hub and a subprocess that loads torch twice
def test_generate_tasks_from_a_hub_id_or_a_declared_name(tiny_generator, tmp_path):
    """The published generator by its Hub id and by its config name: a crafted model laid out as
    bonito-v1 is (pickled weights on main) on a local Hub; it is read at the commit main points
    at, converted to safetensors once in the cache (the second call downloads nothing) and
    generates exactly what the same model generates from its folder."""
    from safetensors.torch import load_file

    from bonito_repro.localhub import server as hubserver
    from conftest import serve_local_hub

    model, _ = tiny_generator
    repo = tmp_path / "hub" / "models" / "BatsResearch" / "bonito-v1" / "main"
    repo.mkdir(parents=True)
    for path in model.iterdir():
        if path.suffix != ".safetensors":
            (repo / path.name).write_bytes(path.read_bytes())
    torch.save(load_file(model / "model.safetensors"), repo / "pytorch_model.bin")
    (tmp_path / "hub" / "tokens.json").write_text(json.dumps({"hf_test": "tester"}))
    hub, server = serve_local_hub(tmp_path / "hub", tmp_path)
    try:
        params = generation(backend="transformers", bf16=False, max_new_tokens=32)
        result = subprocess.run([sys.executable, "-c", API_SCRIPT, json.dumps(PASSAGES), json.dumps(params),
                                 str(tmp_path / "cache")], env=hub.env(tmp_path / "hf"), capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        downloads = [r["path"] for r in hub.requests() if r["method"] == "GET" and r["endpoint"] in ("resolve", "cdn")]
    finally:
        server.terminate()
        server.wait(timeout=10)
    found = json.loads(result.stdout)
    sha = hubserver.load_repos(tmp_path / "hub")[("model", "BatsResearch/bonito-v1")].find("main").sha
    expected = generate_tasks(PASSAGES, "ynqa", params, model_dir=model)
    by_id, by_name = found["BatsResearch/bonito-v1"], found["bonito_v1"]
    assert by_id["rows"] == by_name["rows"] == list(expected)
    assert by_id["kept"] == 3
    assert by_id["generator"] == {"id": "BatsResearch/bonito-v1", "revision": "main", "sha": sha}
    assert by_name["generator"] == {"name": "bonito_v1", **by_id["generator"]}
    cached = tmp_path / "cache" / "models" / "BatsResearch--bonito-v1" / sha
    assert list(cached.glob("*.safetensors")) and not list(cached.glob("*.bin"))
    assert len(downloads) == len(set(downloads)), downloads  # the second call read the cache
    assert len([path for path in downloads if path.startswith("/blobs/")]) == 1, downloads  # the pickle, from the CDN


def test_parse_check_counts_the_trained_generator_against_its_base(tiny_model_dir, tmp_path):
    """`python -m bonito_repro parse-check` on the random tiny model and a LoRA on it that learnt
    the Bonito format: the adapter parses on every context, the untrained base on none."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from bonito_repro.runtime.models import load_tokenizer

    with one_thread():
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora)
        memorise(model, load_tokenizer(tiny_model_dir), "no").save_pretrained(tmp_path / "adapter")
    validation = tmp_path / "validation.parquet"
    pd.DataFrame({"input": [bonito_input(p, "ynqa") for p in PASSAGES]}).to_parquet(validation)
    params = {"contexts": 16, "max_new_tokens": 32, "bf16": False}
    assert bonito_repro(["parse-check", "--base", str(tiny_model_dir), "--adapter", str(tmp_path / "adapter"),
                         "--validation", str(validation), "--params", json.dumps(params),
                         "--out", str(tmp_path / "parse_check.json"), "--threads", "1", "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "parse_check.json").read_text())
    assert record["counts"] == {"contexts": 3, "trained_parsed": 3, "base_parsed": 0}  # all 3 of 16 asked
    assert (record["trained"], record["base"]) == (1.0, 0.0) and record["params"] == params
    assert record["trained_example"].endswith("<|pipe|>\nno")


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    passages, test = tmp_path / "passages.parquet", tmp_path / "test.parquet"
    pd.DataFrame({"input": [PASSAGES[0], "   ", PASSAGES[1], PASSAGES[2]]}).to_parquet(passages)
    pd.DataFrame([{"question": "Is this true?", "final_decision": "yes"}]).to_parquet(test)
    return passages, test


def _cli(tmp_path, passages, test, model, params, extra=(), shards=None):
    out = tmp_path / "out"
    args = ["--dataset", "pubmed_qa", "--task-type", "ynqa", "--passages", str(passages), "--test", str(test),
            "--model", str(model), "--params", json.dumps(params), "--shards", str(shards or tmp_path / "shards"),
            "--out", str(out / "pubmed_qa.parquet"), "--manifest", str(out / "pubmed_qa.manifest.json"),
            "--records", str(out / "pubmed_qa.funnel.parquet"), "--formats", str(out / "pubmed_qa.formats"),
            "--device", "cpu", *extra]
    return out, args


def test_a_passage_too_long_for_the_context_is_dropped_or_split_by_config(tiny_model_dir):
    """generation.long_passages: `drop` leaves it out, `split` cuts it into overlapping pieces
    that each fit, all under its context_id; both counted (once, a long passage stopped the
    whole dataset)."""
    from bonito_repro.generate.inputs import fit_passages
    from bonito_repro.generate.synthetic_tasks import kind_positions
    from bonito_repro.runtime.models import encode_with_bos, load_tokenizer
    from bonito_repro.core.prompts import bonito_input

    tokenizer = load_tokenizer(tiny_model_dir)
    positions = kind_positions("bonito", "ynqa", tokenizer, 32)
    short, long = PASSAGES[0], " ".join([PASSAGES[1]] * 12)
    prompt_tokens = [len(ids) for ids in encode_with_bos(tokenizer, [bonito_input(t, "ynqa") for t in (short, long)])]
    limit = prompt_tokens[0] + 40 + 32  # the short passage fits with room to spare; the long one does not
    assert prompt_tokens[1] + 32 > limit
    dropped = fit_passages([short, long], [0, 1], tokenizer, limit,
                           generation(max_new_tokens=32, long_passages="drop"), positions)
    assert dropped == ([short], [0], {"long_passages": 1, "long_passage_pieces": 0})
    texts, ids, counts = fit_passages([short, long], [0, 1], tokenizer, limit,
                                      generation(max_new_tokens=32, long_passages="split", split_overlap=8), positions)
    assert texts[0] == short and ids == [0] + [1] * (len(texts) - 1) and counts["long_passages"] == 1
    pieces = texts[1:]
    assert len(pieces) == counts["long_passage_pieces"] >= 2
    for piece in pieces:
        assert len(encode_with_bos(tokenizer, [bonito_input(piece, "ynqa")])[0]) + 32 <= limit
        assert piece in long
    overlap = tokenizer.decode(tokenizer(pieces[0], add_special_tokens=False)["input_ids"][-8:]).strip()
    assert pieces[1].startswith(overlap.split()[0])  # the next piece repeats the end of the one before
    with pytest.raises(InputError, match="split_overlap"):  # an overlap as wide as the room left
        fit_passages([long], [1], tokenizer, limit, generation(max_new_tokens=32, long_passages="split",
                                                               split_overlap=limit), positions)


def test_cli_counts_the_long_passages_it_drops(tiny_generator, tmp_path, embed):
    model, adapter = tiny_generator
    passages, test = _inputs(tmp_path)
    long = " ".join([PASSAGES[0]] * 400)  # beyond the tiny model's 4,096 positions
    pd.DataFrame({"input": [PASSAGES[0], long, PASSAGES[1]]}).to_parquet(passages)
    params = generation(backend="transformers", bf16=False, n=1, max_new_tokens=16, long_passages="drop")
    out, args = _cli(tmp_path, passages, test, model, params, ["--adapter", str(adapter), "--threads", "1"])
    assert main(args) == 0
    manifest = json.loads((out / "pubmed_qa.manifest.json").read_text())
    assert manifest["counts"]["long_passages"] == 1 and manifest["drops"]["long_passage"] == 1
    assert pd.read_parquet(out / "pubmed_qa.parquet")["context_id"].tolist() == [0, 2]


def test_cli_writes_rows_funnel_plot_and_formats(tiny_generator, tmp_path, embed, capsys):
    model, adapter = tiny_generator
    passages, test = _inputs(tmp_path)
    params = generation(backend="transformers", bf16=False, n=2, max_new_tokens=32, shard_size=2)
    out, args = _cli(tmp_path, passages, test, model, params, ["--adapter", str(adapter), "--threads", "1"])
    assert main(args) == 0
    rows = pd.read_parquet(out / "pubmed_qa.parquet")
    assert list(rows.columns) == ["input", "output", "context_id"]
    assert rows["context_id"].tolist() == [0, 0, 2, 2, 3, 3]  # row indices in the passages file
    assert set(rows["output"]) == {"no"}
    manifest = json.loads((out / "pubmed_qa.manifest.json").read_text())
    assert manifest["counts"] == {"passages_in_file": 4, "blank_passages": 1, "passages": 3, "long_passages": 0,
                                  "long_passage_pieces": 0, "generated": 6, "kept": 6}
    # every task copies the test question: measured, not removed (the paper filters by format only)
    assert manifest["funnel"]["contaminated"] + manifest["funnel"]["exact_duplicate"] == 6
    assert manifest["flagged"]["contaminated"] == 6 and manifest["drops"] == {}
    assert manifest["shards"]["total"] == 2 and manifest["shards"]["generated"] == 2
    # the funnel plot is drawn from the manifest alone (rule funnel_plot)
    assert bonito_repro(["plot", "funnel", "--manifest", str(out / "pubmed_qa.manifest.json"),
                         "--params", json.dumps({"dpi": 100}), "--out", str(out / "pubmed_qa.funnel.png")]) == 0
    assert (out / "pubmed_qa.funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_parquet(out / "pubmed_qa.funnel.parquet")) == 6
    for name in FORMATS:
        lines = (out / "pubmed_qa.formats" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == 6 and json.loads(lines[0])["output"] == "no"

    # filtering contamination now leaves nothing: an error naming the dataset and its funnel,
    # and the finished shards are reused rather than generated again
    filtered = {**params, "filters": {"exact_duplicates": False, "near_duplicates": False, "contaminated": True,
                                      "answer_not_in_passage": False}}
    out2, args2 = _cli(tmp_path / "second", passages, test, model, filtered, ["--adapter", str(adapter)],
                       shards=tmp_path / "shards")
    capsys.readouterr()
    assert bonito_repro(["generate", *args2]) == 1  # one line, no traceback, the manifest written
    error = capsys.readouterr().err
    assert "Traceback" not in error and re.search(r"^bonito-repro generate: dataset 'pubmed_qa': no synthetic task "
                                                  r"survived .*'contaminated': 6.*every drop is counted in "
                                                  r".*pubmed_qa\.manifest\.json$", error, re.M)
    assert not (out2 / "pubmed_qa.parquet").exists()
    stopped = json.loads((out2 / "pubmed_qa.manifest.json").read_text())
    assert stopped["counts"]["generated"] == 6 and stopped["counts"]["kept"] == 0
    assert stopped["drops"] == {"contaminated": 6} and stopped["stopped"].startswith("dataset 'pubmed_qa'")


def test_cli_published_origin(tmp_path, embed):
    published = tmp_path / "bonito_pubmed_qa.parquet"
    pd.DataFrame({"input": ["A passage.\nIs it?", "B passage.\nIs it?", "bad"],
                  "output": ["yes", "no", ""]}).to_parquet(published)
    _, test = _inputs(tmp_path)
    out = tmp_path / "out"
    assert main(["--dataset", "pubmed_qa", "--task-type", "ynqa", "--test", str(test),
                 "--params", json.dumps(generation()), "--published", json.dumps({"files": str(published)}), "--out", str(out / "p.parquet"),
                 "--manifest", str(out / "p.json"), "--device", "cpu"]) == 0
    rows = pd.read_parquet(out / "p.parquet")
    assert rows["output"].tolist() == ["yes", "no"] and rows["context_id"].isna().all()
    assert json.loads((out / "p.json").read_text())["drops"] == {"empty": 1}


def test_cli_names_a_missing_or_bad_generation_key(tmp_path):
    passages, test = _inputs(tmp_path)
    params = generation(temperature="hot")
    del params["top_p"]
    _, args = _cli(tmp_path, passages, test, tmp_path, params)
    with pytest.raises(SystemExit, match=r"generation: 'top_p' is a required property"):
        main(args)
    with pytest.raises(SystemExit, match=r"generation\.temperature: 'hot' is not of type"):
        main(args)


def test_formats_follow_bagel():
    assert alpaca("Q?") == ("Below is an instruction that describes a task.  Write a response that "
                            "appropriately completes the request.\n\n### Instruction: \nQ?\n\n### Response:\n")
    assert vicuna(" Q? ") == "USER: Q?\nASSISTANT: "
    assert chatml("Q?") == "user\nQ?\n</s>\n<s>assistant\n"
    assert llama2("Q?") == "[INST] Q? [/INST]"


def test_adapter_with_full_modules_is_merged_for_vllm(tiny_model_dir, tmp_path):
    """vLLM serves LoRA but refuses modules_to_save (the smoke adapter's lm_head): such an
    adapter is merged into a temporary model directory that vLLM loads instead."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from bonito_repro.runtime.backends import merge_adapter
    from bonito_repro.runtime.models import load_for_inference

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    with torch.no_grad():
        peft_model.base_model.model.lm_head.modules_to_save["default"].weight.normal_()
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = merge_adapter(tiny_model_dir, tmp_path / "adapter")
    expected = load_for_inference(tiny_model_dir, tmp_path / "adapter").state_dict()
    got = load_for_inference(merged.name).state_dict()
    assert torch.equal(got["lm_head.weight"], expected["lm_head.weight"])
    assert (Path(merged.name) / "tokenizer.json").exists()
    merged.cleanup()
    assert not Path(merged.name).exists()


# --- vLLM, really run in its own environment --------------------------------------------------

@pytest.mark.vllm
@pytest.mark.skipif(not VLLM_PY.exists(), reason=f"{VLLM_PY} is missing (make setup-vllm)")
def test_vllm_backend_serves_the_adapter(tiny_generator, tmp_path):
    model, adapter = tiny_generator
    passages, test = _inputs(tmp_path)
    out, args = _cli(tmp_path, passages, test, model, generation(backend="vllm", bf16=False, n=2, max_new_tokens=32,
                                                                  vllm={"gpu_memory_utilization": 0.9, "enforce_eager": True}),
                     ["--adapter", str(adapter), "--threads", "1"])
    # one process instead of vLLM's three: the same engine, a minute less start-up on 2 cores
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    run = subprocess.run([str(VLLM_PY), "-m", "bonito_repro", "generate", *args], capture_output=True, text=True,
                         env=env, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = pd.read_parquet(out / "pubmed_qa.parquet")
    assert rows["context_id"].tolist() == [0, 0, 2, 2, 3, 3]
    assert set(rows["output"]) == {"no"}  # the LoRA adapter was served
    manifest = json.loads((out / "pubmed_qa.manifest.json").read_text())
    assert manifest["params"]["backend"] == "vllm" and "vllm-cpu" in manifest["versions"]
    assert manifest["funnel"]["generated"] == 6


@pytest.mark.vllm
@pytest.mark.skipif(not VLLM_PY.exists(), reason=f"{VLLM_PY} is missing (make setup-vllm)")
def test_vllm_seeded_sampling_survives_a_chunked_prefill(tiny_generator, tmp_path):
    """More prompt tokens than one engine step takes (4,096 on CPU): vLLM then prefills a prompt
    in chunks, and vllm-cpu 0.32 fails rewinding a seeded request's CPU generator ("CPU
    Generator does not use offset") unless chunked prefill is off."""
    model, adapter = tiny_generator
    long = " ".join(PASSAGES * 12)
    prompts = [bonito_input(f"{i}. {long}", "ynqa") for i in range(60)]  # about 300 tokens each
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    script = ("import json, sys\n"
              "from bonito_repro.runtime.backends import Sampling, VLLMBackend\n"
              "prompts = json.load(open(sys.argv[3]))\n"
              "backend = VLLMBackend(sys.argv[1], sys.argv[2], Sampling(n=1, temperature=0.5, top_p=0.95, max_new_tokens=4), max_model_len=1024, seed=42, device='cpu')\n"
              "try:\n"
              "    print(json.dumps([len(o) for o in backend.generate(prompts, list(range(len(prompts))))]))\n"
              "finally:\n"
              "    backend.close()\n")
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    run = subprocess.run([str(VLLM_PY), "-c", script, str(model), str(adapter), str(tmp_path / "prompts.json")],
                         capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [1] * 60


class FakeVLLM:
    """A stand-in ``vllm`` package that records the engine's arguments and answers nothing."""

    def __init__(self, monkeypatch):
        import sys
        import types

        self.engines: list[dict] = []
        fake = types.ModuleType("vllm")
        platforms = types.ModuleType("vllm.platforms")
        platforms.current_platform = types.SimpleNamespace(device_type="cpu", is_cpu=lambda: True)
        engines = self.engines

        class LLM:
            def __init__(self, **kwargs):
                engines.append(kwargs)

            def generate(self, prompts, params, **kwargs):
                return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text="")]) for _ in prompts]

        fake.LLM, fake.SamplingParams, fake.__version__ = LLM, lambda **kwargs: kwargs, "fake"
        fake.platforms = platforms
        monkeypatch.setitem(sys.modules, "vllm", fake)
        monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)


@pytest.mark.parametrize("eager", [False, True])
def test_vllm_enforce_eager_is_the_configs(eager, tiny_model_dir, monkeypatch):
    """generation.vllm.enforce_eager reaches vLLM's engine; the paper's config leaves it off (CUDA
    graphs on its GPUs), the CPU scales, the rehearsal (vLLM's CPU build) and the 24 GB
    workstation turn it on."""
    vllm = FakeVLLM(monkeypatch)
    monkeypatch.setattr("bonito_repro.runtime.backends.VLLMBackend.close", lambda self: None)
    engine = {"gpu_memory_utilization": 0.9, "enforce_eager": eager}
    generate_tasks(PASSAGES, "ynqa", generation(backend="vllm", bf16=False, max_new_tokens=8, vllm=engine),
                   model_dir=tiny_model_dir, backend="vllm")
    assert [e["enforce_eager"] for e in vllm.engines] == [eager]
    for section in ("generation", "evaluation"):
        assert load_scale("paper", REPO)[section]["vllm"]["enforce_eager"] is False
        for scale in ("local", "smoke", "rehearsal", "workstation"):
            assert load_scale(scale, REPO)[section]["vllm"]["enforce_eager"] is True, (scale, section)
