"""The generator kinds, in one place: what each asks its model and how its replies are parsed.
A kind is a config entry (`generators:` in config.yaml, checked by the schema) plus the module
named here; the shards, the funnel, the manifests and adaptation are the same for every kind.

- ``bonito``: the Bonito input (prompts.py), BOS + prompt, replies split on ``<|pipe|>``.
- ``prompted``: an instruction-tuned model under its own chat template, asked with the package's
  prompt file (prompted.py); replies are ``Instruction:`` / ``Response:``.
- ``endpoint``: the same request and parser, sent to an OpenAI-compatible chat endpoint
  (endpoint.py), whose server applies its model's chat template.
- ``published``: a released synthetic set read as it is (inputs.load_published); nothing is
  generated, so it has no entry here.
- ``backtranslation``: a backward model writes instructions, the forward model rates them
  (backtranslation.py, with rules of its own); no entry here either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..core.prompts import bonito_input, parse_bonito_output
from .prompted import parse_prefixed_output, parse_prompted_output, prompted_request, reply_prefix


@dataclass(frozen=True)
class Kind:
    prompt: Callable[[str, str], str]                       # (passage, task type) -> prompt text
    wrapper: str                                            # how a local model reads it: none (BOS + prompt) | chat
    reply_prefix: Callable[[], str]                         # what a local model's reply starts with
    parse: Callable[[str, str], tuple[str, str] | None]     # (reply, passage) -> (instruction, response)
    # an alternative generator that keeps no task for a dataset is a result (its cell of the
    # tables says so), not an error; the main grid's Bonito sets stop the run instead
    empty_is_result: bool


KINDS: dict[str, Kind] = {
    "bonito": Kind(prompt=bonito_input, wrapper="none", reply_prefix=lambda: "", parse=parse_bonito_output,
                   empty_is_result=False),
    "prompted": Kind(prompt=prompted_request, wrapper="chat", reply_prefix=reply_prefix,
                     parse=parse_prefixed_output, empty_is_result=True),
    "endpoint": Kind(prompt=prompted_request, wrapper="chat", reply_prefix=lambda: "", parse=parse_prompted_output,
                     empty_is_result=True),
}
# kinds whose released sets are read, not generated; an empty released set is a broken download
PUBLISHED = "published"
# the alternative generators, for which a set that keeps no task is a result; `backtranslation`
# runs its own chain of two models (generate/backtranslation.py), so it has no entry in KINDS
ALTERNATIVE_KINDS = frozenset({*(k for k, spec in KINDS.items() if spec.empty_is_result), "backtranslation"})
