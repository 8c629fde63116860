"""Resume checkpoints: where they live, which are complete, and whether they belong to this run.

Checkpoints sit under a path that is not a declared Snakemake output (Snakemake deletes outputs
before a retry). A run fingerprint (params, inputs' sizes and mtimes) guards against resuming a
checkpoint of a different configuration: on a mismatch the directory is cleared.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

from ..core.io import file_listing, write_json

log = logging.getLogger(__name__)

FINGERPRINT = "run.json"
# Trainer writes trainer_state.json last, after weights, optimizer, scheduler and RNG states.
COMPLETE_MARKER = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def fingerprint(settings: dict, inputs: list[str | Path | None]) -> str:
    """A hash of the run's settings and of its input files (names, sizes, modification times)."""
    record = {"settings": settings,
              "inputs": {str(p): file_listing(Path(p)) for p in inputs if p is not None}}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    found = []
    if directory.is_dir():
        for child in directory.iterdir():
            match = _CHECKPOINT.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child))
    return sorted(found)


def is_complete(checkpoint: Path) -> bool:
    """Its trainer state is there and readable: Trainer writes that file last, and not atomically,
    so a kill during the save can leave it torn."""
    try:
        json.loads((checkpoint / COMPLETE_MARKER).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as error:
        log.warning("checkpoint %s is unreadable (%s: %s): treated as unfinished", checkpoint,
                    COMPLETE_MARKER, error)
        return False
    return True


def _stamped(stamp: Path) -> str | None:
    """The fingerprint a checkpoint directory was stamped with (None if unreadable)."""
    try:
        return json.loads(stamp.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError) as error:
        log.warning("%s is unreadable (%s): its checkpoints cannot be matched to this run", stamp, error)
        return None


def prepare(directory: Path, run_fingerprint: str) -> Path | None:
    """Make ``directory`` hold only complete checkpoints of this run; return the latest one
    (None for a fresh start). A checkpoint killed while being written is removed."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / FINGERPRINT
    if stamp.exists() and _stamped(stamp) != run_fingerprint:
        log.warning("%s holds checkpoints of a different or unknown configuration or inputs; starting "
                    "afresh", directory)
        for child in directory.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    write_json({"fingerprint": run_fingerprint}, stamp)
    latest = None
    for step, path in checkpoints(directory):
        if is_complete(path):
            latest = path
        else:
            log.warning("removing incomplete checkpoint %s", path)
            shutil.rmtree(path)
    return latest


def latest_complete(directory: Path) -> Path | None:
    complete = [path for _, path in checkpoints(directory) if is_complete(path)]
    return complete[-1] if complete else None
