"""What `bonito-repro run` prints while the workflow runs and when it ends.

By default Snakemake's terminal output is condensed, line by line (``Condenser``): each job's
block (input, output, log, reason, resources, its shell command) becomes one line saying which
job started, and each finished job one line with its stage's count (``adapt 3 of 12``) beside
Snakemake's overall progress; errors, warnings and everything else pass through as they are.
``--verbose`` (and a dry run) prints Snakemake's output unchanged, shell commands included. At the
end of a successful run, ``summary`` names the main table (printed when this run wrote it), the
job-hours spent beside the cost model's projection where the scale's cost section applies
(bonito_repro.cluster.spent), where the outputs are, and how to build the report."""
from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from ..core import layout

_TIMESTAMP = re.compile(r"^\[\w{3} \w{3} +\d+ (\d\d:\d\d:\d\d) \d{4}\]$")
_JOB_HEAD = re.compile(r"^(?:local)?rule (\w+):$")
_FIELD = re.compile(r"^ {4}(\w+): (.*)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")
# lines a condensed terminal leaves out: scheduling rounds
_DROPPED = ("Select jobs to execute...", "Execute ")
NOTHING_TO_DO = "Nothing to be done"


class Condenser:
    """Snakemake's terminal output, condensed (the module's docstring): ``feed`` takes one line
    and returns the lines to print for it (none, while a job's block is read)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}     # rule -> jobs, from Snakemake's job stats table
        self.done: Counter[str] = Counter()
        self.jobs: dict[str, str] = {}       # jobid -> "rule wildcards", for its finished line
        self._time = ""                      # the timestamp line before a job's block, held back
        self._held: str | None = None        # that line, printed if no job block follows
        self._block: dict[str, str] | None = None   # the job block being read
        self._in_stats = self._in_shell = False
        self.worked = False                  # a job finished, or Snakemake found nothing to do

    def feed(self, line: str) -> list[str]:
        line = line.rstrip("\n")
        out: list[str] = []
        if self._block is not None:
            field = _FIELD.match(line)
            if field:
                self._block[field.group(1)] = field.group(2)
                return []
            out.append(self._started())
        if self._in_shell:  # a shell command's continuation lines, up to the next known line
            if not line.strip() or _TIMESTAMP.match(line) or _FINISHED.match(line) or _JOB_HEAD.match(line):
                self._in_shell = False
            else:
                return out
        stamp = _TIMESTAMP.match(line)
        if stamp:
            out += self._flush()
            self._time, self._held = stamp.group(1), line
            return out
        head = _JOB_HEAD.match(line)
        if head:
            self._held = None
            self._block = {"rule": head.group(1)}
            return out
        finished = _FINISHED.match(line)
        if finished:
            self._held = None
            rule = finished.group(2)
            self.done[rule] += 1
            self.worked = True
            what = self.jobs.pop(finished.group(1), rule)
            total = self.totals.get(rule)
            count = f"{rule} {self.done[rule]} of {total}" if total else f"{rule} {self.done[rule]}"
            return [*out, f"[{self._time}] done   {what}  ({count})"]
        out += self._flush()
        if not line.strip() and (self.jobs or self.done):  # the blank lines between job blocks
            return out
        self.worked = self.worked or line.startswith(NOTHING_TO_DO)
        if line.startswith("Shell command:"):
            self._in_shell = True
            return out
        if line == "Job stats:":
            self._in_stats = True
        elif self._in_stats:
            row = _STATS_ROW.match(line)
            if row and row.group(1) == "total":
                self._in_stats = False
            elif row:
                self.totals[row.group(1)] = int(row.group(2))
        if line.startswith(_DROPPED):
            return out
        return [*out, line]

    def _started(self) -> str:
        block, self._block = self._block, None
        wildcards = block.get("wildcards", "").replace(", ", " ")
        what = f"{block['rule']} {wildcards}".strip()
        if "jobid" in block:
            self.jobs[block["jobid"]] = what
        return f"[{self._time}] start  {what}"

    def _flush(self) -> list[str]:
        held, self._held = self._held, None
        return [held] if held else []

    def close(self) -> list[str]:
        """What is still held when Snakemake's output ends."""
        return ([self._started()] if self._block is not None else []) + self._flush()


def summary(workdir: Path, started: float, spent: Sequence[str] = (), run_name: str | None = None) -> list[str]:
    """The lines printed after a successful run started at ``started`` (``time.time()``) in
    ``workdir``: the main table if this run wrote it, the ``spent`` lines (job-hours spent and
    projected), where the outputs are (the run's own folder: config ``run.name``), the report."""
    table = layout.paper("main_table.md", run_name)
    lines = [""]
    if (workdir / table).exists() and (workdir / table).stat().st_mtime >= started:
        lines += [f"The main table ({table}):", "", (workdir / table).read_text(encoding="utf-8").rstrip(), ""]
    return lines + list(spent) + [
        f"Outputs, under {workdir / layout.RESULTS}/: tables and figures in {layout.run_dir(run_name)}/, synthetic tasks "
        f"in {layout.synthetic('GENERATOR', 'DATASET')}, adapters in {layout.adapter('TARGET', 'SOURCE', 'DATASET')}/, "
        f"scores in {layout.evaluation('TARGET', 'SOURCE', 'DATASET')}, a log per job in {layout.log('JOB')}, "
        "a manifest.json beside every output.",
        # make report builds the default run's; a named run's is built from its own overlays
        f"The report, one HTML page: {'make report, or ' if run_name is None else ''}bonito-repro run --report "
        f"{layout.paper('report.html', run_name)}" + ("" if run_name is None else " with this run's --scale and --configfile"),
    ]


def run_condensed(command: list[str], workdir: Path, started: float,
                  spent: Callable[[], list[str]] | None = None, run_name: str | None = None) -> int:
    """Run Snakemake's ``command``, its output condensed, then the summary (with the lines
    ``spent`` gives once the jobs have ended, and the run's own folder) if it ran jobs or had
    nothing left to do; its exit status."""
    condenser = Condenser()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
        for line in process.stdout:
            for out in condenser.feed(line):
                print(out, flush=True)
        for out in condenser.close():
            print(out)
    if process.returncode == 0 and condenser.worked:
        print("\n".join(summary(workdir, started, spent() if spent else (), run_name)))
    return process.returncode
