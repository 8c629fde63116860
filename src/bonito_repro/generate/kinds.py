"""What each generator kind that prompts a model asks it and how its replies are parsed. Which
rule runs a kind, whether it runs a model here and whether it is an alternative to the paper's
Bonito is the registry's (bonito_repro.core.generators); the shards, the funnel, the manifests
and adaptation are the same for every kind.

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

from ..core.generators import GENERATOR_KINDS, kind_written_by
from ..core.prompts import bonito_input, parse_bonito_output
from .prompted import parse_prefixed_output, parse_prompted_output, prompted_request, reply_prefix


@dataclass(frozen=True)
class Kind:
    prompt: Callable[[str, str], str]                       # (passage, task type) -> prompt text
    wrapper: str                                            # how a local model reads it: none (BOS + prompt) | chat
    reply_prefix: Callable[[], str]                         # what a local model's reply starts with
    parse: Callable[[str, str], tuple[str, str] | None]     # (reply, passage) -> (instruction, response)


KINDS: dict[str, Kind] = {
    "bonito": Kind(prompt=bonito_input, wrapper="none", reply_prefix=lambda: "", parse=parse_bonito_output),
    "prompted": Kind(prompt=prompted_request, wrapper="chat", reply_prefix=reply_prefix, parse=parse_prefixed_output),
    "endpoint": Kind(prompt=prompted_request, wrapper="chat", reply_prefix=lambda: "", parse=parse_prompted_output),
}
# the paper's generator, the one kind here that is no alternative: what `generate` runs without --kind
(PAPER_KIND,) = (kind for kind in KINDS if not GENERATOR_KINDS[kind].alternative)
# the kind whose released sets `generate --published` reads (its rule is not told the kind)
PUBLISHED = kind_written_by("published_tasks")
