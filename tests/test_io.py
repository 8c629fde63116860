"""Shared writing helpers: atomic writes leave nothing half-written and give outputs the usual mode."""
from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from bonito_repro.core.io import atomic_path, write_json, write_parquet


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
