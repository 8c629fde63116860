"""Stand-in for a training job: counts steps, checkpoints every few and resumes from the newest.

A retried job finds the checkpoints of the attempt that was killed (they live outside the rule's
declared outputs, which Snakemake deletes before a retry) and logs the step it resumes from.
"""

import argparse
import json
import os
import time
from pathlib import Path


def latest_step(checkpoints: Path) -> int:
    return max((int(p.stem.removeprefix("step-")) for p in checkpoints.glob("step-*.json")), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--save-every", type=int, required=True)
    parser.add_argument("--seconds-per-step", type=float, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}", flush=True)
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    start = latest_step(args.checkpoints)
    print(f"resumed from step {start}" if start else "starting at step 0", flush=True)
    for step in range(start + 1, args.steps + 1):
        time.sleep(args.seconds_per_step)
        if step % args.save_every == 0:
            partial = args.checkpoints / f".step-{step}.partial"
            partial.write_text(json.dumps({"step": step}))
            partial.rename(args.checkpoints / f"step-{step}.json")  # atomic: never half a checkpoint
            print(f"checkpoint step {step}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"steps": args.steps, "resumed_from": start}))


if __name__ == "__main__":
    main()
