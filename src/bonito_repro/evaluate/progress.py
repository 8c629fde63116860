"""An evaluation's finished templates, kept so that a killed job resumes where it stopped.

Each template's outcome (its predictions with their scores, and the prompts it fitted to
max_length) is written atomically as soon as the template is scored, into a folder that is not a
declared output (Snakemake deletes those before a retry; layout.checkpoints), under a name
hashed from everything that shapes it: the model's, adapter's and test file's listings (names,
sizes, modification times), every value of the job, and the template. A rerun reuses the
templates it finds and scores the rest, template by template as an uninterrupted run does, so
its predictions are the same; a changed value or input never reuses a stale template. The folder
is removed once the job's outputs are written."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..core.io import file_listing, read_json, short_hash, write_json
from ..core.errors import InputError

log = logging.getLogger(__name__)


class TemplateProgress:
    """The finished templates of one job under ``directory`` (None: kept nowhere), keyed by the
    job's ``values`` and its ``inputs``' listings."""

    def __init__(self, directory: Path | None, values: dict, inputs: list[Path | None]):
        self.directory = directory
        record = {"values": values, "inputs": {str(p): file_listing(Path(p)) for p in inputs if p is not None}}
        self.key = short_hash(json.dumps(record, sort_keys=True, default=str))
        self.reused = 0  # templates loaded from an earlier attempt

    def _path(self, index: int, name: str) -> Path:
        return self.directory / f"template-{index:02d}-{short_hash(self.key, str(index), name)}.json"

    def load(self, index: int, name: str) -> dict | None:
        """The outcome of template ``index`` (``name``) finished by an earlier attempt, or None."""
        if self.directory is None or not self._path(index, name).exists():
            return None
        try:
            outcome = read_json(self._path(index, name))
        except InputError as error:
            log.warning("%s: scored again", error)
            return None
        self.reused += 1
        return outcome

    def save(self, index: int, name: str, outcome: dict) -> None:
        if self.directory is not None:
            write_json(outcome, self._path(index, name))


def clear_progress(directory: Path | None) -> None:
    """Remove a job's finished templates once its outputs are written."""
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
