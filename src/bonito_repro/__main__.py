"""`python -m bonito_repro STAGE ...`: one small CLI per stage; the rules call these."""
from __future__ import annotations

import importlib
import os
import sys

from .core.errors import InputError

# Threads that spin while waiting cost more than they save on a shared CPU (measured: a
# one-passage generation step 1.94 s -> 0.12 s on 2 busy cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# stage name -> module whose main(argv) runs it: a stage is named after its module, hyphens for
# underscores; a stage package (ctga, train, generate, evaluate) keeps its command in cli.py
STAGES = {
    "models": "bonito_repro.prepare.models",
    "target-data": "bonito_repro.prepare.target_data",
    "ctga": "bonito_repro.ctga.cli",
    "train": "bonito_repro.train.cli",
    "parse-check": "bonito_repro.train.parse_check",
    "generate": "bonito_repro.generate.cli",
    "backtranslation": "bonito_repro.generate.backtranslation",
    "quality-profile": "bonito_repro.reporting.quality_profile",
    "evaluate": "bonito_repro.evaluate.cli",
    "table": "bonito_repro.reporting.table",
    "baselines": "bonito_repro.reporting.baselines",
    "main-table": "bonito_repro.reporting.main_table",
    "plot": "bonito_repro.reporting.plot",
    "cost": "bonito_repro.cluster.cost",
    "preflight": "bonito_repro.cluster.preflight",
    "gpu-check": "bonito_repro.cluster.gpu_check",
    "corpus": "bonito_repro.workflow.corpus",
    "cards": "bonito_repro.reporting.cards",
    "ablations": "bonito_repro.workflow.ablations",
    "ablation-figures": "bonito_repro.reporting.ablation_figures",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STAGES:
        print(f"usage: python -m bonito_repro {{{','.join(STAGES)}}} ...", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[argv[0]])
    try:
        return module.main(argv[1:]) or 0
    except InputError as error:  # a bad file, row or key: its message, not a library traceback
        print(f"bonito_repro {argv[0]}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
