"""Run a workflow through `snakemake --profile slurm` on a real Slurm and read Slurm's records.

Reusable by any Slurm test: `unavailable_reason()` says why Slurm cannot be used here,
`write_test_profile()` layers the test cluster's settings over the project's `slurm/` profile,
`run_snakemake_on_slurm()` runs a workflow under a hard timeout (optionally doing something while it
runs, e.g. `InterruptAfterCheckpoint`), `slurm_jobs()` reads the accounting records of the jobs
it submitted and `snakemake_jobs()` the jobs Snakemake says it ran.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parents[1]
# What .ci/local_slurm.sh creates; on another cluster, point these at a GPU partition and account.
PARTITION = os.environ.get("BONITO_TEST_SLURM_PARTITION", "gpu")
ACCOUNT = os.environ.get("BONITO_TEST_SLURM_ACCOUNT", "ci_lab")
# Settings of the test cluster layered over slurm/config.yaml; the rest of the profile is tested.
TEST_CLUSTER_SETTINGS = {
    "jobs": 4,
    "latency-wait": 5,
    "slurm-init-seconds-before-status-checks": 2,
    "slurm-keep-successful-logs": True,  # every job's Slurm log is read by the assertions
}


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def unavailable_reason() -> str | None:
    """Why the Slurm tests cannot run here, or None when sbatch, the partition and sacct work."""
    if shutil.which("sbatch") is None:
        return "no Slurm here: sbatch is not on PATH (.ci/run starts a local one as root)"
    hint = "(set BONITO_TEST_SLURM_PARTITION and BONITO_TEST_SLURM_ACCOUNT)"
    checks = [  # command, what its output must contain, what is missing otherwise
        (["sinfo", "-h", "-p", PARTITION, "-o", "%G"], "gpu", f"partition {PARTITION!r} with GPUs"),
        (["sacct", "-X", "-n", "-S", "now-1minutes"], "", "Slurm accounting (sacct)"),
        (["sacctmgr", "-nP", "show", "assoc", f"account={ACCOUNT}", "format=account"], ACCOUNT,
         f"account {ACCOUNT!r}"),
    ]
    for cmd, expected, what in checks:
        try:
            done = _run(cmd)
        except subprocess.TimeoutExpired:
            return f"Slurm not reachable: `{' '.join(cmd)}` timed out"
        if done.returncode != 0:
            return f"Slurm not reachable: `{' '.join(cmd)}` says {done.stderr.strip()!r}"
        if expected not in done.stdout:
            return f"no {what} on this cluster {hint}: `{' '.join(cmd)}` says {done.stdout.strip()!r}"
    return None


# The test cluster's site settings (config `resources.slurm`), an overlay as a cluster user writes one.
TEST_SITE = {"resources": {"slurm": {"cpu_partition": PARTITION, "gpu_partition": PARTITION, "account": ACCOUNT}}}


def write_test_profile(directory: Path, configfiles: list[Path], **settings) -> Path:
    """The project's slurm profile with the test cluster's settings and config files on top, the
    last of them the test cluster's site settings (TEST_SITE)."""
    directory.mkdir(parents=True, exist_ok=True)
    site = directory / "site.yaml"
    site.write_text(yaml.safe_dump(TEST_SITE))
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    profile.update(TEST_CLUSTER_SETTINGS, configfile=[str(p) for p in [*configfiles, site]], **settings)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


@dataclass
class SnakemakeRun:
    returncode: int
    output: str
    seconds: float


def run_snakemake_on_slurm(
    workdir: Path,
    targets: list[str],
    *,
    snakefile: Path,
    profile: Path,
    timeout: float,
    while_running: Callable[[], None] | None = None,
) -> SnakemakeRun:
    """`snakemake --profile PROFILE TARGETS` in `workdir`, killed after `timeout` seconds.

    Partition and account reach the jobs through the site overlay of ``write_test_profile``.
    Whatever happens, Snakemake is gone and the run's jobs are out of the queue on return.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLURM_") and k != "CUDA_VISIBLE_DEVICES"}
    cmd = ["timeout", "-s", "KILL", str(int(timeout)), sys.executable, "-m", "snakemake",
           "--snakefile", str(snakefile), "--profile", str(profile), *targets]
    log = workdir / "snakemake.out"
    start = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        while process.poll() is None:
            if while_running is not None:
                while_running()
            time.sleep(1)
    finally:
        if process.poll() is None:  # while_running failed: end Snakemake, not only `timeout`
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _cancel_queued_jobs(workdir)
    return SnakemakeRun(process.returncode, log.read_text(), time.monotonic() - start)


def _cancel_queued_jobs(workdir: Path) -> None:
    for job_id, _, job_workdir in _queued_jobs():
        if job_workdir == str(workdir):
            _run(["scancel", job_id])


def _queued_jobs() -> list[tuple[str, str, str]]:
    """(job id, comment, workdir) of the jobs in the queue."""
    done = _run(["squeue", "-h", "-o", "%i|%k|%Z"])
    return [tuple(part.strip() for part in line.split("|", 2))
            for line in done.stdout.splitlines() if line.count("|") >= 2]


@dataclass
class SlurmJob:
    """One job from Slurm's accounting records (sacct)."""

    job_id: str
    rule: str
    state: str
    exit_code: str
    partition: str
    account: str
    alloc_tres: str
    submit_line: str
    log: Path | None = field(default=None)

    @property
    def gpus_requested(self) -> int:
        """GPUs on the sbatch command line (`--gpus=N`, `--gres=gpu:N`); 0 when none."""
        match = re.search(r"--gpus[= ](?:\w+:)?(\d+)|--gres[= ]gpu(?::\w+)?:(\d+)", self.submit_line)
        return int(next(g for g in match.groups() if g)) if match else 0

    @property
    def gpus_allocated(self) -> int:
        match = re.search(r"gres/gpu=(\d+)", self.alloc_tres)
        return int(match.group(1)) if match else 0

    @property
    def attempt(self) -> int:
        match = re.search(r"--attempt (\d+)", self.submit_line)
        return int(match.group(1)) if match else 1

    def log_text(self) -> str:
        return self.log.read_text() if self.log and self.log.exists() else ""

    def cuda_visible_devices(self) -> list[str]:
        """What the job's tasks saw, as printed by the test cluster's task prolog."""
        return re.findall(r"task_prolog: CUDA_VISIBLE_DEVICES=(\S*)", self.log_text())


_SACCT_FIELDS = "JobID,State,ExitCode,Partition,Account,AllocTRES,WorkDir,Comment,SubmitLine"


def slurm_jobs(workdir: Path, requeued: bool = False, settle_seconds: float = 20) -> list[SlurmJob]:
    """Accounting records of the jobs submitted from `workdir`, in submission order, once final.
    requeued: also the earlier runs of requeued jobs (same job id, state PREEMPTED or REQUEUED)."""
    deadline = time.monotonic() + settle_seconds
    while True:
        done = _run(["sacct", "-X", "-P", "-n", "-S", "now-1days", "-o", _SACCT_FIELDS]
                    + (["--duplicates"] if requeued else []))
        done.check_returncode()
        jobs = [job for line in done.stdout.splitlines() if (job := _parse_sacct(line, workdir))]
        if all(j.state not in ("PENDING", "RUNNING", "REQUEUED") for j in jobs):
            return sorted(jobs, key=lambda j: int(j.job_id))  # stable: requeued runs stay in order
        if time.monotonic() > deadline:
            raise AssertionError(f"Slurm jobs still active after the run: {jobs}")
        time.sleep(1)


def _parse_sacct(line: str, workdir: Path) -> SlurmJob | None:
    job_id, state, exit_code, partition, account, alloc, wd, comment, submit = line.split("|", 8)
    if wd != str(workdir):
        return None
    match = re.fullmatch(r"(?:rule|group)_(.+?)(?:_wildcards_.*)?", comment.strip())
    output = re.search(r"--output (\S+)", submit)
    return SlurmJob(
        job_id=job_id,
        rule=match.group(1) if match else "",
        state=state.split()[0],  # "CANCELLED by 0" -> CANCELLED
        exit_code=exit_code,
        partition=partition,
        account=account,
        alloc_tres=alloc,
        submit_line=submit,
        log=Path(output.group(1).replace("%j", job_id)) if output else None,
    )


def snakemake_jobs(output: str) -> list[tuple[str, bool]]:
    """(rule, ran locally) for every job Snakemake started, retries included, from its output."""
    return [(m.group(2), m.group(1) == "localrule")
            for m in re.finditer(r"^(localrule|rule) (\w+):$", _without_shown_logs(output),
                                 re.MULTILINE)]


def _without_shown_logs(output: str) -> str:
    """Drop the logs of failed jobs that --show-failed-logs prints (a job's own Snakemake output
    is among them): "Logfile PATH:", a line of "=", the log, the same line of "="."""
    return re.sub(r"^Logfile [^\n]*:\n(=+)\n.*?^\1$", "", output, flags=re.MULTILINE | re.DOTALL)


def submitted_slurm_ids(output: str) -> list[str]:
    """Slurm job ids Snakemake reported submitting."""
    return re.findall(r"has been submitted with SLURM jobid (\d+)", output)


class InterruptAfterCheckpoint:
    """While a run goes on: once `checkpoint_glob` matches under `workdir` and the Slurm job of
    `rule` runs, interrupt that job once, and record which job and the checkpoints it left.

    how="cancel": `scancel` it, as a user, an admin or a crash would; Snakemake must retry it.
    how="preempt": submit a job that needs the whole node to the high-priority partition
    `urgent_partition`, so that Slurm preempts it (on the single-node test cluster) and, as it was
    submitted with --requeue, requeues it under the same job id (Slurm holds a requeued job for
    120 s; that hold is lifted here).
    """

    def __init__(self, workdir: Path, rule: str, checkpoint_glob: str, how: str = "cancel",
                 urgent_partition: str = "urgent"):
        if how not in ("cancel", "preempt"):
            raise ValueError(f"how must be 'cancel' or 'preempt', not {how!r}")
        self.workdir, self.rule, self.glob, self.how = workdir, rule, checkpoint_glob, how
        self.urgent_partition = urgent_partition
        self.job_id: str | None = None
        self.checkpoints: list[str] = []

    def __call__(self) -> None:
        if self.job_id or not list(self.workdir.glob(self.glob)):
            return
        for job_id, comment, job_workdir in _queued_jobs():
            if job_workdir == str(self.workdir) and re.match(rf"rule_{self.rule}(_wildcards_|$)", comment):
                if _run(["squeue", "-h", "-j", job_id, "-o", "%T"]).stdout.strip() != "RUNNING":
                    return
                if self.how == "cancel":
                    _run(["scancel", job_id]).check_returncode()
                else:
                    _run(["sbatch", "-p", self.urgent_partition, "--exclusive", "-t", "1",
                          "-o", "/dev/null", "--wrap", "sleep 1"]).check_returncode()
                self._wait_until_not_running(job_id)
                if self.how == "preempt":
                    _run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"]).check_returncode()
                self.job_id = job_id
                self.checkpoints = sorted(
                    str(p.relative_to(self.workdir)) for p in self.workdir.glob(self.glob))
                return

    @staticmethod
    def _wait_until_not_running(job_id: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = _run(["squeue", "-h", "-j", job_id, "-o", "%T"]).stdout.strip()
            if state not in ("RUNNING", "COMPLETING"):
                return
            time.sleep(0.5)
        raise AssertionError(f"Slurm job {job_id} still running {seconds} s after it was interrupted")
