"""How often a generator's output parses (exactly one <|pipe|>), trained vs its untrained base:
a cheap check, on a few validation contexts, that Bonito training taught the output format. Its
own job (rule parse_check), so that changing it never reruns the training.

    python -m bonito_repro parse-check --base MODEL_DIR --adapter ADAPTER_DIR \\
        --validation V.parquet --params JSON --out parse_check.json [--threads N]

It reads the saved adapter the way the generation stage does (full-precision base, adapter
merged), so it checks what generation will get; that is also several times faster on CPU than
generating through the 4-bit training model."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..runtime.backends import greedy_texts
from ..runtime.device import add_device_flag, stage_device
from ..core.io import Manifest, check_writable, parse_params, read_parquet, set_threads, setup_logging
from ..runtime.models import encode_with_bos, load_tokenizer
from ..core.prompts import parse_bonito_output

log = logging.getLogger(__name__)


def parsed(texts: list[str]) -> int:
    return sum(parse_bonito_output(t, "") is not None for t in texts)


def parse_shares(base_dir: str | Path, adapter_dir: str | Path, validation: str | Path, contexts: int,
                 max_new_tokens: int, bf16: bool = False, *, device: str) -> dict:
    """Parsable greedy generations of BOS + prompt (the training layout) for the first validation
    contexts, untrained base and base + trained adapter, all prompts in one batch on ``device``:
    counts, shares and one example of each."""
    prompts = [str(p) for p in read_parquet(validation, ["input"]).to_pandas()["input"].head(contexts)]
    ids = encode_with_bos(load_tokenizer(base_dir), prompts)
    longest = max(map(len, ids)) + max_new_tokens
    decoding = {"max_new_tokens": max_new_tokens, "token_budget": len(ids) * longest, "max_model_len": longest,
                "bf16": bf16, "seed": 0, "device": device}  # greedy: the seed draws nothing
    base, trained = (greedy_texts("transformers", base_dir, adapter, ids, **decoding) for adapter in (None, adapter_dir))
    counts = {"contexts": len(prompts), "trained_parsed": parsed(trained), "base_parsed": parsed(base)}
    return {"counts": counts, "decoding": "greedy", "trained": counts["trained_parsed"] / len(prompts),
            "base": counts["base_parsed"] / len(prompts), "trained_example": trained[0], "base_example": base[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro parse-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the generator's base model directory")
    parser.add_argument("--adapter", type=Path, required=True, help="the trained generator adapter")
    parser.add_argument("--validation", type=Path, required=True, help="validation rows (parquet; column input)")
    parser.add_argument("--params", required=True,
                        help="JSON: the config's parse_check section (contexts, max_new_tokens) and bf16")
    parser.add_argument("--out", type=Path, required=True, help="shares and counts, with the manifest's fields (JSON)")
    parser.add_argument("--threads", type=int)
    add_device_flag(parser)
    args = parser.parse_args(argv)
    setup_logging()
    stage_device(args.device, f"parse-check {args.adapter}")
    set_threads(args.threads)
    params = parse_params(args.params)
    check_writable(args.out)
    manifest = Manifest("parse_check", params=params)
    result = parse_shares(args.base, args.adapter, args.validation, params["contexts"], params["max_new_tokens"],
                          bf16=params["bf16"], device=args.device)
    manifest.counts = result.pop("counts")
    manifest.extra = {"model": str(args.base), "adapter": str(args.adapter), "validation": str(args.validation),
                      **result}
    manifest.write(args.out)
    log.info("%s parses on %d of %d validation contexts, its untrained base on %d", args.adapter,
             manifest.counts["trained_parsed"], manifest.counts["contexts"], manifest.counts["base_parsed"])
    return 0
