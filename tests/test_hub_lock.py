"""The Hub lock (bonito_repro.core.hub_lock; docs/cluster.md, "The Hub lock"): the file, the
commit every download job gets as a param under it, a revision it lacks, the main table's caption,
and the whole cycle against a local Hub whose branches move: the preflight locks, a branch moves,
a run with the lock reads the former commit, and after --refresh-lock exactly the downloads whose
commit changed run again, at the new one."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bonito_repro.cluster.preflight import hub_references
from bonito_repro.core import layout
from bonito_repro.core.config import check_params, load_scale
from bonito_repro.core.hub_lock import HubLockError, lock_key, read_lock, write_lock
from bonito_repro.localhub.build import SPEC_PATH, build
from bonito_repro.localhub.server import move_branch
from bonito_repro.reporting.main_table import write_tables
from bonito_repro.workflow.dag import Dag
from conftest import REPO, SNAKEMAKE, dry_run_jobs, serve_local_hub, snakemake
from test_main_table import predictions_for, scores_for


def sha_of(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def lock_of(config: dict, path: Path, leave_out: str | None = None):
    """A lock holding a made-up commit for every revision the config reads (but `leave_out`)."""
    commits = {"models": {}, "datasets": {}}
    for ref in hub_references(config):
        key = lock_key(ref.hub)
        if key != leave_out:
            commits[f"{ref.repo_type}s"][key] = sha_of(key)
    return write_lock(path, commits, "https://huggingface.co")


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_scale("paper", REPO)


def test_the_lock_file_round_trips_and_a_broken_one_is_named(tmp_path):
    path = tmp_path / "hub.lock.yaml"
    lock = write_lock(path, {"models": {"org/model@main": "a" * 40}}, "http://hub")
    assert read_lock(path) == lock and lock.endpoint == "http://hub" and lock.commits["datasets"] == {}
    assert lock.pin({"id": "org/model", "revision": "main"}, "model", "models.m.hub")["sha"] == "a" * 40
    assert lock.summary() == {"file": "hub.lock.yaml", "sha256": lock.digest[:12], "written": lock.written}
    assert read_lock(tmp_path / "absent.yaml") is None
    path.write_text("models:\n  org/model@main: 123\ndatasets: [a]\n")
    with pytest.raises(HubLockError, match=r"models\.org/model@main: 123 is not .* sha.*; datasets: expected"):
        read_lock(path)


def test_under_a_lock_every_download_gets_its_commit_as_a_param(paper, tmp_path):
    """Model specs, the datasets' origins, ctga's, the released sets' and the backtranslation seed's:
    each with its locked commit, valid for the stage's own --params check; nothing else changes."""
    config = copy.deepcopy(paper)
    config["generators"]["released"] = {"kind": "published", "origin": {"hub": {
        "id": "BatsResearch/bonito-experiment", "config": "bonito_{dataset}", "split": "train", "revision": "main"}}}
    lock = lock_of(config, tmp_path / "hub.lock.yaml")
    dag, unlocked = Dag(config, lock), Dag(config)
    for model in config["models"]:
        spec = dag.model_spec(model)
        assert spec["hub"]["sha"] == sha_of(lock_key(spec["hub"]))
        assert check_params(spec, "model", flag="--spec")
        assert {k: v for k, v in spec["hub"].items() if k != "sha"} == unlocked.model_spec(model)["hub"]
    for dataset in config["datasets"]:
        for kind in ("unannotated", "test"):
            hub = config["datasets"][dataset][kind]["hub"]
            assert dag.data_origin(dataset, kind)["hub"] == {**hub, "sha": sha_of(lock_key(hub))}
        assert dag.published_origin("released", dataset)["hub"]["sha"] == sha_of("BatsResearch/bonito-experiment@main")
    ctga = check_params(dag.ctga_hp(), "ctga")
    assert all(origin["hub"]["sha"] == sha_of(lock_key(origin["hub"])) for origin in ctga["p3_datasets"].values())
    assert "sha" not in ctga["published"]["hub"]  # not read: this run builds ctga-v1
    assert dag.seed_origin("backtranslation")["hub"]["sha"] == sha_of("OpenAssistant/oasst1@main")
    assert unlocked.ctga_hp() == config["ctga"] and "sha" not in unlocked.data_origin("pubmed_qa", "test")["hub"]


def test_a_revision_the_lock_lacks_stops_only_the_jobs_that_read_it(paper, tmp_path):
    lock = lock_of(paper, tmp_path / "hub.lock.yaml", leave_out="meta-llama/Llama-2-7b-hf@main")
    dag = Dag(paper, lock)
    assert dag.model_spec("mistral_7b")["hub"]["sha"]
    with pytest.raises(HubLockError, match=r"models\.llama2_7b\.hub: model meta-llama/Llama-2-7b-hf@main is not in "
                                           r"the Hub lock .*hub\.lock\.yaml.*run `bonito-repro preflight`"):
        dag.model_spec("llama2_7b")


@pytest.mark.dag
def test_a_run_whose_lock_lacks_a_revision_says_which_and_what_to_do(paper, tmp_path):
    lock_of(paper, tmp_path / "hub.lock.yaml", leave_out="BatsResearch/bonito-experiment-eval@main")
    result = snakemake("-n", "--profile", "slurm", "-d", str(tmp_path), layout.test_split("pubmed_qa"),
                       layout.model_dir("mistral_7b"))
    assert result.returncode != 0
    assert ("pubmed_qa.yaml: test: dataset BatsResearch/bonito-experiment-eval@main is not in the Hub lock"
            in result.stdout + result.stderr)


def test_the_main_table_caption_names_the_lock(tmp_path):
    local = load_scale("local", REPO)
    scores = scores_for(local)
    lock = {"file": "hub.lock.yaml", "sha256": "0123456789ab", "written": "2026-12-08T10:00:00+00:00"}
    for hub_lock, expected in ((lock, "read at the commits of the Hub lock hub.lock.yaml (sha256 0123456789ab, "
                                      "written 2026-12-08T10:00:00+00:00)"),
                               (None, "Hub revisions not locked")):
        write_tables(scores, {**local, "hub_lock": hub_lock}, tmp_path, predictions_for(scores))
        assert expected in (tmp_path / "main_table.md").read_text().split("\n\n")[0]
        assert expected in (tmp_path / "main_table.tex").read_text()
    write_tables(scores, local, tmp_path, predictions_for(scores))  # a run that reads nothing from the Hub
    assert "Hub" not in (tmp_path / "main_table.md").read_text().split("\n\n")[0]
    assert "hub_lock" not in Dag(local).main_table_params()


def test_the_preflight_locks_new_revisions_keeps_locked_ones_and_refreshes_on_request(tmp_path, monkeypatch):
    """The lock step against an in-process local Hub: it adds what the lock lacks, keeps a branch
    that moved at its locked commit (a warning line) without rewriting the file, and re-resolves
    everything with refresh, dropping what the run no longer reads."""
    import huggingface_hub.constants

    from bonito_repro.cluster import preflight
    from bonito_repro.cluster.preflight import HubReference, check_lock
    from bonito_repro.localhub.server import make_server

    root = tmp_path / "repos"
    for folder, name, path in (("models", "org/model", "config.json"), ("datasets", "org/data", "README.md"),
                               ("datasets", "org/old", "README.md")):
        (root / folder / name / "main").mkdir(parents=True)
        (root / folder / name / "main" / path).write_text("{}")
    refs = [HubReference("models.m.hub", "model", {"id": "org/model", "revision": "main"}),
            HubReference("datasets.d.test", "dataset", {"id": "org/data", "revision": "main"}),
            HubReference("datasets.o.test", "dataset", {"id": "org/old", "revision": "main"}),
            HubReference("datasets.x.test", "dataset", {"id": "org/absent", "revision": "main"})]
    monkeypatch.setattr(preflight, "hub_references", lambda config: refs)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets it
    path = tmp_path / "hub.lock.yaml"

    def step(refresh: bool = False) -> dict[str, tuple[str, str]]:
        srv = make_server(root)  # a fresh server sees the branches as they are on disk now
        srv.serve_in_threads()
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", srv.endpoint)
        try:
            checks, lock = check_lock({}, path, refresh)
        finally:
            srv.stop()
        assert lock == read_lock(path)
        return {c.item: (c.status, c.detail) for c in checks}

    lines = step()
    lock = read_lock(path)
    assert lines[str(path)] == ("ok", f"3 revisions, sha256 {lock.digest[:12]}, written {lock.written}: 3 added now, 0 "
                                      "refreshed to a new commit, 0 moved on the Hub since, 1 not locked (they "
                                      "cannot be read: see their hub checks)")
    assert set(lock.commits["models"]) == {"org/model@main"} and lock.endpoint.startswith("http://127.0.0.1:")
    former, now = move_branch(root, "model", "org/model", "main", {"config.json": b'{"moved": 1}'})
    assert lock.commits["models"]["org/model@main"] == former
    lines = step()
    assert lines["org/model@main"] == ("warn", f"locked at {former[:10]}, now at {now[:10]} on the Hub: the run reads "
                                               "the locked commit (--refresh-lock to read the new one)")
    assert read_lock(path) == lock  # not rewritten: same digest, same date
    assert lines["endpoint"][0] == "warn"  # this step's server has another port: another Hub
    refs[2:] = []  # the run reads org/old no more
    lines = step(refresh=True)
    assert lines["org/model@main"] == ("ok", f"refreshed: {former[:10]} -> {now[:10]}")
    assert read_lock(path).commits == {"models": {"org/model@main": now},
                                       "datasets": {"org/data@main": lock.commits["datasets"]["org/data@main"]}}


# ---------------------------------------------------------------- against a local Hub whose branches move
# one target, one dataset and a released set in place of Bonito (nothing else read from the Hub)
RELEASED = {"kind": "published", "origin": {"hub": {"id": "BatsResearch/bonito-experiment", "config": "bonito_{dataset}",
                                                     "split": "train", "revision": "main"}}}
OVERLAY = {"run": {"targets": ["llama2_7b"], "datasets": ["pubmed_qa"], "sources": ["released"]},
           "generators": {"released": RELEASED},
           "ablations": {"generators": {"generators": ["released"]}, "size": {"generator": "released"},
                         "domain": {"generator": "released"}},
           "generation": {"backend": "transformers"}, "evaluation": {"generation_backend": "transformers"},
           "environments": {"main": None, "vllm": ".venv-vllm/bin/python",
                            "requirements": {"main": ["requirements.txt", "requirements-nodeps.txt"],
                                             "vllm": ["requirements-vllm.txt", "requirements-nodeps.txt"]}}}
MODEL, EVAL = "meta-llama/Llama-2-7b-hf", "BatsResearch/bonito-experiment-eval"
DOWNLOADS = {"prepare_model": layout.model_dir("llama2_7b", ".manifest.json"),
             "test_set": layout.test_split("pubmed_qa", ".manifest.json"),
             "unannotated": layout.unannotated("pubmed_qa", ".manifest.json")}


def small_hub_root(base: Path) -> Path:
    """The local Hub's repositories this run reads, nothing else (a build of seconds)."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    experiment = spec["datasets"]["BatsResearch/bonito-experiment"]["main"]
    spec["datasets"] = {
        "BatsResearch/bonito-experiment": {"main": {**experiment, "configs": {
            k: v for k, v in experiment["configs"].items() if k in ("unannotated_pubmed_qa", "bonito_pubmed_qa")}}},
        EVAL: {"main": {**spec["datasets"][EVAL]["main"], "configs": {"pubmed_qa": "test/pubmed_qa"}}}}
    spec["models"] = {MODEL: spec["models"][MODEL]}
    (base / "spec.yaml").write_text(yaml.safe_dump(spec))
    return build(base / "repos", base / "spec.yaml")


def move_branches(root: Path, tmp: Path) -> dict[str, tuple[str, str]]:
    """New commits on main: the model's chat template, and one test row fewer."""
    import datasets

    config = root / "models" / MODEL / "main" / "tokenizer_config.json"
    template = {**json.loads(config.read_text()), "chat_template": "{{ 'moved' }}"}
    model = move_branch(root, "model", MODEL, "main", {"tokenizer_config.json": json.dumps(template).encode()})
    rows = datasets.load_from_disk(str(root / "datasets" / EVAL / "main" / "pubmed_qa"))
    rows.select([0]).save_to_disk(str(tmp / "one"))
    files = {f"pubmed_qa/{p.name}": p.read_bytes() for p in (tmp / "one").iterdir()}
    return {MODEL: model, EVAL: move_branch(root, "dataset", EVAL, "main", files)}


def preflight(hub, hf: Path, overlay: Path, lock: Path, *flags: str) -> str:
    done = hub.run(["preflight", "--configfile", overlay, "--lock", lock, "--results", lock.parent / "results",
                    "--no-gpu-check", *flags], hf, token=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def lock_lines(report: str) -> dict[str, tuple[str, str]]:
    """The preflight's lock lines: item -> (status, detail)."""
    rows = [line.split(None, 3) for line in report.splitlines()]
    return {row[2]: (row[0], row[3]) for row in rows if len(row) == 4 and row[1] == "lock"}


def run(hub, hf: Path, workdir: Path, overlay: Path) -> list[str]:
    """The three downloads, as Snakemake runs them in `workdir`; the rules of the jobs that ran."""
    env = {**hub.env(hf, token=True), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run([*SNAKEMAKE, *DOWNLOADS.values(), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-c1",
                           "--configfile", str(overlay)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return sorted(job.rule for job in dry_run_jobs(done.stdout + done.stderr))


def manifest(workdir: Path, rule: str) -> dict:
    return json.loads((workdir / DOWNLOADS[rule]).read_text())


def tokenizer_config(workdir: Path) -> dict:
    return json.loads((workdir / layout.model_dir("llama2_7b") / "tokenizer_config.json").read_text())


@pytest.mark.slow  # a local Hub of its own, two preflights, two runs of three downloads
def test_a_locked_run_reads_the_locked_commits_until_the_lock_is_refreshed(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY))
    workdir, hf = tmp_path / "work", tmp_path / "hf"
    lock_path = workdir / "hub.lock.yaml"
    workdir.mkdir()
    root = small_hub_root(tmp_path)
    hub, server = serve_local_hub(root, tmp_path)
    try:  # the first run's preflight locks the three repositories' main
        report = preflight(hub, hf, overlay, lock_path)
        lock = read_lock(lock_path)
        assert lock_lines(report) == {str(lock_path): ("ok", f"3 revisions, sha256 {lock.digest[:12]}, written "
                                                             f"{lock.written}: 3 added now, 0 refreshed to a new "
                                                             "commit, 0 moved on the Hub since")}
    finally:
        server.terminate()
        server.wait(timeout=10)
    moved = move_branches(root, tmp_path)  # a month later: two branches moved on the Hub
    assert {k: lock.commits[f"{t}s"][f"{k}@main"] for t, k in (("model", MODEL), ("dataset", EVAL))} == \
        {k: former for k, (former, _) in moved.items()}
    hub, server = serve_local_hub(root, tmp_path)
    try:
        # the run, with the lock, reads the former commits
        assert run(hub, hf, workdir, overlay) == sorted(DOWNLOADS)
        assert manifest(workdir, "prepare_model")["hub"]["sha"] == moved[MODEL][0]
        assert "chat_template" not in tokenizer_config(workdir)
        assert manifest(workdir, "test_set")["hub"]["sha"] == moved[EVAL][0]
        assert len(pd.read_parquet(workdir / layout.test_split("pubmed_qa"))) == 2
        unannotated = (workdir / DOWNLOADS["unannotated"]).stat().st_mtime_ns

        # after a refresh exactly the two downloads whose commit changed run again, at the new commits
        report = preflight(hub, hf, overlay, lock_path, "--refresh-lock")
        lines = lock_lines(report)
        assert lines[str(lock_path)][1].endswith("0 added now, 2 refreshed to a new commit, 0 moved on the Hub since")
        assert lines[f"{MODEL}@main"] == ("ok", f"refreshed: {moved[MODEL][0][:10]} -> {moved[MODEL][1][:10]}")
        assert read_lock(lock_path).digest != lock.digest
        assert run(hub, hf, workdir, overlay) == ["prepare_model", "test_set"]
        assert manifest(workdir, "prepare_model")["hub"]["sha"] == moved[MODEL][1]
        assert tokenizer_config(workdir)["chat_template"] == "{{ 'moved' }}"
        assert manifest(workdir, "test_set")["hub"]["sha"] == moved[EVAL][1]
        assert len(pd.read_parquet(workdir / layout.test_split("pubmed_qa"))) == 1
        assert (workdir / DOWNLOADS["unannotated"]).stat().st_mtime_ns == unannotated
    finally:
        server.terminate()
        server.wait(timeout=10)
