"""The scales a user runs (`bonito-repro run --scale`, `corpus --scale`), the Snakemake profile
each runs under, and which entries of the config are a scale's own: config.yaml declares the
paper's models, targets and generators, and every scale overlays it, so a CPU scale's merged
config still holds the paper's 7B targets. At a CPU scale an entry is its own when the files that
scale adds (its overlay and the layers it names) declare it; a GPU scale (the paper's, the
workstation's) runs every entry its merged config declares."""
from __future__ import annotations

from functools import cache

from ..core.config import merged_config, scale_files, workflow_root

# scale -> the profile it runs under (a folder beside the Snakefile): the CPU scales on this
# machine's cores, the workstation on its one GPU, the paper's on Slurm. The rehearsal has its own
# command (make rehearsal).
SCALE_PROFILES = {"local": "local", "smoke": "local", "workstation": "workstation", "paper": "slurm"}


@cache
def own_entries(scale: str, section: str) -> frozenset[str]:
    """The names the scale's own files declare under ``section`` (targets, generators, models)."""
    root = workflow_root()
    files = scale_files(scale, root)
    merged = merged_config(files, root=root)
    if merged["device"] != "cpu":
        return frozenset(merged[section])
    return frozenset(merged_config(files[1:], root=root).get(section) or {})  # the overlay, with its layers


def scales_declaring(section: str, name: str) -> list[str]:
    """The scales whose own files declare ``name`` under ``section``."""
    return [scale for scale in SCALE_PROFILES if name in own_entries(scale, section)]
