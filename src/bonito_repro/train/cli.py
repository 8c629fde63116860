"""Training stage: one engine for the Bonito generator (Q-LoRA on ctga-v1), the P3 stand-in
adapter, LoRA adaptation of targets on synthetic tasks, and the TAPT baseline.

    python -m bonito_repro train --mode pairs --base results/models/M --data X.parquet \\
        [--validation V.parquet] [--init-adapter DIR] --wrapper none|io|inst --out ADAPTER_DIR \\
        --checkpoints DIR --manifest M.json --params JSON --threads N --device cuda|cpu
    python -m bonito_repro train --mode tapt ...   (column `input` only; params need tapt_block_size)

With more than one process, launch it under torchrun:
    python -m torch.distributed.run --standalone --nproc_per_node N -m bonito_repro train ...
A killed run started again with the same arguments resumes from the latest complete checkpoint
under --checkpoints and ends at the same step count with the same weights. Pairs that are an
alternative generator's empty set (bonito_repro.core.empty_sets) train nothing: --out gets only a
marker saying "no tasks (0 of N kept)", which evaluation and the tables carry on.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..runtime.device import add_device_flag, stage_device
from ..core.empty_sets import empty_set, write_marker
from ..core.io import Manifest, parse_params, setup_logging
from .data import PAIR_WRAPPERS
from .engine import MODES, TrainError, TrainJob, run

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bonito-repro train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, required=True,
                        help="pairs: input/output rows, loss on the output; tapt: passages packed into blocks")
    parser.add_argument("--base", type=Path, required=True, help="base model directory")
    parser.add_argument("--init-adapter", type=Path, help="start from this adapter (loaded trainable)")
    parser.add_argument("--data", type=Path, required=True, help="training rows (parquet)")
    parser.add_argument("--validation", type=Path, help="validation rows (parquet; columns input, output)")
    parser.add_argument("--wrapper", choices=PAIR_WRAPPERS, default="none",
                        help="prompt wrapper of the input (none: the input is already the prompt)")
    parser.add_argument("--out", type=Path, required=True, help="final adapter directory")
    parser.add_argument("--checkpoints", type=Path, required=True, help="resume checkpoints (not an output)")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--params", required=True, help="training section of the config, as JSON")
    parser.add_argument("--threads", type=int, help="CPU threads for all processes together")
    add_device_flag(parser)
    parser.add_argument("--name", default="", help="what is trained, for messages and the manifest")
    return parser.parse_args(argv)


def skip_empty_set(args: argparse.Namespace, empty: dict) -> None:
    """The marker instead of an adapter, and a manifest with no loss (its figure says why)."""
    write_marker(args.out, empty)
    manifest = Manifest("train", params=parse_params(args.params))
    manifest.counts = {"examples": 0, "steps": 0}
    manifest.extra = {"name": args.name, "no_tasks": empty["note"], "train_loss": [], "validation_loss": []}
    manifest.write(args.manifest)
    log.warning("%s: %s: nothing to adapt on, adaptation skipped", args.name or args.out, empty["note"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    empty = empty_set(args.data) if args.mode == "pairs" else None
    if empty is not None:
        skip_empty_set(args, empty)
        return 0
    stage_device(args.device, f"train {args.name or args.out}")
    job = TrainJob(mode=args.mode, base=args.base, data=args.data, out=args.out, checkpoints=args.checkpoints,
                   manifest=args.manifest, params=parse_params(args.params), device=args.device,
                   wrapper=args.wrapper, init_adapter=args.init_adapter, validation=args.validation,
                   name=args.name, threads=args.threads)
    try:
        record = run(job)
    except TrainError as error:
        log.error("%s", error)
        return 1
    if record is not None:
        log.info("trained %s: %d steps, %.1f tokens/s", args.name or args.out, record["steps"],
                 record["tokens_per_second"] or 0.0)
    return 0
