"""The scales a user runs (`bonito-repro run --scale`, `corpus --scale`), the Snakemake profile
each runs under, and which scale declares an entry of the config: config.yaml declares the
paper's models, targets and generators, and every scale overlays it, so a CPU scale's merged
config still holds the paper's 7B targets. An entry is a scale's own when the files that scale
adds (its overlay and the layers it names; config.yaml for the paper's) declare it."""
from __future__ import annotations

from functools import cache

from ..core.config import merged_config, scale_files, workflow_root

# scale -> the profile it runs under (a folder beside the Snakefile): the CPU scales on this
# machine's cores, the paper's on Slurm. The rehearsal has its own command (make rehearsal).
SCALE_PROFILES = {"local": "local", "smoke": "local", "paper": "slurm"}


@cache
def own_entries(scale: str, section: str) -> frozenset[str]:
    """The names the scale's own files declare under ``section`` (targets, generators, models)."""
    root = workflow_root()
    files = scale_files(scale, root)
    own = files[1:] or files  # an overlay (with its layers), or config.yaml for the paper's
    return frozenset(merged_config(own, root=root).get(section) or {})


def scales_declaring(section: str, name: str) -> list[str]:
    """The scales whose own files declare ``name`` under ``section``."""
    return [scale for scale in SCALE_PROFILES if name in own_entries(scale, section)]
