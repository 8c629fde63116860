"""Shared writing helpers: atomic writes leave nothing half-written and give outputs the usual mode;
manifests name the CPU their outputs were computed on."""
from __future__ import annotations

import json
import os
import stat

import pandas as pd
import pytest

from bonito_repro.core.io import Manifest, atomic_path, machine, write_json, write_parquet


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
