"""Hub access at paper scale, offline: the local Hub server itself (fast, in-process), and the
project's download commands run as workflow jobs against repositories laid out as the real ones
of config.yaml are (slow: each job is a Python process)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
import yaml

from bonito_repro.localhub import server as hubserver
from bonito_repro.localhub.build import rows_for
from bonito_repro.core.origins import OriginError, load_origin
from conftest import REPO

HUB_SPEC = yaml.safe_load((REPO / "src/bonito_repro/data/local_hub.yaml").read_text())


# ---------------------------------------------------------------- the server (in-process, fast)
@pytest.fixture(scope="module")
def paper() -> dict:
    """config.yaml as written (every model's Hub spec, not only those the paper's run selects)."""
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture
def small_hub(tmp_path, monkeypatch):
    """A server over two hand-written repositories, and an HfApi pointed at it (online)."""
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    root = tmp_path / "repos"
    data = root / "datasets" / "org" / "set"
    for revision, files in {"main": {"README.md": "---\n---\n", "set.py": "# script"},
                            "refs%2Fconvert%2Fparquet": {"cfg/train/0000.parquet": "PAR1"}}.items():
        for path, text in files.items():
            (data / revision / path).parent.mkdir(parents=True, exist_ok=True)
            (data / revision / path).write_text(text)
    model = root / "models" / "org" / "gated"
    for revision in ("main", "refs%2Fpr%2F5"):
        (model / revision).mkdir(parents=True)
        (model / revision / "config.json").write_text("{}")
    (model / "refs%2Fpr%2F5" / "model.safetensors").write_bytes(b"x" * 100)
    (model / "repo.json").write_text('{"gated": "manual"}')
    (root / "tokens.json").write_text('{"hf_test": "tester"}')
    (root / "gone.json").write_text('{"datasets": {"org/deleted": "deleted in a test"}}')
    srv = hubserver.make_server(root, log_path=tmp_path / "log.jsonl")
    srv.serve_in_threads()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets it
    yield srv, HfApi(endpoint=srv.endpoint), tmp_path / "log.jsonl"
    srv.stop()


def http(method: str, url: str, **headers) -> tuple[int, dict, bytes]:
    """One raw request (no redirect followed): status, headers, body."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.netloc, timeout=10)
    connection.request(method, parts.path, headers=headers)
    response = connection.getresponse()
    result = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return result


def test_server_answers_as_the_hub_does(small_hub, tmp_path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    srv, api, log = small_hub
    main = api.dataset_info("org/set")
    branch = api.dataset_info("org/set", revision="refs/convert/parquet")
    assert main.sha != branch.sha and len(main.sha) == 40
    assert api.dataset_info("org/set", revision=branch.sha).sha == branch.sha  # a sha is a revision
    assert sorted(s.rfilename for s in branch.siblings) == ["cfg/train/0000.parquet"]
    refs = api.list_repo_refs("org/set", repo_type="dataset")
    assert [(r.ref, r.target_commit) for r in refs.converts] == [("refs/convert/parquet", branch.sha)]
    prs = api.list_repo_refs("org/gated", include_pull_requests=True).pull_requests
    assert [r.ref for r in prs] == ["refs/pr/5"]
    tree = api.list_repo_tree("org/set", repo_type="dataset", revision="refs/convert/parquet", recursive=True)
    assert {(e.path, type(e).__name__) for e in tree} == {
        ("cfg", "RepoFolder"), ("cfg/train", "RepoFolder"), ("cfg/train/0000.parquet", "RepoFile")}
    [info] = api.get_paths_info("org/set", ["cfg/train/0000.parquet", "absent"], repo_type="dataset",
                                revision="refs/convert/parquet")
    assert info.lfs.sha256 == hubserver._blob(
        srv.hub.root / "datasets/org/set/refs%2Fconvert%2Fparquet/cfg/train/0000.parquet").sha256

    # resolve: plain files answered directly, LFS files by a redirect to the CDN origin
    status, headers, _ = http("HEAD", f"{srv.endpoint}/datasets/org/set/resolve/main/README.md")
    assert status == 200 and headers["X-Repo-Commit"] == main.sha and headers["Content-Length"] == "8"
    assert headers["ETag"].strip('"') == hubserver._blob(srv.hub.root / "datasets/org/set/main/README.md").oid
    status, lfs, _ = http("HEAD", f"{srv.endpoint}/datasets/org/set/resolve/refs%2Fconvert%2Fparquet/"
                          "cfg/train/0000.parquet")
    assert status == 302 and lfs["X-Linked-Size"] == "4" and lfs["X-Repo-Commit"] == branch.sha
    assert lfs["X-Linked-Etag"].strip('"') == info.lfs.sha256
    assert urlsplit(lfs["Location"]).port != urlsplit(srv.endpoint).port  # another origin, as a CDN
    assert http("GET", lfs["Location"], Range="bytes=1-2")[::2] == (206, b"AR")
    # the unquoted special ref, as the Hub also accepts it
    assert http("HEAD", f"{srv.endpoint}/datasets/org/set/resolve/refs/convert/parquet/"
                "cfg/train/0000.parquet")[0] == 302
    cache = tmp_path / "cache"
    path = hf_hub_download("org/set", "cfg/train/0000.parquet", repo_type="dataset",
                           revision="refs/convert/parquet", endpoint=srv.endpoint, cache_dir=cache)
    assert Path(path).read_text() == "PAR1"

    # errors carry the codes the libraries turn into their exceptions
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info("org/set", revision="refs/pr/9")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/absent")
    with pytest.raises(RepositoryNotFoundError):  # a deleted repository: 404, as the Hub answers it
        api.dataset_info("org/deleted")
    assert http("GET", f"{srv.endpoint}/api/datasets/org/deleted")[0] == 404
    assert http("GET", f"{srv.endpoint}/api/datasets/org/absent")[0] == 401  # unknown, no token
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/set", "absent.txt", repo_type="dataset", endpoint=srv.endpoint, cache_dir=cache)

    # gated: metadata is public, files need a valid token; an unknown token is refused
    assert api.model_info("org/gated").gated == "manual"
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "config.json", endpoint=srv.endpoint, cache_dir=cache)
    with pytest.raises(GatedRepoError):
        api.auth_check("org/gated")
    api.auth_check("org/gated", token="hf_test")
    assert hf_hub_download("org/gated", "model.safetensors", revision="refs/pr/5", token="hf_test",
                           endpoint=srv.endpoint, cache_dir=cache)
    assert api.whoami(token="hf_test")["name"] == "tester"
    with pytest.raises(HfHubHTTPError):
        api.whoami(token="hf_wrong")
    with pytest.raises(HfHubHTTPError):
        api.model_info("org/gated", token="hf_wrong")

    # an endpoint the server does not have is a 404 that the log marks as unhandled
    assert http("GET", f"{srv.endpoint}/api/datasets/org/set/parquet")[0] == 404
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[-1] == {"method": "GET", "path": "/api/datasets/org/set/parquet", "endpoint": None,
                           "status": 404}
    assert {r["endpoint"] for r in records[:-1]} <= set(hubserver.ENDPOINTS)


def test_a_moved_branch_keeps_its_former_commit_readable_by_sha(tmp_path, monkeypatch):
    """server.move_branch commits to a branch as a push to the Hub does: a server started afterwards
    lists the branch at its new commit and still serves the former one by its sha."""
    import huggingface_hub.constants
    from huggingface_hub import HfApi, hf_hub_download

    from bonito_repro.localhub.server import move_branch

    root = tmp_path / "repos"
    (root / "models/org/model/main").mkdir(parents=True)
    (root / "models/org/model/main/tokenizer_config.json").write_text('{"chat_template": "old"}')
    (root / "models/org/model/main/model.safetensors").write_bytes(b"w" * 10)
    former = hubserver.load_repos(root)[("model", "org/model")].find("main").sha
    moved = move_branch(root, "model", "org/model", "main", {"tokenizer_config.json": b'{"chat_template": "new"}',
                                                             "model.safetensors": None})
    assert moved[0] == former and moved[1] != former
    srv = hubserver.make_server(root)
    srv.serve_in_threads()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets it
    try:
        api = HfApi(endpoint=srv.endpoint)
        assert api.model_info("org/model").sha == moved[1]
        assert [r.target_commit for r in api.list_repo_refs("org/model").branches] == [moved[1]]
        assert api.model_info("org/model", revision=former).sha == former
        assert [e.path for e in api.list_repo_tree("org/model", revision=former)] == [
            "model.safetensors", "tokenizer_config.json"]
        for revision, template in ((former, "old"), ("main", "new")):
            path = hf_hub_download("org/model", "tokenizer_config.json", revision=revision,
                                   endpoint=srv.endpoint, cache_dir=tmp_path / "cache")
            assert json.loads(Path(path).read_text())["chat_template"] == template
        # the former commit's LFS file still comes from the CDN
        assert hf_hub_download("org/model", "model.safetensors", revision=former, endpoint=srv.endpoint,
                               cache_dir=tmp_path / "cache")
    finally:
        srv.stop()


# ---------------------------------------------------------------- the loaders, as workflow jobs
# The P3 datasets of config.yaml's ctga section that the local Hub serves, each in its real layout: Parquet on
# main by config name, script repositories with only the conversion branch (one config, several
# configs, the 2023 file names), and samsum's third-party copy (CSV files on main, an assumed layout).
CTGA_P3_DATASETS = ["super_glue/boolq", "super_glue/record", "super_glue/wsc.fixed", "super_glue/wic",
                    "super_glue/copa", "super_glue/rte", "super_glue/cb", "anli", "quartz",
                    "paws/labeled_final", "cosmos_qa", "wiki_hop/original", "xsum", "samsum"]
# what config.yaml named before the public record showed these repositories gone from the Hub
GONE_P3_DATASETS = {"samsum": {"hub": {"id": "Samsung/samsum", "split": "train", "revision": "refs/convert/parquet"}},
                    "wiki_hop/original": {"hub": {"id": "MoritzLaurer/wiki_hop", "config": "original", "split": "train",
                                                  "revision": "refs/convert/parquet"}}}


def served_sha(hub, repo_type: str, repo_id: str, revision: str) -> str:
    return hubserver.load_repos(hub.root)[(repo_type, repo_id)].find(revision).sha


def served_rows(repo_id: str, revision: str, config: str, split: str) -> list[dict]:
    """The rows the local Hub serves for a config and split (from the builder's spec)."""
    spec = HUB_SPEC["datasets"][repo_id][revision]
    return rows_for(spec["configs"][config] if "configs" in spec else spec["rows"], split)


def ok(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow  # two jobs, each a Python process
def test_paper_ctga_p3_datasets_download_then_build_offline(local_hub, tmp_path, paper):
    """The paper config's ctga P3 datasets load as configured: by name on main, by folder on the
    conversion branch, each at the commit its revision points at; the offline build reads exactly
    the downloaded commits."""
    hp = {**paper["ctga"], "max_examples_per_dataset": 20, "validation_size": 5,
          "p3_datasets": {name: paper["ctga"]["p3_datasets"][name] for name in CTGA_P3_DATASETS}}
    downloads = tmp_path / "downloads.json"
    ok(local_hub.run(["ctga", "download", "--manifest", downloads, "--params", json.dumps(hp)], tmp_path / "hf"))
    record = json.loads(downloads.read_text())
    for name in CTGA_P3_DATASETS:
        hub = hp["p3_datasets"][name]["hub"]
        folder = hub.get("config") or ("plain_text" if name == "anli" else "default")
        expected = served_rows(hub["id"], hub["revision"], folder, hub["split"])
        assert record["counts"][name] == len(expected), name  # wiki_hop: `original` only, not `masked`
        assert record["hub"][name]["sha"] == served_sha(local_hub, "dataset", hub["id"], hub["revision"]), name

    before = len(local_hub.requests())
    out = tmp_path / "ctga"
    ok(local_hub.run(["ctga", "build", "--train", out / "train.parquet", "--validation", out / "validation.parquet",
                      "--p3", out / "p3.parquet", "--manifest", out / "manifest.json", "--downloads", downloads,
                      "--params", json.dumps(hp)], tmp_path / "hf", offline=True))
    assert len(local_hub.requests()) == before  # offline: read from the downloaded files only
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"] == hp
    assert {n: s["sampled"] for n, s in manifest["counts"]["per_p3_dataset"].items()} == record["counts"]
    assert manifest["hub"] == {n: {k: r[k] for k in ("id", "revision", "sha")} for n, r in record["hub"].items()}

    # the downloaded files are read back only as the commit they were recorded for
    pinned = record["hub"]["wiki_hop/original"]
    assert len(load_origin({"hub": pinned}, "ctga")) == record["counts"]["wiki_hop/original"]
    with pytest.raises(OriginError, match="belong to another commit"):
        load_origin({"hub": {**pinned, "sha": "0" * 40}}, "ctga")


@pytest.mark.slow  # two jobs
def test_ctga_download_stops_at_a_source_gone_from_the_hub(local_hub, tmp_path, paper):
    """The rehearsal's ctga download on config.yaml's old samsum and wiki_hop entries: the local Hub
    answers 404 for them, as the Hub does, and the job stops naming the repository."""
    for name, origin in GONE_P3_DATASETS.items():
        hp = {**paper["ctga"], "p3_datasets": {name: origin}}
        done = local_hub.run(["ctga", "download", "--manifest", tmp_path / "downloads.json",
                              "--params", json.dumps(hp)], tmp_path / "hf")
        assert done.returncode != 0
        assert f"dataset {origin['hub']['id']}@refs/convert/parquet: repository not found" in done.stderr, done.stderr
    assert not (tmp_path / "downloads.json").exists()


@pytest.mark.slow  # one job
def test_rows_of_another_commit_are_refused(local_hub, tmp_path):
    """datasets answers a failed load (here a script-based main) with whatever it has cached for the
    repository, with only a log line: after the conversion branch was loaded, main "loads" the
    branch's rows. A load by commit refuses them."""
    script = """
import json
from bonito_repro.core.origins import OriginError, load_origin
spec = {"hub": {"id": "allenai/cosmos_qa", "split": "train", "revision": "refs/convert/parquet"}}
load_origin(spec, "ctga")
try:
    print(json.dumps(len(load_origin({"hub": {**spec["hub"], "revision": "main"}}, "ctga"))))
except OriginError as error:
    print(json.dumps(str(error)))
"""
    result = subprocess.run([sys.executable, "-c", script], env=local_hub.env(tmp_path / "hf"),
                            capture_output=True, text=True, timeout=300)
    ok(result)
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    main_sha = served_sha(local_hub, "dataset", "allenai/cosmos_qa", "main")
    branch_sha = served_sha(local_hub, "dataset", "allenai/cosmos_qa", "refs/convert/parquet")
    assert isinstance(answer, str), f"main returned {answer} rows (the branch's, from the cache)"
    assert f"commit {main_sha}" in answer and f"rows of commit {branch_sha}" in answer
    assert "script-based" in answer


@pytest.mark.slow  # three jobs
def test_target_data_and_published_sets_record_their_commit(local_hub, tmp_path, paper):
    """The data stage reads the paper's dataset files' Hub specs (bonito-experiment and -eval at
    main), and generate --published a published synthetic set; each manifest names the commit."""
    dataset = yaml.safe_load((REPO / "src/bonito_repro/data/datasets/vitaminc.yaml").read_text())
    eval_sha = served_sha(local_hub, "dataset", "BatsResearch/bonito-experiment-eval", "main")
    experiment_sha = served_sha(local_hub, "dataset", "BatsResearch/bonito-experiment", "main")
    test_args = ["--fields", json.dumps(dataset["test_fields"]), "--labels", json.dumps(dataset["labels"])]
    for kind, extra in (("unannotated", []), ("test", test_args)):
        out = tmp_path / f"{kind}.parquet"
        ok(local_hub.run(["target-data", kind, "--dataset", "vitaminc", "--origin", json.dumps({"hub": dataset[kind]["hub"]}),
                          *extra, "--out", out, "--manifest", tmp_path / f"{kind}.json"], tmp_path / "hf"))
        manifest = json.loads((tmp_path / f"{kind}.json").read_text())
        hub = dataset[kind]["hub"]
        assert manifest["hub"] == {**hub, "sha": eval_sha if kind == "test" else experiment_sha}
        assert len(pd.read_parquet(out)) == len(served_rows(hub["id"], "main", hub["config"], hub["split"]))

    spec = {"hub": {"id": "BatsResearch/bonito-experiment", "config": "bonito_vitaminc", "split": "train",
                    "revision": "main"}}
    generation = {**paper["generation"], "backend": "transformers"}
    ok(local_hub.run(["generate", "--dataset", "vitaminc", "--task-type", dataset["task_type"],
                      "--published", json.dumps(spec), "--test", tmp_path / "test.parquet",
                      "--params", json.dumps(generation), "--out", tmp_path / "synthetic.parquet",
                      "--manifest", tmp_path / "synthetic.json", "--device", "cpu"], tmp_path / "hf"))
    manifest = json.loads((tmp_path / "synthetic.json").read_text())
    assert manifest["provenance"]["published"]["hub"] == {**spec["hub"], "sha": experiment_sha}
    assert manifest["funnel"]["generated"] == len(served_rows("BatsResearch/bonito-experiment", "main",
                                                              "bonito_vitaminc", "train"))


@pytest.mark.slow  # four jobs
def test_paper_models_download_as_safetensors(local_hub, tmp_path, paper):
    """config.yaml's model specs against the repositories' real layouts: the P3 adapter (a pickle in
    adapter_model/), bonito-v1 (pickled shards on main) and a gated base model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from bonito_repro.runtime.models import load_for_inference

    def prepare(name: str, **env):
        return local_hub.run(["models", "--name", name, "--spec", json.dumps(paper["models"][name]),
                              "--out", tmp_path / name, "--manifest", tmp_path / f"{name}.json"],
                             tmp_path / "hf", **env)

    refused = prepare("mistral_7b")
    assert refused.returncode != 0 and "gated repository; set HF_TOKEN" in refused.stderr
    for name, env in (("mistral_7b", {"token": True}), ("mistral_7b_p3", {}), ("bonito_v1", {})):
        ok(prepare(name, **env))
        hub = json.loads((tmp_path / f"{name}.json").read_text())["hub"]
        spec = paper["models"][name]["hub"]
        assert hub["sha"] == served_sha(local_hub, "model", spec["id"], spec["revision"])
        assert not list((tmp_path / name).rglob("*.bin")) and list((tmp_path / name).glob("*.safetensors"))
        served = local_hub.root / "models" / spec["id"] / spec["revision"]
        for path, digest in hub["downloaded_sha256"].items():
            assert digest == hubserver._blob(served / path).sha256, path
        assert set(hub["files_sha256"]) == {p.name for p in (tmp_path / name).iterdir()}

    p3 = tmp_path / "mistral_7b_p3"
    assert sorted(p.name for p in p3.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    served = local_hub.root / "models/BatsResearch/Mistral-7B-v0.1-P3/main"
    ids = torch.tensor([[1, 5, 9, 42]])
    with torch.no_grad():
        base = load_for_inference(tmp_path / "mistral_7b")(ids).logits
        adapted = load_for_inference(tmp_path / "mistral_7b", p3)(ids).logits
        # peft reading the repository's own pickle, the way the authors' code loads it
        original = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "mistral_7b"),
                                             served, subfolder="adapter_model").merge_and_unload()(ids).logits
        bonito = load_for_inference(tmp_path / "bonito_v1")(ids).logits
        # the safetensors the Hub's conversion bot put on refs/pr/5, for comparison
        bot = load_for_inference(local_hub.root / "models/BatsResearch/bonito-v1/refs%2Fpr%2F5")(ids).logits
    assert not torch.allclose(adapted, base)
    assert torch.equal(adapted, original)
    assert torch.equal(bonito, bot)


@pytest.mark.slow  # one download
def test_a_token_never_reaches_a_log_or_manifest(local_hub, tmp_path, paper):
    """The gated base model downloads with HF_TOKEN from the environment; the token appears in
    neither the command's output (the job's log) nor its manifest nor the model folder."""
    result = local_hub.run(["models", "--name", "mistral_7b", "--spec", json.dumps(paper["models"]["mistral_7b"]),
                            "--out", tmp_path / "model", "--manifest", tmp_path / "model.json"], tmp_path / "hf",
                           token=True)
    ok(result)
    written = [(tmp_path / "model.json").read_text(errors="replace"),
               *(p.read_text(errors="replace") for p in (tmp_path / "model").iterdir() if p.suffix == ".json")]
    for text in (result.stdout, result.stderr, *written):
        assert local_hub.token not in text


@pytest.mark.slow  # reads what the slow tests above asked
def test_every_request_was_answered_by_a_real_endpoint(local_hub):
    """What huggingface_hub and datasets asked the local Hub during this session: each request
    reached one of the server's handlers (none fell through to the unknown-endpoint 404). Runs last
    in this module, so it sees the requests of the tests above."""
    seen = Counter((r["method"], r["endpoint"]) for r in local_hub.requests())
    print("endpoints called:", dict(sorted(seen.items(), key=str)))
    unknown = sorted({(r["method"], r["path"]) for r in local_hub.requests() if r["endpoint"] is None})
    assert not unknown, f"requests no handler answered: {unknown}"
    assert {endpoint for _, endpoint in seen} <= set(hubserver.ENDPOINTS)
