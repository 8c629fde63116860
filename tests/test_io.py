"""Shared writing helpers: atomic writes leave nothing half-written and give outputs the usual mode."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bonito_repro.core.io import (atomic_dir, atomic_path, check_writable, read_json, temporary_beside, write_json,
                                  write_parquet)


def test_outputs_get_the_umask_mode_not_mkstemp_private(tmp_path):
    saved = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "x.json")
        write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet")
    finally:
        os.umask(saved)
    for name in ("x.json", "x.parquet"):  # readable by the group and others on a shared cluster
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def _killed_mid_write(out: Path) -> Path:
    """The temporary a process left beside ``out`` when SIGKILLed between its write and its rename."""
    code = ("import sys, time\nfrom bonito_repro.core.io import atomic_path\n"
            f"with atomic_path({str(out)!r}) as tmp:\n"
            "    tmp.write_text('half')\n    print(tmp, flush=True)\n    time.sleep(60)\n")
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        left = Path(writer.stdout.readline().strip())
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert left.read_text() == "half" and str(writer.pid) in left.name
    return left


@pytest.mark.parametrize("later", ["write", "output check"])
def test_a_later_run_removes_the_temporaries_of_dead_processes(tmp_path, later):
    out = tmp_path / "out.json"
    dead = _killed_mid_write(out)
    live = temporary_beside(out)  # this process's: alive, so it stays
    live.write_text("mine")
    if later == "write":
        write_json({"a": 1}, out)
        assert read_json(out) == {"a": 1}
    else:
        check_writable(out)
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name] + (["out.json"] if later == "write" else []))


def test_a_directory_is_replaced_whole_and_a_failed_one_leaves_the_old(tmp_path):
    out = tmp_path / "adapter"
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "weights").write_text("ha")
            raise RuntimeError("killed")
    assert (out / "weights").read_text() == "old"
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"] and (out / "weights").read_text() == "new"
