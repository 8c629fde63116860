"""The jobs of a Snakemake dry run (``snakemake -n``), read from its printed job blocks: the one
parser of that text, for the cost model and the tests."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_BLOCK = re.compile(r"\n(?=(?:local)?rule \w+:)")


@dataclass(frozen=True)
class Job:
    """One job of a run: its rule, wildcards and the resources it requests (gpu, runtime,
    threads); the files it writes (outputs, logs and benchmark, paths from the working directory)
    and its shell command (with ``-p``), which say whether two configs plan the same job."""

    rule: str
    wildcards: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    output: tuple[str, ...] = ()
    log: tuple[str, ...] = ()
    benchmark: str = ""
    command: str = ""

    @property
    def writes(self) -> tuple[str, ...]:
        """Every path the job writes: outputs, logs and benchmark."""
        return (*self.output, *self.log, *([self.benchmark] if self.benchmark else []))


def dry_run_jobs(output: str) -> list[Job]:
    """Each job block of a dry run's output: rule, wildcards, resources (threads included), the
    files it writes and its shell command."""
    jobs = []
    for block in _BLOCK.split(output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        found = {key: re.search(rf"^\s+{key}: (.*)$", block, re.MULTILINE)
                 for key in ("wildcards", "resources", "threads", "output", "log", "benchmark")}
        wildcards = dict(kv.split("=", 1) for kv in found["wildcards"].group(1).split(", ")) if found["wildcards"] else {}
        resources = dict(kv.split("=", 1) for kv in found["resources"].group(1).split(", ")) if found["resources"] else {}
        if found["threads"]:
            resources["threads"] = found["threads"].group(1).strip()
        files = {key: tuple(found[key].group(1).split(", ")) if found[key] else () for key in ("output", "log")}
        benchmark = found["benchmark"].group(1) if found["benchmark"] else ""
        command = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        jobs.append(Job(head.group(1), wildcards, resources, files["output"], files["log"], benchmark,
                        command.group(1) if command else ""))
    return jobs
