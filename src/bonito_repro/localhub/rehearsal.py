"""The rehearsal: config.yaml's DAG, shrunk by config/rehearsal.yaml, fed by the local Hub.

``python -m bonito_repro.localhub rehearse DIR [--configfile FILE ...] [-- SNAKEMAKE ARGS]`` (what
``make rehearsal`` runs) writes the local Hub's repositories under DIR/hub, serves them on
127.0.0.1 with a request log, and runs ``snakemake`` in DIR/work with ``HF_ENDPOINT`` at that
server, a fresh ``HF_HOME`` (DIR/hf, emptied first: a cached download must not stand in for one
that failed) and ``HF_TOKEN`` set to a token the server accepts (the gated base models need it).
Then it prints every Hub endpoint the libraries called and checks that each request was answered
as the Hub answers it (``check_requests``); the command fails if Snakemake or that check does. It
also prints, from Snakemake's log, how many GPU jobs ran and the most ``gpu`` they held at once
(``gpu_use``): under the workstation profile's ``resources: gpu=1``, never more than one.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from . import build, server

REHEARSAL_CONFIG = Path("config") / "rehearsal.yaml"
# Optional files huggingface_hub and datasets look for in every dataset revision they load; the
# Hub answers 404 EntryNotFound where a repository has none, and so does the local Hub.
PROBED_FILES = {"README.md", ".huggingface.yaml", "dataset_infos.json"}
PROBED_FOLDERS = {"data"}   # datasets lists data/ when a repository has no README configs


def _expected_miss(record: dict) -> bool:
    """A 404 the real Hub gives too: a probed optional file (or a dataset's loading script
    NAME.py, which datasets looks for to refuse it) that the revision does not have."""
    if record["status"] != 404 or record.get("error") != "EntryNotFound":
        return False
    parts = [p for p in record["path"].split("/") if p]
    if record["endpoint"] == "resolve" and parts[:1] == ["datasets"] and len(parts) >= 6:
        name = unquote("/".join(parts[5:])).rsplit("/", 1)[-1]
        return name in PROBED_FILES or name == f"{parts[2]}.py"
    if record["endpoint"] == "tree" and parts[:2] == ["api", "datasets"] and len(parts) >= 7:
        # under a config's folder too (data_dir): original%2Fdata
        return unquote("/".join(parts[6:])).rsplit("/", 1)[-1] in PROBED_FOLDERS
    return False


def check_requests(records: list[dict]) -> list[str]:
    """What in a request log was not served as the Hub serves it: a request no endpoint of the
    server handles, a server error, or a refusal other than a probe for an absent optional file
    (a 401, even from a gated repository, is one: the rehearsal runs with a token)."""
    problems = []
    for r in records:
        where = f"{r['method']} {r['path']} -> {r['status']} {r.get('error') or ''}".rstrip()
        if r["endpoint"] is None:
            problems.append(f"no such endpoint: {where}")
        elif r["status"] >= 400 and not _expected_miss(r):
            problems.append(f"not served: {where}")
    return problems


def endpoint_table(records: list[dict]) -> str:
    """Requests per (method, endpoint, status, error code), one line each."""
    counts = Counter((r["method"], str(r["endpoint"]), r["status"], r.get("error", "")) for r in records)
    lines = [f"{'method':6} {'endpoint':16} {'status':6} {'error':16} requests"]
    lines += [f"{m:6} {e:16} {s:<6} {c:16} {n}" for (m, e, s, c), n in sorted(counts.items())]
    return "\n".join(lines)


_JOB_BLOCK = re.compile(r"(?:local)?(?:rule|checkpoint) \S+:$")   # a job started (its fields indented below)
_ERROR_BLOCK = re.compile(r"Error in rule \S+:$")                 # a job failed (its jobid below)
_FINISHED = re.compile(r"Finished jobid: (\d+)")


@dataclass(frozen=True)
class GpuUse:
    """What a Snakemake run's GPU jobs held: the jobs that requested `gpu`, and the most `gpu` held
    at once with the jobs holding it then (`rule (jobid N)`)."""

    jobs: int
    peak: int
    at_peak: tuple[str, ...]


def gpu_use(log: str) -> GpuUse:
    """From a Snakemake run's log (`.snakemake/log/*.snakemake.log`), in the order it logged them:
    a job block (`rule X:` or `localrule X:`, its `jobid` and `resources` indented below) starts a
    job holding its `gpu`; `Finished jobid: N` or an `Error in rule X:` block naming the jobid
    ends it."""
    held: dict[str, tuple[str, int]] = {}
    jobs, peak, at_peak = 0, 0, ()
    block: tuple[str, str] | None = None    # (kind, rule) of the block being read
    fields: dict[str, str] = {}
    for line in [*log.splitlines(), ""]:
        if block and line[:1] in (" ", "\t"):
            key, _, value = line.strip().partition(": ")
            fields[key] = value
            continue
        if block:
            kind, rule = block
            if kind == "start":
                resources = dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if "=" in kv)
                gpu = int(resources.get("gpu", 0))
                if gpu:
                    jobs += 1
                    held[fields["jobid"]] = (rule, gpu)
                    if sum(g for _, g in held.values()) > peak:
                        peak = sum(g for _, g in held.values())
                        at_peak = tuple(f"{r} (jobid {j})" for j, (r, _) in held.items())
            else:
                held.pop(fields.get("jobid", ""), None)
            block, fields = None, {}
        if _JOB_BLOCK.match(line):
            block = ("start", line.split()[-1].rstrip(":"))
        elif _ERROR_BLOCK.match(line):
            block = ("error", line.split()[-1].rstrip(":"))
        elif finished := _FINISHED.match(line):
            held.pop(finished.group(1), None)
    return GpuUse(jobs, peak, at_peak)


def snakemake_log(workdir: Path, since: float) -> Path | None:
    """The log Snakemake wrote for a run in `workdir` that started at `since` (time.time())."""
    logs = [p for p in (workdir / ".snakemake" / "log").glob("*.snakemake.log") if p.stat().st_mtime >= since]
    return max(logs, key=lambda p: p.stat().st_mtime, default=None)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def rehearse(directory: Path, configfiles: list[Path], snakemake_args: list[str], repo: Path) -> int:
    """Build and serve the local Hub, run the workflow against it, check its requests."""
    hub_root = build.build(directory / "hub" / "repos")
    log = directory / "hub" / "requests.jsonl"
    log.unlink(missing_ok=True)
    hf_home = directory / "hf"
    shutil.rmtree(hf_home, ignore_errors=True)
    token = next(iter(json.loads((hub_root / "tokens.json").read_text())))
    hub = server.make_server(hub_root, log_path=log)
    hub.serve_in_threads()
    # the checkout's package, even where the environment's editable install is another checkout's
    pythonpath = os.pathsep.join(p for p in (str(repo / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(hf_home), "HF_TOKEN": token,
           "PYTHONPATH": pythonpath}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
               "-d", str(directory / "work"), "--configfile", *map(str, configfiles),
               *(snakemake_args or ["--cores", "all"])]
    print(f"local Hub at {hub.endpoint}; HF_HOME={hf_home}\n$ {' '.join(command)}", flush=True)
    start, started_at = time.monotonic(), time.time()
    try:
        status = subprocess.run(command, cwd=repo, env=env).returncode
    finally:
        hub.stop()
    records = read_log(log)
    print(f"snakemake exited with {status} after {time.monotonic() - start:.0f} s; "
          f"{len(records)} Hub requests:\n{endpoint_table(records)}")
    run_log = snakemake_log(directory / "work", started_at)
    if run_log and "This was a dry-run" not in (text := run_log.read_text()):  # a dry run starts no job
        use = gpu_use(text)
        print(f"{use.jobs} GPU jobs; at most {use.peak} gpu held at once ({', '.join(use.at_peak) or 'none'}); "
              f"Snakemake's log: {run_log}")
    problems = check_requests(records)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return status or int(bool(problems))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bonito_repro.localhub rehearse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="where the Hub, HF_HOME and the run's results go")
    parser.add_argument("--configfile", type=Path, action="append",
                        help=f"overlays on config.yaml (default: {REHEARSAL_CONFIG}; repeat for more)")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the checkout (default: here)")
    parser.epilog = "Arguments after -- go to snakemake (default: --cores all)."
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.snakemake_args = argv[split + 1:]
    repo = args.repo.resolve()
    configfiles = [(repo / p).resolve() for p in (args.configfile or [REHEARSAL_CONFIG])]
    return rehearse(args.directory.resolve(), configfiles, args.snakemake_args, repo)
