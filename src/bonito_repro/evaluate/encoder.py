"""Token ids of evaluation prompts and answers (docs/protocol.md, sections 8.1 and 8.5)."""
from __future__ import annotations

import logging
from typing import Any, Sequence

from ..runtime.models import encode_prompts
from ..core.prompts import ALL_WRAPPERS, INSTRUCTION_WRAPPERS
from .errors import EvaluationError
from ..core.templates import EvalTemplate, render_again, render_with_states
from .truncation import cut_passage, largest_fitting, passage_texts

log = logging.getLogger(__name__)

# what the manifest counts of prompts over max_length: the prompts cut from the right (truncation:
# right) and the prompts whose passage was shortened (passage), each with the tokens they lost
TRUNCATION_COUNTS = ("truncated_right", "truncated_right_tokens", "passage_shortened", "passage_shortened_tokens")


class PromptEncoder:
    """Token ids as the paper builds them: BOS + wrapped prompt, and each answer tokenized on its
    own, followed by EOS except under an instruction-tuned model's wrapper (``inst``, ``chat``). A
    prompt over ``max_length`` tokens is fitted as ``truncation`` says, and counted in ``counts``:
    ``right`` keeps its first max_length tokens (the authors'); ``passage`` renders it again with
    the row's ``passage`` fields cut, at a token boundary from their end, as little as lets the
    whole wrapped prompt fit; ``fail`` stops. Errors name the ``dataset``, template and row."""

    def __init__(self, tokenizer, wrapper: str, max_length: int, truncation: str, *, dataset: str,
                 passage: Sequence[str] = ()):
        if wrapper not in ALL_WRAPPERS:
            raise EvaluationError(f"unknown wrapper {wrapper!r}; use one of {sorted(ALL_WRAPPERS)}")
        if truncation == "passage" and not passage:
            raise EvaluationError(f"{dataset}: evaluation.truncation is 'passage', but no passage field is "
                                  "given (its dataset file's `passage`)")
        self.tokenizer, self.wrapper, self.max_length = tokenizer, wrapper, max_length
        self.truncation, self.dataset, self.passage = truncation, dataset, list(passage)
        if tokenizer.bos_token_id is None:
            log.warning("the tokenizer has no BOS token: prompts start without one")
        self.eos = [] if wrapper in INSTRUCTION_WRAPPERS else [tokenizer.eos_token_id]
        self.counts = dict.fromkeys(TRUNCATION_COUNTS, 0)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """The wrapped prompts' ids, whole."""
        return encode_prompts(self.tokenizer, [text.strip() for text in texts], self.wrapper)

    def prompts(self, template: EvalTemplate, rows: Sequence[dict], row_ids: Sequence[int],
                seed: int) -> list[list[int]]:
        """The ids of ``template``'s prompt for every row, none over ``max_length``; ``row_ids``
        name the rows in errors."""
        rendered = render_with_states(template, list(rows), seed)
        ids = self.encode([text for text, _ in rendered])
        for i, (row, row_id, (_, state)) in enumerate(zip(rows, row_ids, rendered)):
            if len(ids[i]) > self.max_length:
                where = f"{self.dataset}: template {template.name!r}, row {row_id}"
                ids[i] = self._fit(ids[i], template, row, i, state, where)
        return ids

    def _fit(self, ids: list[int], template: EvalTemplate, row: dict, i: int, state: Any, where: str) -> list[int]:
        if self.truncation == "fail":
            raise EvaluationError(f"{where}: the prompt is {len(ids)} tokens, over evaluation.max_length "
                                  f"{self.max_length} (evaluation.truncation: fail)")
        if self.truncation == "right":
            self.counts["truncated_right"] += 1
            self.counts["truncated_right_tokens"] += len(ids) - self.max_length
            return ids[:self.max_length]
        texts = passage_texts(row, self.passage, where)
        offsets = self.tokenizer(texts, add_special_tokens=False,
                                 return_offsets_mapping=True)["offset_mapping"] if texts else []
        ends = [[end for _, end in piece] for piece in offsets]
        n = sum(map(len, ends))
        tried: dict[int, list[int]] = {}

        def fits(keep: int) -> bool:
            cut = cut_passage(row, self.passage, texts, ends, keep)
            tried[keep] = self.encode([render_again(template, cut, i, state)])[0]
            return len(tried[keep]) <= self.max_length

        keep = largest_fitting(fits, n - (len(ids) - self.max_length), n)
        if keep < 0:
            raise EvaluationError(f"{where}: the prompt is {len(tried.get(0, ids))} tokens with an empty passage "
                                  f"({', '.join(self.passage)}), over evaluation.max_length {self.max_length}")
        self.counts["passage_shortened"] += 1
        self.counts["passage_shortened_tokens"] += len(ids) - len(tried[keep])
        return tried[keep]

    def answer(self, text: str) -> list[int]:
        return self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"] + self.eos
