"""What `bonito-repro run` checks before Snakemake starts: the config files (file and line), the
folders the run writes into (which folder), the free space against what the run is projected to
write (a warning naming the folder, the bytes free and the projected bytes)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bonito_repro.cluster import preflight
from bonito_repro.core import layout
from bonito_repro.core.config import load_scale
from bonito_repro.workflow import prerun

from conftest import Job


def run(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "bonito_repro", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("text, said", [
    ("", "empty file; expected a mapping of config keys"),
    ("run:\n  targets: [a\n  b: c\n", "line 3, column 4: not valid YAML"),
])
def test_an_empty_or_broken_overlay_is_named_with_its_line_before_snakemake_starts(tmp_path, text, said):
    """Snakemake read these first and said only "Config file is not valid JSON or YAML" (or "must
    be given as JSON or YAML with keys at top level"), naming neither file nor line."""
    (tmp_path / "mine.yaml").write_text(text)
    for dry in ([], ["-n"]):
        result = run(*dry, "--configfile", "mine.yaml", cwd=tmp_path)
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"bonito-repro run: {tmp_path / 'mine.yaml'}: {said}")
        assert "Traceback" not in result.stderr and not (tmp_path / ".snakemake").exists()


def _read_only(folder: Path) -> None:
    """A folder no process may write into, root included: root ignores the permission bits, so as
    root the folder is made immutable (chattr +i); a test that cannot do so fails in CI and is
    skipped elsewhere."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True) if shutil.which("chattr") else None
    if done is None or done.returncode:
        reason = f"cannot make {folder} immutable as root ({done.stderr.strip() if done else 'no chattr'})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _writable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o755)


@pytest.mark.dag
def test_an_output_that_cannot_be_replaced_is_named_before_snakemake_starts(tmp_path):
    """An existing output in a read-only folder, rerun: Snakemake removed the old output first and
    ended in its own traceback (PermissionError in snakemake/io). Now one line names the folder."""
    table = tmp_path / layout.test_split("pubmed_qa")
    table.parent.mkdir(parents=True)
    table.write_text("the old output")
    _read_only(table.parent)
    try:
        result = run("--scale", "smoke", "--cores", "1", "--forcerun", "test_set", layout.test_split("pubmed_qa"),
                     cwd=tmp_path)
    finally:
        _writable(table.parent)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    why = "Operation not permitted" if os.geteuid() == 0 else "Permission denied"
    assert result.stderr.splitlines() == [
        f"bonito-repro run: {table.parent}: cannot write or replace the run's outputs there ({why}); make it "
        "writable (chmod u+w, or chattr -i for an immutable folder) or run in another directory (-d DIR); "
        "checked before Snakemake started"]
    assert "Traceback" not in result.stdout + result.stderr and table.read_text() == "the old output"


def test_every_folder_an_output_goes_to_is_checked_and_an_old_output_folder_whole(tmp_path):
    adapter = tmp_path / layout.adapter("t", "tapt", "d")
    (adapter / "inner").mkdir(parents=True)
    job = Job("adapt", output=(layout.adapter("t", "tapt", "d"), layout.evaluation("t", "tapt", "d")),
              log=(layout.log("adapt/t/tapt/d"),), benchmark=layout.benchmark("adapt/t/tapt/d"))
    folders = prerun.folders_to_write(tmp_path, [job])
    # what is not made yet is checked at its nearest existing folder; the old adapter folder whole
    assert folders == sorted({tmp_path / layout.RESULTS, adapter.parent, adapter, adapter / "inner"})
    assert prerun.folders_to_write(tmp_path, []) == []  # nothing to do: nothing written
    _read_only(adapter / "inner")
    try:
        found = prerun.unwritable_folders(folders)
    finally:
        _writable(adapter / "inner")
    assert [folder for folder, _ in found] == [adapter / "inner"]
    assert prerun.unwritable_text(found).startswith(f"{adapter / 'inner'}: cannot write or replace")


def test_a_run_projected_to_need_more_than_is_free_is_warned_naming_folder_free_and_projected(tmp_path, monkeypatch):
    config = load_scale("workstation")
    jobs = [Job("adapt", {"target": "mistral_7b", "source": "tapt", "dataset": "pubmed_qa"})]
    plan = prerun.Plan(config, jobs)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 5000, 5000))
    monkeypatch.setattr(preflight, "quota_left", lambda path: (None, "quota not read (no `quota` tool here; ask your site's)"))
    warning = prerun.disk_warning(plan, tmp_path)
    projected = sum(preflight.cost.disk_bytes(config, jobs).values())
    assert warning.startswith(f"{tmp_path}: may lack room for this run: 0.00 GB free (quota not read")
    assert f"projected to write {projected / 1e9:.2f} GB; projected adapters" in warning
    assert "downloads not counted" in warning
    assert prerun.disk_warning(prerun.Plan(load_scale("smoke"), jobs), tmp_path) is None  # a CPU scale: not its sizes
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 0, 10**12))
    assert prerun.disk_warning(plan, tmp_path) is None


@pytest.mark.dag
def test_the_run_warns_at_its_start_where_the_disk_lacks_the_projected_room(small_disk):
    """A 1 MiB tmpfs and a workstation plan holding a 7B adaptation (its adapter and checkpoints
    projected at about 1 GB); --touch, so that no job runs."""
    result = run("--scale", "workstation", "--cores", "1", "--touch", layout.adapter("mistral_7b", "tapt", "pubmed_qa"),
                 cwd=small_disk)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    warning = [line for line in result.stderr.splitlines() if line.startswith("bonito-repro run: warning:")]
    assert len(warning) == 1 and f"warning: {small_disk}: may lack room for this run: 0.00 GB free" in warning[0]
    assert "the run is projected to write" in warning[0] and "projected adapters" in warning[0]
