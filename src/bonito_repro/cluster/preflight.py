"""`bonito-repro preflight`: what can fail before any GPU job runs, checked from a
networked login node in minutes, printed as one table; the exit status is 1 if any check failed.

- lock: the commit of every Hub revision the run reads, written to the Hub lock (``hub.lock.yaml``
  in the checkout, or ``--lock``) where it lacks one; the run then downloads at the locked commits
  (``--refresh-lock`` resolves every revision anew; bonito_repro.cluster.locking).
- hub: every Hub reference of the active config (the models the run uses, the datasets' test and
  unannotated origins, ctga's P3 datasets or published set where the run builds a generator,
  published generators' sets): the repository and revision (at its locked commit), access (a
  token for gated repositories), the config and split as the loader will ask for them, and the
  files it will read, with their sizes; for a source whose columns no recorded fact confirms
  (backtranslation's oasst1 seed), the columns the run reads, from a Parquet file's footer; and
  of each model repository its smallest LFS-stored file, downloaded here as the download job will
  (so a blocked transfer path, Xet's included, shows now). Nothing else is downloaded but metadata
  (repository info, listings, READMEs, footers).
- rows: the row count of every dataset origin the hub step found (at its locked commit), from
  Parquet footers (ranged reads of the files' tails, no rows: the files it will read where they are
  Parquet, else the same config and split on the repository's conversion branch) or, failing that,
  estimated from file sizes (bonito_repro.cluster.row_counts); printed as a table and written to
  results/preflight/row_counts.json, which the cost model reads.
- disk: the bytes those downloads need against the free space of results/ (models) and of the
  Hugging Face cache (datasets and their Arrow copies).
- environment: each interpreter the rules will run starts and imports its stage's packages.
- endpoint: each endpoint generator the config names (GPT-4 in the generators ablation): its key's
  environment variable is set and one one-token request is answered; without a key the check
  names the generator and the config keys to drop it from (a failure where the default target
  needs it, a warning where only an ablation does).
- gpu (unless ``--no-gpu-check``): a one-GPU Slurm job (srun), asking for its GPU as the
  workflow's jobs do (bonito_repro.core.slurm), checks on a compute node the driver (580 or newer
  for the pinned CUDA 13 stack), the compute capability (8.0 or newer for bf16), CUDA in torch,
  bitsandbytes' 4-bit kernels, that a vLLM engine starts and generates offline (HF_HUB_OFFLINE=1,
  no proxy variables) within a time limit, and the GPU's memory; ``--local-gpu`` runs the same
  checks in this process instead, on this machine's GPU (a workstation: no Slurm; run the
  preflight with the main environment's interpreter).
- gpu memory: each GPU job's estimated memory (bonito_repro.cluster.memory) against the GPU's
  (``--gpu-memory-gb``, or the one the GPU checks found), naming every job that does not fit and
  the settings to lower; and the host memory that converting pickled weights at download needs,
  against this machine's.
- cost: the cost model's table (bonito_repro.cluster.cost) from those row counts (and the
  throughputs of results/preflight/gpu_calibration.json, ``make gpu-check``, where it exists),
  with a warning for each job that cannot finish in its runtime, and each endpoint generator's
  projected tokens and price.

The whole report is written to results/preflight/report.txt too (a named run's, config
run.name: results/runs/NAME/preflight/).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import cost, memory, row_counts
from ..core import layout, slurm
from ..core.config import ConfigError, load_config
from ..core.generators import generators_of
from .environments import environments_in_use, verify_environment
from ..core.hub import HubError, resolve_revision
from ..core.hub_lock import LOCK_FILE, HubLock, HubLockError, read_lock
from ..core.io import write_text
from .locking import lock_revisions
from ..core.tasks import GREEDY, scoring
from ..generate.backtranslation import SEED_COLUMNS

OK, FAIL, WARN = "ok", "FAIL", "warn"
# packages each environment's jobs import (the main one runs every stage but vLLM's)
MAIN_PACKAGES = ["torch", "transformers", "peft", "datasets", "accelerate", "bitsandbytes", "pandas", "bonito_repro"]
VLLM_PACKAGES = ["vllm", "transformers", "bonito_repro"]
MIN_DRIVER = 580          # the pinned stack's CUDA 13 needs an NVIDIA driver of branch 580 or newer
BF16_CAPABILITY = (8, 0)  # bf16 kernels need compute capability 8.0 (Ampere) or newer
NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"]
VLLM_START_SECONDS = 600  # longer means kernels fetched or compiled at first use: every job would pay it
# a small model vLLM's GPU kernels take (head size 64), built here: the check needs no download
VLLM_CHECK_MODEL = {"architecture": "llama", "vocab_size": 2000, "hidden_size": 256, "intermediate_size": 512,
                    "layers": 2, "heads": 4, "kv_heads": 2}


@dataclass
class Check:
    kind: str     # lock, hub, rows, disk, environment, endpoint, gpu, cost
    item: str     # what was checked, as the config names it
    status: str   # ok, FAIL, warn
    detail: str
    nbytes: int = 0  # what its downloads need (hub checks)
    target: str = ""  # where they go: "results" or "cache"


@dataclass
class HubReference:
    where: str      # the config key (or dataset file) that names it
    repo_type: str  # model | dataset
    hub: dict
    columns: tuple[str, ...] = ()  # columns the run reads that no recorded fact confirms (checked)


# ---------------------------------------------------------------- what the run reads from the Hub


def _needs_ctga(config: dict) -> bool:
    """ctga-v1 is read where a generator is trained on it here (rule train_bonito) or a target's
    adapter is trained on p3."""
    return (bool(generators_of(config, training_rule="train_bonito"))
            or any(t.get("init_adapter", {}).get("train_on") == "p3" for t in config["targets"].values()))


def hub_references(config: dict) -> list[HubReference]:
    """Every Hub origin and model the resolved config's run reads, with the key that names it."""
    refs = [HubReference(f"models.{name}.hub", "model", spec["hub"])
            for name, spec in config["models"].items() if "hub" in spec]
    for name, spec in config["datasets"].items():
        for kind in ("unannotated", "test"):
            if "hub" in spec[kind]:
                refs.append(HubReference(row_counts.dataset_key(name, kind), "dataset", spec[kind]["hub"]))
    ctga = config["ctga"]
    if _needs_ctga(config):
        if not ctga["use_published"]:
            refs += [HubReference(row_counts.p3_key(name), "dataset", origin["hub"])
                     for name, origin in ctga["p3_datasets"].items() if "hub" in origin]
        if (ctga["use_published"] or ctga.get("compare_published")) and "hub" in ctga["published"]:
            refs.append(HubReference(row_counts.CTGA_PUBLISHED_KEY, "dataset", ctga["published"]["hub"]))
    for name, spec in config["generators"].items():  # a released set's origin, backtranslation's seed
        if "hub" in spec.get("origin", {}):
            for dataset in config["datasets"]:
                hub = json.loads(json.dumps(spec["origin"]["hub"]).replace("{dataset}", dataset))
                refs.append(HubReference(row_counts.released_key(name, dataset), "dataset", hub))
        if "hub" in spec.get("seed", {}):  # oasst1's message columns are an assumption: check them
            refs.append(HubReference(f"generators.{name}.seed", "dataset", spec["seed"]["hub"], SEED_COLUMNS))
    return refs


def describe(ref: HubReference) -> str:
    hub = ref.hub
    parts = [f"{hub['id']}@{hub.get('revision', 'main')}"]
    parts += [f"{k}={hub[k]}" for k in ("config", "split", "subfolder") if hub.get(k)]
    return " ".join(parts)


def hub_item(ref: HubReference) -> str:
    """How a hub check names its reference."""
    return f"{ref.where}: {describe(ref)}"


def _access(repo_id: str, repo_type: str) -> str | None:
    """Why the token cannot read the repository (gated, private), or None."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().auth_check(repo_id, repo_type=repo_type)
    except GatedRepoError:
        if get_token() is None:
            return "gated repository and no token: set HF_TOKEN to a token granted access on its Hub page"
        return "gated repository: HF_TOKEN has not been granted access (request it on the repository's Hub page)"
    except RepositoryNotFoundError:
        return "repository not found (or private, and HF_TOKEN cannot see it)"
    return None


def _commit(hub: dict, repo_type: str) -> tuple[str | None, str | None]:
    """(the commit the revision points at, None), or (None, why it cannot be read)."""
    problem = _access(hub["id"], repo_type)
    if problem:
        return None, problem
    try:  # a locked commit is checked to be there still
        return resolve_revision(hub["id"], hub.get("sha") or hub.get("revision", "main"), repo_type), None
    except HubError as error:
        return None, str(error)


def check_model(ref: HubReference) -> Check:
    """The repository, revision, access and the files the download will fetch (weights of the
    configured kind and a config among them)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    from ..runtime.hub_models import download_patterns

    item, hub = hub_item(ref), ref.hub
    sha, problem = _commit(hub, "model")
    if problem:
        return Check("hub", item, FAIL, problem)
    subfolder = hub.get("subfolder", "").strip("/") or None
    listing = [e for e in HfApi().list_repo_tree(hub["id"], path_in_repo=subfolder, recursive=True, revision=sha)
               if isinstance(e, RepoFile)]
    allow, ignore = download_patterns(hub)
    files = list(filter_repo_objects(listing, allow_patterns=allow, ignore_patterns=ignore, key=lambda e: e.path))
    names = [e.path.rsplit("/", 1)[-1] for e in files]
    suffix = ".bin" if hub.get("weights") == "bin" else ".safetensors"
    missing = [what for what, found in (
        (f"{suffix} weights", any(n.endswith(suffix) for n in names)),
        ("config.json or adapter_config.json", any(n in ("config.json", "adapter_config.json") for n in names)),
    ) if not found]
    if missing:
        held = sorted(e.path for e in listing)[:12]
        return Check("hub", item, FAIL, f"commit {sha[:10]}: no {' and no '.join(missing)} "
                     f"{'under ' + subfolder + '/' if subfolder else 'at the root'} (it holds {held}); "
                     "see `subfolder` and `weights` in the model spec")
    nbytes = sum(e.size for e in files)
    # converting pickles writes the safetensors copy before the pickle is removed
    need = 2 * nbytes if suffix == ".bin" else nbytes
    detail = f"commit {sha[:10]}, {len(files)} files, {_gb(nbytes)}"
    problem, sample = download_sample(hub["id"], sha, listing)
    if problem:
        return Check("hub", item, FAIL, f"{detail}; {problem}")
    return Check("hub", item, OK, f"{detail}; {sample}", need, "results")


def download_sample(repo_id: str, sha: str, listing: list) -> tuple[str | None, str]:
    """(None, what was fetched) once the smallest LFS-stored file of ``listing`` is downloaded
    and matches its SHA-256, or (why not, ""): LFS and Xet files come from another host than the
    metadata (a CDN or Xet storage), which a login node's firewall or proxy may block."""
    import hashlib
    import tempfile

    from huggingface_hub import hf_hub_download

    stored = [e for e in listing if e.lfs is not None]
    if not stored:
        return None, "no LFS-stored file to fetch"
    sample = min(stored, key=lambda e: e.size)
    with tempfile.TemporaryDirectory(prefix="preflight-sample-") as scratch:
        try:
            path = hf_hub_download(repo_id, sample.path, revision=sha, cache_dir=scratch)
        except Exception as error:  # whatever stops the transfer is the finding
            return (f"its LFS file {sample.path} ({sample.size:,} bytes) cannot be downloaded, as the download "
                    f"job would fetch weights: {type(error).__name__}: {row_counts.first_line(error)}"), ""
        with open(path, "rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    if digest != sample.lfs.sha256:
        return f"its LFS file {sample.path} arrived with SHA-256 {digest[:12]}, not {sample.lfs.sha256[:12]}", ""
    return None, f"LFS file {sample.path} ({sample.size:,} bytes) downloaded"


def check_dataset(ref: HubReference) -> Check:
    """The repository, revision, access, and the config and split as ``origins.load_origin``
    asks ``datasets`` for them (``load_dataset_builder`` with the same arguments: it reads the
    README and the file listing, no rows), with the files the split reads."""
    item, hub = hub_item(ref), ref.hub
    sha, problem = _commit(hub, "dataset")
    if problem:
        return Check("hub", item, FAIL, problem)
    try:
        splits, files = row_counts.split_files({**hub, "sha": sha})
    except Exception as error:  # the loader's own message: a missing config, a script, no data files
        return Check("hub", item, FAIL, f"commit {sha[:10]}: datasets cannot load config "
                     f"{hub.get('config')!r}: {row_counts.first_line(error)}")
    split = hub.get("split", "train")
    if split not in splits:
        return Check("hub", item, FAIL, f"commit {sha[:10]}: no split {split!r} (it has {splits})")
    nbytes = sum(files.values())
    need = nbytes + row_counts.arrow_bytes(files)
    detail = f"commit {sha[:10]}, split {split}: {len(files)} files, {_gb(nbytes)}"
    if ref.columns:
        parquet = [path for path in files if path.endswith(".parquet")]
        if not parquet:
            return Check("hub", item, WARN, f"{detail}; columns {list(ref.columns)} not checked: the split has no "
                         "Parquet file whose footer gives them", need, "cache")
        columns = row_counts.footer_metadata(hub["id"], sha, parquet[0]).schema.to_arrow_schema().names
        missing = [c for c in ref.columns if c not in columns]
        if missing:
            return Check("hub", item, FAIL, f"{detail}; no column(s) {missing} ({parquet[0]} has {columns})")
        detail += f"; columns {list(ref.columns)} present (the footer of {parquet[0]})"
    return Check("hub", item, OK, detail, need, "cache")


def check_hub(config: dict, lock: HubLock | None = None) -> list[Check]:
    """The hub checks of every reference, each at its locked commit where ``lock`` holds one."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return [Check("hub", "HF_HUB_OFFLINE", FAIL, "offline mode is on: the preflight reads the Hub; "
                      "unset HF_HUB_OFFLINE (jobs set it themselves)")]
    refs = at_locked_commits(hub_references(config), lock)
    return [check_model(ref) if ref.repo_type == "model" else check_dataset(ref) for ref in refs]


# ---------------------------------------------------------------- the Hub lock


def at_locked_commits(refs: list[HubReference], lock: HubLock | None) -> list[HubReference]:
    """The references, each at the commit ``lock`` holds for it (``hub.sha``) where it holds one."""
    if lock is None:
        return refs
    return [replace(r, hub={**r.hub, "sha": lock.commit(r.repo_type, r.hub)})
            if lock.commit(r.repo_type, r.hub) else r for r in refs]


def check_lock(config: dict, path: Path, refresh: bool) -> tuple[list[Check], HubLock | None]:
    """The lock step (bonito_repro.cluster.locking): one line for the lock, one for each branch
    that moved since it was locked (the run reads the locked commit) or whose commit a refresh
    changed."""
    from huggingface_hub import constants

    try:
        if constants.HF_HUB_OFFLINE:  # the hub checks say so; the lock is read as it is
            return [], read_lock(path)
        result = lock_revisions([(r.repo_type, r.hub) for r in hub_references(config)], path, refresh)
    except HubLockError as error:
        return [Check("lock", str(path), FAIL, str(error))], None
    if result.lock is None:
        return [], None
    held = sum(len(entries) for entries in result.lock.commits.values())
    detail = (f"{held} revisions, sha256 {result.lock.digest[:12]}, written {result.lock.written}: "
              f"{len(result.added)} added now, {len(result.changed)} refreshed to a new commit, "
              f"{len(result.moved)} moved on the Hub since")
    if result.failed:
        detail += f", {len(result.failed)} not locked (they cannot be read: see their hub checks)"
    checks = [Check("lock", str(path), OK, detail)]
    if result.lock.endpoint != constants.ENDPOINT:
        checks.append(Check("lock", "endpoint", WARN, f"locked on {result.lock.endpoint}, read on {constants.ENDPOINT}: "
                            "a commit of another Hub may not be here (--refresh-lock locks this Hub's)"))
    checks += [Check("lock", key, WARN, f"locked at {locked[:10]}, now at {now[:10]} on the Hub: the run reads "
                     "the locked commit (--refresh-lock to read the new one)") for key, locked, now in result.moved]
    checks += [Check("lock", key, OK, f"refreshed: {former[:10]} -> {now[:10]}") for key, former, now in result.changed]
    return checks, result.lock


# ---------------------------------------------------------------- rows


def check_rows(refs: list[HubReference], hub_checks: list[Check],
               bytes_per_row: int) -> tuple[list[Check], list[row_counts.RowCount]]:
    """Row counts of the dataset origins whose hub check passed (``row_counts.count_rows``): a
    check that sums up where the numbers came from, and a warning for each origin with neither a
    footer nor an estimate (the cost model assumes config `cost`'s rows for it)."""
    passed = {c.item for c in hub_checks if c.kind == "hub" and c.status == OK}
    counts, warnings = [], []
    for ref in refs:
        if ref.repo_type != "dataset" or hub_item(ref) not in passed:
            continue
        counted = row_counts.count_rows(ref.where, ref.hub, bytes_per_row)
        if isinstance(counted, row_counts.RowCount):
            counts.append(counted)
        else:
            warnings.append(Check("rows", ref.where, WARN, f"{counted}; the cost model assumes config `cost`'s rows"))
    footers = sum(c.source == row_counts.FOOTER for c in counts)
    summary = Check("rows", "row counts", OK, f"{len(counts)} dataset origins: {footers} read from Parquet "
                    f"footers, {len(counts) - footers} estimated from file sizes")
    return [summary, *warnings], counts


# ---------------------------------------------------------------- disk


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB"


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (disk usage of a folder not made yet)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_disk(hub_checks: list[Check], results: Path, cache: Path) -> list[Check]:
    """Free space against what the downloads need, per filesystem (results/ and the Hugging Face
    cache may share one)."""
    need = {"results": sum(c.nbytes for c in hub_checks if c.target == "results"),
            "cache": sum(c.nbytes for c in hub_checks if c.target == "cache")}
    places = {"results": _existing(results), "cache": _existing(cache)}
    by_device: dict[int, list[str]] = {}
    for name, path in places.items():
        by_device.setdefault(path.stat().st_dev, []).append(name)
    checks = []
    for names in by_device.values():
        needed = sum(need[n] for n in names)
        free = shutil.disk_usage(places[names[0]]).free
        item = " + ".join(f"{n} ({places[n]})" for n in names)
        status = OK if free >= needed else FAIL
        checks.append(Check("disk", item, status, f"needs {_gb(needed)}, {_gb(free)} free"))
    return checks


def quota_left(path: Path) -> tuple[int | None, str]:
    """Bytes the user's block quota leaves on ``path``'s filesystem, as the `quota` tool reports
    them (1 KiB blocks; the soft limit, else the hard one), and a note saying what was read; None
    where no quota tool answers or no limit is set."""
    tool = shutil.which("quota")
    if tool is None:
        return None, "quota not read (no `quota` tool here; ask your site's)"
    try:
        done = subprocess.run([tool, "-w", "-p", "-f", str(path)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"quota not read (`quota` did not answer: {error})"
    for line in done.stdout.splitlines():
        fields = line.split()  # filesystem, blocks (a * past the soft limit), quota, limit, grace, ...
        if len(fields) >= 4 and fields[1].rstrip("*").isdigit() and fields[2].isdigit() and fields[3].isdigit():
            used, limit = int(fields[1].rstrip("*")), int(fields[2]) or int(fields[3])
            if not limit:
                return None, "quota: no limit on this filesystem"
            left = max(0, limit - used) * 1024
            return left, f"quota: {_gb(left)} left of {_gb(limit * 1024)}"
    return None, "quota not read (`quota` reported no limit for this filesystem)"


def check_written(hub_checks: list[Check], results: Path, cache: Path, projected: dict[str, int]) -> Check:
    """Free space of results/'s filesystem (or what the user's quota leaves, if less) against
    what the run is projected to write there (``cost.disk_bytes``) on top of the downloads to
    that filesystem: a warning where it does not fit, as the sizes are estimates (the downloads'
    are exact: ``check_disk`` fails on those)."""
    place, free, room, quota_note = free_room(results)
    shared = place.stat().st_dev == _existing(cache).stat().st_dev
    downloads = sum(c.nbytes for c in hub_checks if c.target == "results" or shared and c.target == "cache")
    needed = downloads + sum(projected.values())
    return Check("disk", f"results ({place}): what the run writes", OK if room >= needed else WARN,
                 f"needs {_gb(needed)} with the downloads; {_projected_text(projected)}; {_gb(free)} free; {quota_note}")


def free_room(results: Path) -> tuple[Path, int, int, str]:
    """results/'s folder (its nearest existing parent where not made yet), the bytes free there,
    the room: those, or what the user's quota leaves if less, and a note on the quota."""
    place = _existing(results)
    free = shutil.disk_usage(place).free
    quota, quota_note = quota_left(place)
    return place, free, free if quota is None else min(free, quota), quota_note


def _projected_text(projected: dict[str, int]) -> str:
    parts = ", ".join(f"{kind} {_gb(n)}" for kind, n in projected.items())
    return (f"projected {parts} (estimates: cost.lora_parameters_per_rank, cost.bytes_per_row; checkpoints "
            "of one training job at a time)")


def written_warning(results: Path, projected: dict[str, int]) -> str | None:
    """The check ``check_written`` makes, at a local run's start (`bonito-repro run`, which reads
    no Hub listing, so downloads are not counted): a warning naming the folder, the bytes free and
    the projected bytes where they do not fit, else None."""
    place, free, room, quota_note = free_room(results)
    needed = sum(projected.values())
    if room >= needed:
        return None
    return (f"{place}: may lack room for this run: {_gb(free)} free ({quota_note}), the run is projected to write "
            f"{_gb(needed)}; {_projected_text(projected)}; downloads not counted (the preflight counts them)")


# ---------------------------------------------------------------- environments


def uses_vllm(config: dict) -> bool:
    """Whether any job runs in the vLLM environment: generation by a generator that runs a model
    here (in `generation.backend`'s environment, the rules' GENERATION_PY), or greedy evaluation
    of an extractive QA dataset, with the vllm backend."""
    generates = bool(generators_of(config, runs_model=True))
    greedy = any(scoring(d["task_type"]) == GREEDY for d in config["datasets"].values())
    return ((generates and config["generation"]["backend"] == "vllm")
            or (greedy and config["evaluation"]["generation_backend"] == "vllm"))


def interpreters(config: dict, workdir: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    """environment name -> (interpreter, packages its jobs import, requirement files it must
    match), as the rules resolve them (``environments.environments_in_use``)."""
    packages = {"main": MAIN_PACKAGES, "vllm": VLLM_PACKAGES}
    used = ["main", "vllm"] if uses_vllm(config) else ["main"]
    return {name: (python, packages[name], files)
            for name, (python, files) in environments_in_use(config, workdir, used).items()}


def check_environment(name: str, python: str, packages: list[str], requirements: list[str] = (),
                      timeout: int = 600) -> Check:
    """The interpreter starts, imports every package (versions reported) and has exactly the
    versions its requirement (lock) files pin (``environments.verify_environment``)."""
    code = ("import importlib, json\nversions = {}\nfor name in %r:\n"
            "    versions[name] = getattr(importlib.import_module(name), '__version__', '?')\n"
            "print(json.dumps(versions))" % packages)
    item = f"environments.{name}: {python}"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return Check("environment", item, FAIL, "no such interpreter (set it up first; see the README)")
    except subprocess.TimeoutExpired:
        return Check("environment", item, FAIL, f"importing {packages} took over {timeout} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1]
        return Check("environment", item, FAIL, f"cannot import its packages: {last}")
    problems = verify_environment(python, list(requirements)) if requirements else []
    if problems:
        return Check("environment", item, FAIL, f"{len(problems)} differences from its pins: {'; '.join(problems[:3])}")
    versions = json.loads(done.stdout.strip().splitlines()[-1])
    return Check("environment", item, OK, ", ".join(f"{k} {v}" for k, v in versions.items()))


# ---------------------------------------------------------------- endpoint generators


def _named_in(config: dict, generator: str) -> list[str]:
    """The config keys that make the run use a generator (what to drop it from)."""
    listed = config["ablations"]["generators"]["generators"]
    keys = ["run.sources"] if generator in config["run"]["sources"] else []
    if listed is None:
        keys.append(f"generators.{generator} (ablations.generators.generators is null: every declared one)")
    elif generator in listed:
        keys.append("ablations.generators.generators")
    return keys


def check_endpoints(config: dict) -> list[Check]:
    """Each endpoint generator the config uses: its key's variable is set and one one-token
    request (bonito_repro.generate.endpoint.probe) is answered. A failure where the default target
    generates with it, a warning where only the generators ablation does."""
    from ..generate.endpoint import EndpointError, probe

    checks = []
    for name in generators_of(config, kind="endpoint"):
        spec = config["generators"][name]
        status = FAIL if name in config["run"]["sources"] else WARN
        item = f"generators.{name}: {spec['served_model']} at {spec['base_url']}"
        env = spec.get("api_key_env")
        if env and not os.environ.get(env):
            checks.append(Check("endpoint", item, status, f"the environment variable {env} (api_key_env) is not set: "
                                f"export {env}=<the endpoint's key>, or drop {name} from "
                                f"{' and '.join(_named_in(config, name))} (docs/generators.md)"))
            continue
        try:
            answer = probe(spec)
        except EndpointError as error:
            checks.append(Check("endpoint", item, status, f"a one-token request failed: {error}"))
            continue
        billed = answer["usage"].get("total_tokens", "?")
        checks.append(Check("endpoint", item, OK, f"{env + ' set; ' if env else ''}a one-token request answered by "
                            f"{answer['model']} ({billed} tokens billed)"))
    return checks


# ---------------------------------------------------------------- on a GPU node


def driver_checks(query: str) -> list[Check]:
    """The driver and compute-capability rules on the first GPU's line of ``NVIDIA_SMI_QUERY``'s
    output (``NVIDIA H100 80GB HBM3, 580.65.06, 9.0``)."""
    fields = [f.strip() for f in query.strip().splitlines()[0].split(",")] if query.strip() else []
    if len(fields) != 3:
        why = f"nvidia-smi answered {query.strip()[:200]!r}, not name, driver_version, compute_cap"
        return [Check("gpu", "driver", FAIL, why), Check("gpu", "compute capability", FAIL, why)]
    name, driver, capability = fields
    try:
        branch = int(driver.split(".")[0])
        major, minor = (int(n) for n in capability.split("."))
    except ValueError:
        why = f"cannot read driver {driver!r} and compute capability {capability!r} of {name}"
        return [Check("gpu", "driver", FAIL, why), Check("gpu", "compute capability", FAIL, why)]
    driver_ok = branch >= MIN_DRIVER
    capability_ok = (major, minor) >= BF16_CAPABILITY
    return [Check("gpu", "driver", OK if driver_ok else FAIL,
                  f"{driver} on {name}" + ("" if driver_ok else f": the pinned CUDA 13 stack needs driver {MIN_DRIVER} or "
                                           "newer (ask the cluster's admins, or a partition with newer nodes)")),
            Check("gpu", "compute capability", OK if capability_ok else FAIL,
                  f"{capability} on {name}" + ("" if capability_ok else ": bf16 needs 8.0 or newer; set "
                                               "resources.slurm.gpu_constraint to newer GPUs, or bf16: false"))]


def nvidia_smi_checks() -> list[Check]:
    """``driver_checks`` on this node's nvidia-smi; both fail where there is none."""
    try:
        done = subprocess.run(NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=60, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        why = f"nvidia-smi cannot be run ({type(error).__name__}): no NVIDIA driver on this node"
        return [Check("gpu", "driver", FAIL, why), Check("gpu", "compute capability", FAIL, why)]
    if done.returncode != 0:
        why = f"nvidia-smi exited {done.returncode}: {(done.stdout + done.stderr).strip()[:200]}"
        return [Check("gpu", "driver", FAIL, why), Check("gpu", "compute capability", FAIL, why)]
    return driver_checks(done.stdout)


def offline_environment() -> dict[str, str]:
    """The environment of a job: this one with the Hub offline, as the rules set it, and no proxy
    variables, so that anything fetched at first use fails instead of passing on a login node's
    proxy."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def vllm_engine_check(vllm_python: str, device: str, engine: dict | None = None,
                      timeout: int = VLLM_START_SECONDS) -> Check:
    """A vLLM engine, started as the workflow's jobs start it (``runtime.backends.VLLMBackend``
    with the config's engine settings ``engine``, `generation.vllm`) on a small model built on the
    spot, generates, in ``vllm_python`` with ``offline_environment`` and within ``timeout`` seconds."""
    item = "vLLM engine"
    cmd = [vllm_python, "-m", "bonito_repro", "preflight", "--vllm-engine", device]
    if engine:
        cmd += ["--vllm-settings", json.dumps(engine)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=offline_environment())
    except subprocess.TimeoutExpired:
        return Check("gpu", item, FAIL, f"{vllm_python}: no engine within {timeout} s offline (HF_HUB_OFFLINE=1, "
                     "no proxy): kernels fetched or compiled at first use? (every generation job would wait too)")
    except FileNotFoundError:
        return Check("gpu", item, FAIL, f"{vllm_python}: no such interpreter")
    started = [line for line in done.stdout.splitlines() if line.startswith('{"vllm"')]
    if done.returncode != 0 or not started:
        why = (done.stderr.strip().splitlines() or [done.stdout.strip() or f"exit status {done.returncode}"])[-1]
        return Check("gpu", item, FAIL, f"{vllm_python}: the engine did not start offline: {why}")
    result = json.loads(started[-1])
    return Check("gpu", item, OK, f"vllm {result['vllm']} on {device}: started and generated in "
                 f"{result['seconds']:.0f} s offline (HF_HUB_OFFLINE=1, no proxy; limit {timeout} s)")


def start_vllm_engine(device: str, engine: dict | None = None) -> dict:
    """What ``vllm_engine_check`` runs in the vLLM environment: build VLLM_CHECK_MODEL, start the
    workflow's vLLM backend on it with the engine settings ``engine``, generate a few tokens; the
    vLLM version and the seconds taken."""
    import tempfile
    import time

    from vllm import __version__

    from ..prepare.models import build_tiny_model, embedded_texts
    from ..runtime.backends import Sampling, VLLMBackend

    with tempfile.TemporaryDirectory(prefix="preflight-vllm-") as scratch:
        model = build_tiny_model(VLLM_CHECK_MODEL, embedded_texts(), Path(scratch) / "model")
        start = time.monotonic()
        backend = VLLMBackend(model, None, Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=8),
                              max_model_len=256, seed=0, bf16=device == "cuda", device=device, engine=engine)
        backend.generate(["a passage to continue"], [0])
        seconds = time.monotonic() - start
        backend.close()
    return {"vllm": __version__, "seconds": seconds}


def gpu_node_checks(vllm_python: str | None, engine: dict | None = None) -> list[Check]:
    """Run on the compute node: the driver and compute capability (nvidia-smi), CUDA in torch,
    bf16, a 4-bit bitsandbytes layer on the GPU, and a vLLM engine in its own environment (where
    the run uses it). Without a CUDA device every check fails (none is skipped)."""
    import torch

    checks = nvidia_smi_checks()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU build of torch)"
        missing = (f"no CUDA device: torch.cuda.is_available() is False (CUDA_VISIBLE_DEVICES={visible}, "
                   f"torch {torch.__version__} built for CUDA {built})")
        checks.append(Check("gpu", "CUDA", FAIL, missing))
        checks += [Check("gpu", what, FAIL, "not checked: no CUDA device") for what in ("bf16", "bitsandbytes 4-bit")]
        if vllm_python:
            checks.append(Check("gpu", "vLLM engine", FAIL, "not checked: no CUDA device"))
        return checks
    checks.append(Check("gpu", "CUDA", OK, f"{torch.cuda.device_count()} device(s), {torch.cuda.get_device_name(0)}, "
                        f"CUDA {torch.version.cuda} (CUDA_VISIBLE_DEVICES={visible})"))
    bf16 = torch.cuda.is_bf16_supported()
    checks.append(Check("gpu", "bf16", OK if bf16 else FAIL, "supported" if bf16 else
                        "not supported on this GPU: set training/generation/evaluation bf16: false"))
    try:
        import bitsandbytes as bnb

        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.bfloat16, quant_type="nf4").cuda()
        out = layer(torch.randn(2, 64, dtype=torch.bfloat16, device="cuda"))
        checks.append(Check("gpu", "bitsandbytes 4-bit", OK, f"bitsandbytes {bnb.__version__}, NF4 forward {tuple(out.shape)}"))
    except Exception as error:  # any failure of the kernel is the finding
        checks.append(Check("gpu", "bitsandbytes 4-bit", FAIL, f"{type(error).__name__}: {error}"))
    if vllm_python:
        checks.append(vllm_engine_check(vllm_python, "cuda", engine))
    return checks


def gpu_job_command(config: dict, workdir: Path) -> list[str]:
    """The preflight's GPU job: srun with one GPU asked for as the workflow's GPU jobs ask
    (``core.slurm.job_resources`` under the config's site settings), running ``gpu_node_checks``."""
    envs = interpreters(config, workdir)
    cmd = ["srun", *slurm.slurm_options(slurm.job_resources(config["resources"]["slurm"], 1)),
           "--ntasks=1", "--time=30", "--job-name=bonito-preflight"]
    cmd += [envs["main"][0], "-m", "bonito_repro", "preflight", "--on-gpu-node"]
    if "vllm" in envs:
        cmd += ["--vllm-python", envs["vllm"][0], "--vllm-settings", json.dumps(config["generation"]["vllm"])]
    return cmd


def check_gpu_node(config: dict, workdir: Path, timeout: int = 1800) -> list[Check]:
    """``gpu_node_checks`` in the one-GPU Slurm job of ``gpu_job_command``."""
    if shutil.which("srun") is None:
        return [Check("gpu", "srun", FAIL, "srun not found: run the preflight on the cluster's login node "
                      "(or --no-gpu-check)")]
    try:
        done = subprocess.run(gpu_job_command(config, workdir), cwd=workdir, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [Check("gpu", "srun", FAIL, f"no result in {timeout} s (is the GPU queue long?)")]
    found = [Check(**json.loads(line)) for line in done.stdout.splitlines() if line.startswith('{"kind": "gpu"')]
    if not found:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return [Check("gpu", "srun", FAIL, f"the GPU job gave no result (exit {done.returncode}): {' / '.join(tail)}")]
    return found


def gpu_memory_found() -> Check:
    """On the GPU's machine: the first GPU's memory (in ``nbytes``), for the memory checks."""
    import torch

    if not torch.cuda.is_available():
        return Check("gpu", "memory", FAIL, "not read: no CUDA device")
    props = torch.cuda.get_device_properties(0)
    return Check("gpu", "memory", OK, f"{props.total_memory / memory.GIB:.1f} GiB on {props.name}",
                 nbytes=props.total_memory)


def check_gpu_memory(config: dict, gpu_gib: float | None) -> list[Check]:
    """Each GPU job's estimate against a GPU of ``gpu_gib`` GiB: FAIL naming the job and the
    settings to lower where it does not fit (estimates: docs/tiers.md)."""
    if config["device"] != "cuda":
        return []
    if gpu_gib is None:
        return [Check("gpu memory", "GPU jobs", WARN, "not checked: give --gpu-memory-gb N, or --local-gpu on the GPU's machine")]
    return [Check("gpu memory", e.job, OK if e.fits(gpu_gib) else FAIL,
                  f"{e.describe()} (estimate)" if e.fits(gpu_gib) else f"{memory.misfit_text(e, gpu_gib)} (estimate)")
            for e in memory.job_estimates(config)]


def check_host_memory(config: dict, host_gib: float | None) -> list[Check]:
    """The host memory converting each pickled model at download needs, against this machine's
    (and the download job's mem_mb request)."""
    return [Check("host memory", item, status, detail)
            for status, item, detail in memory.host_memory_findings(config, host_gib)]


# ---------------------------------------------------------------- the report


def check_cost(config: dict, configfiles: list[str], workdir: Path,
               rows: cost.Rows) -> tuple[list[Check], str, dict[str, int] | None]:
    """The cost tables from the row counts (and the GPU calibration, where there is one), a
    warning check for each job that cannot finish in its runtime, and the bytes the run is
    projected to write (None: the dry run failed)."""
    try:
        jobs = cost.workflow_jobs(configfiles, workdir)
    except RuntimeError as error:
        return [Check("cost", "snakemake dry run", FAIL, str(error).splitlines()[0])], "", None
    report = cost.project(config, jobs, rows, cost.find_calibration(workdir))
    checks = [Check("cost", f"{c.job.rule} {cost.wildcards_text(c.job)}", WARN, cost.overrun_text(c))
              for c in report.overruns]
    return checks, cost.format_report(report, config), cost.disk_bytes(config, jobs, rows)


def format_checks(checks: list[Check]) -> str:
    width = min(90, max((len(c.item) for c in checks), default=10))
    return "\n".join(f"{c.status:<5} {c.kind:<12} {c.item:<{width}}  {c.detail}" for c in checks)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bonito-repro preflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays of config.yaml, as given to snakemake")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the checkout (Snakefile, config.yaml)")
    parser.add_argument("--results", type=Path, help="the results folder (default: DIRECTORY/results); "
                        "the report and the row counts go to its preflight/ folder")
    parser.add_argument("--lock", type=Path, help=f"the Hub lock to write and check at (default: DIRECTORY/{LOCK_FILE}, "
                        "where Snakemake reads it when run from the checkout)")
    parser.add_argument("--refresh-lock", action="store_true",
                        help="resolve every Hub revision anew: the run then reads the commits they point at now")
    parser.add_argument("--no-gpu-check", action="store_true",
                        help="skip the GPU checks (a one-GPU Slurm job); without srun they fail")
    parser.add_argument("--local-gpu", action="store_true",
                        help="run the GPU checks here instead, in this process, on this machine's GPU (a workstation)")
    parser.add_argument("--gpu-memory-gb", type=float, metavar="GIB",
                        help="the GPU memory each GPU job's estimate is checked against (default: what "
                             "the GPU checks found)")
    parser.add_argument("--on-gpu-node", action="store_true", help=argparse.SUPPRESS)  # what that job runs
    parser.add_argument("--vllm-python", help=argparse.SUPPRESS)
    parser.add_argument("--vllm-engine", metavar="DEVICE", help=argparse.SUPPRESS)  # run in the vLLM environment
    parser.add_argument("--vllm-settings", help=argparse.SUPPRESS)  # the config's generation.vllm, as JSON
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.vllm_engine:  # one JSON line, read back by vllm_engine_check
        print(json.dumps(start_vllm_engine(args.vllm_engine, args.vllm_settings and json.loads(args.vllm_settings))))
        return 0
    if args.on_gpu_node:  # one JSON line per check, read back by check_gpu_node
        engine = json.loads(args.vllm_settings) if args.vllm_settings else None
        checks = gpu_node_checks(args.vllm_python, engine) + [gpu_memory_found()]
        for check in checks:
            print(json.dumps(asdict(check)))
        return int(any(c.status == FAIL for c in checks))
    workdir = args.directory.resolve()
    try:
        config = load_config(*cost.config_paths(workdir, args.configfile))
    except ConfigError as error:
        print(f"FAIL  config: {error}")
        return 1
    from huggingface_hub import constants

    results = args.results or workdir / layout.RESULTS
    checks, lock = check_lock(config, args.lock or workdir / LOCK_FILE, args.refresh_lock)
    refs = at_locked_commits(hub_references(config), lock)  # rows are counted where the run reads
    checks += check_hub(config, lock)
    row_checks, counts = check_rows(refs, checks, config["cost"]["bytes_per_row"])
    checks += row_checks
    counts_path = written(results, "row_counts.json", config["run"]["name"])
    row_counts.write_counts(counts_path, counts)
    cost_checks, table, projected = check_cost(config, args.configfile, workdir, cost.Rows({c.where: c for c in counts}))
    checks += check_disk(checks, results, Path(constants.HF_HOME))
    if projected is not None:
        checks.append(check_written(checks, results, Path(constants.HF_HOME), projected))
    checks += [check_environment(name, python, packages, requirements)
               for name, (python, packages, requirements) in interpreters(config, workdir).items()]
    checks += check_endpoints(config)
    if args.local_gpu:  # a workstation: the same checks in this process, on its own GPU
        vllm = interpreters(config, workdir).get("vllm")
        checks += gpu_node_checks(vllm[0] if vllm else None, config["generation"]["vllm"]) + [gpu_memory_found()]
    elif not args.no_gpu_check:
        checks += check_gpu_node(config, workdir)
    found = [c.nbytes for c in checks if (c.kind, c.item, c.status) == ("gpu", "memory", OK)]
    checks += check_gpu_memory(config, args.gpu_memory_gb or (found[0] / memory.GIB if found else None))
    checks += check_host_memory(config, memory.host_memory_gib())
    checks += cost_checks
    failed = [c for c in checks if c.status == FAIL]
    report = [format_checks(checks)]
    if counts:
        report.append(f"row counts (written to {counts_path}; the cost model reads them):\n"
                      + row_counts.format_counts(counts))
    if table:
        report.append("projected cost (bonito_repro.cluster.cost):\n" + table)
    report.append(f"preflight: {len(checks)} checks, {len(failed)} failed" +
                  "".join(f"\n  FAIL {c.kind}: {c.item}: {c.detail}" for c in failed))
    text = "\n\n".join(report)
    print(text)
    write_text(text + "\n", written(results, "report.txt", config["run"]["name"]))
    return int(bool(failed))


def written(results: Path, name: str, run: str | None) -> Path:
    """Where the preflight of the run named ``run`` (config ``run.name``) writes a file
    (layout.preflight) under the results folder it was given."""
    return results / Path(layout.preflight(name, run)).relative_to(layout.RESULTS)
