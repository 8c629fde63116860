"""The jobs of a Snakemake dry run (``snakemake -n``), read from its printed job blocks: the one
parser of that text, for the cost model and the tests."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_BLOCK = re.compile(r"\n(?=(?:local)?rule \w+:)")


@dataclass(frozen=True)
class Job:
    """One job of a run: its rule, wildcards and the resources it requests (gpu, runtime, threads);
    the paths it writes (outputs, log, benchmark) and its shell command (with ``-p``), which
    say whether two configs plan the same job."""

    rule: str
    wildcards: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    writes: tuple[str, ...] = ()
    command: str = ""


def dry_run_jobs(output: str) -> list[Job]:
    """Each job block of a dry run's output: rule, wildcards, resources (threads included), the
    paths it writes and its shell command."""
    jobs = []
    for block in _BLOCK.split(output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        keys = ("wildcards", "resources", "threads", "output", "log", "benchmark")
        found = {key: re.search(rf"^\s+{key}: (.*)$", block, re.MULTILINE) for key in keys}
        wildcards = dict(kv.split("=", 1) for kv in found["wildcards"].group(1).split(", ")) if found["wildcards"] else {}
        resources = dict(kv.split("=", 1) for kv in found["resources"].group(1).split(", ")) if found["resources"] else {}
        if found["threads"]:
            resources["threads"] = found["threads"].group(1).strip()
        writes = tuple(path for key in ("output", "log", "benchmark") if found[key]
                       for path in found[key].group(1).split(", "))
        command = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        jobs.append(Job(head.group(1), wildcards, resources, writes, command.group(1) if command else ""))
    return jobs
