"""Shared writing helpers: atomic writes leave nothing half-written and give outputs the usual mode;
manifests name the CPU their outputs were computed on."""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.core.io import (DiskFullError, Manifest, atomic_dir, atomic_path, check_writable, machine,
                                  naming_a_full_disk, read_json, temporary_beside, write_json, write_parquet,
                                  write_text)


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


def _checkpoint(folder: Path) -> None:
    import torch

    with naming_a_full_disk(folder, "a checkpoint", 4_000_000):
        torch.save({"w": torch.zeros(1_000_000)}, folder / "optimizer.pt")  # torch: "unexpected pos"


def _adapter(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    with atomic_dir(folder / "adapter", 4_000_000) as tmp:
        save_file({"w": torch.zeros(1_000_000)}, tmp / "adapter_model.safetensors")


@pytest.mark.parametrize("write, what, size", [
    (lambda d: write_parquet(pd.DataFrame({"a": [str(i) * 50 for i in range(100_000)]}), d / "rows.parquet"),
     "rows.parquet", "about [0-9,]+ bytes"),
    (lambda d: write_text("x" * 2_000_000, d / "table.md"), "table.md", "about 2,000,000 bytes"),
    (_checkpoint, "a checkpoint", "about 4,000,000 bytes"),
    (_adapter, "adapter", "about 4,000,000 bytes"),
], ids=["parquet", "text", "checkpoint", "adapter"])
def test_a_full_disk_names_the_folder_the_bytes_free_and_the_size(small_disk, write, what, size):
    """ENOSPC in a table or data write, torch's "unexpected pos" in a checkpoint save and
    safetensors' error in an adapter save all read as one message; no torn temporary is left."""
    with pytest.raises(DiskFullError) as error:
        write(small_disk)
    message = str(error.value)
    assert re.fullmatch(rf"{re.escape(str(small_disk))}: the disk is full: writing {what} needs {size} \(an "
                        r"estimate: the write did not finish\); [0-9,]+ bytes free there now\. .*", message), message
    assert "\n" not in message
    assert [p.name for p in small_disk.iterdir()] == (["optimizer.pt"] if what == "a checkpoint" else [])


def test_a_full_disk_stops_a_command_in_one_line(small_disk, tmp_path, capsys):
    manifest, full = tmp_path / "subset.json", tmp_path / "full.parquet"
    write_json({"alias_of_full_set": True, "counts": {"size": 9, "rows_in": 5}}, manifest)
    full.write_bytes(os.urandom(2_000_000))
    assert bonito_repro(["ablations", "unless-alias", "--subset", str(manifest), "--copy", str(full),
                         str(small_disk / "own.parquet"), "--", "false"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"bonito-repro ablations: {small_disk}: the disk is full: writing own.parquet needs about 2,000,000 "
        "bytes (an estimate: the write did not finish); 1,048,576 bytes free there now. Free space there (or "
        "point the results folder at a larger disk) and rerun: finished outputs are kept")
X86_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 f16c rdrand

processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd asimddp sve crc32\nCPU part\t: 0xd40\n"


@pytest.mark.parametrize("text, model, flags", [
    (X86_CPUINFO, "AMD EPYC 7B13", ["avx", "avx2", "f16c", "fma", "sse", "sse2", "sse4_1", "sse4_2", "ssse3"]),
    (ARM_CPUINFO, None, ["asimd", "asimddp", "sve"]),
])
def test_machine_names_the_cpu_and_its_instruction_set_flags(tmp_path, text, model, flags):
    (tmp_path / "cpuinfo").write_text(text)
    record = machine(tmp_path / "cpuinfo")
    assert record["cpu_flags"] == flags  # the first processor's, the vector extensions only
    assert record["cpu_model"] == (model or record["cpu_model"]) and record["cpu_model"]
    assert record["architecture"]


def test_every_manifest_records_the_machine_beside_the_versions(tmp_path):
    import torch  # noqa: F401  (loaded, so the manifest names torch's kernel level)

    record = Manifest("stage").write(tmp_path / "m.json")
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["machine"] == record["machine"] and "torch" in written["versions"]
    assert written["machine"]["cpu_model"] and written["machine"]["torch_cpu_capability"]
    if os.path.exists("/proc/cpuinfo"):
        assert written["machine"]["cpu_flags"], written["machine"]
