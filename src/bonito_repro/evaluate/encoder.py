"""Token ids of evaluation prompts and answers (docs/protocol.md, section 8.1)."""
from __future__ import annotations

import logging
from typing import Sequence

from ..models import encode_prompts
from ..prompts import CHAT, INSTRUCTION_WRAPPERS, WRAPPERS
from .errors import EvaluationError

log = logging.getLogger(__name__)


class PromptEncoder:
    """Token ids as the paper builds them: BOS + wrapped prompt (cut to ``max_length``), and each
    answer tokenized on its own, followed by EOS except under an instruction-tuned model's wrapper
    (``inst``, ``chat``)."""

    def __init__(self, tokenizer, wrapper: str, max_length: int):
        if wrapper not in [*WRAPPERS, CHAT]:
            raise EvaluationError(f"unknown wrapper {wrapper!r}; use one of {sorted([*WRAPPERS, CHAT])}")
        self.tokenizer, self.wrapper, self.max_length = tokenizer, wrapper, max_length
        if tokenizer.bos_token_id is None:
            log.warning("the tokenizer has no BOS token: prompts start without one")
        self.eos = [] if wrapper in INSTRUCTION_WRAPPERS else [tokenizer.eos_token_id]
        self.truncated = 0

    def prompts(self, texts: Sequence[str]) -> list[list[int]]:
        ids = encode_prompts(self.tokenizer, [text.strip() for text in texts], self.wrapper)
        self.truncated += sum(len(i) > self.max_length for i in ids)
        return [i[:self.max_length] for i in ids]

    def answer(self, text: str) -> list[int]:
        return self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"] + self.eos
