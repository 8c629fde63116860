"""Exact prompt strings: the Bonito input and output (docs/protocol.md, section 3) and the
evaluation/training wrappers (section 8.1). The markers are plain text, not special tokens."""
from __future__ import annotations

from .tasks import task_type_name

PIPE = "<|pipe|>"
CONTEXT_PLACEHOLDER = "{{context}}"
WRAPPERS = {
    "plain": "Instruct: {prompt}\nAnswer:",
    "inst": "[INST] {prompt} [/INST]",
    "io": "<|input|>\n{prompt}\n<|output|>\n",
}
# the model's own chat template (tokenizer.apply_chat_template): an instruction-tuned model's
# format, as inst is Mistral-7B-Instruct-v0.2's; models.encode_prompts applies it
CHAT = "chat"
# wrappers of instruction-tuned models: their answers are scored without EOS (section 8.1)
INSTRUCTION_WRAPPERS = ("inst", CHAT)
ALL_WRAPPERS = (*WRAPPERS, CHAT)
# both models of instruction backtranslation are trained and prompted under this wrapper: the
# training rule and the generation read it here, so they cannot disagree
BACKTRANSLATION_WRAPPER = "io"


def bonito_input(context: str, task_type: str) -> str:
    """The Bonito generator's input for one passage (task type as code or full name)."""
    return f"<|tasktype|>\n{task_type_name(task_type)}\n<|context|>\n{context.strip()}\n<|task|>\n"


def bonito_output(instruction: str, response: str) -> str:
    """The Bonito training target: instruction (passage shown as {{context}}), pipe, response."""
    return f"{instruction}\n{PIPE}\n{response}"


def parse_bonito_output(text: str, context: str) -> tuple[str, str] | None:
    """(instruction, response) from a generation, or None unless splitting on the pipe gives
    exactly two parts (the Bonito package's only filter). Both sides are stripped and
    ``{{context}}`` is replaced by the passage on both. A side may come back empty: the
    generation funnel counts and drops those under their own reason."""
    parts = text.split(PIPE)
    if len(parts) != 2:
        return None
    instruction, response = (p.strip().replace(CONTEXT_PLACEHOLDER, context.strip()) for p in parts)
    return instruction, response


def wrap(prompt: str, wrapper: str) -> str:
    """Apply a string wrapper (``plain``, ``inst`` or ``io``; ``chat`` needs the tokenizer, see
    models.encode_prompts); BOS is the tokenizer's job."""
    try:
        return WRAPPERS[wrapper].format(prompt=prompt)
    except KeyError:
        raise ValueError(f"unknown wrapper {wrapper!r}; use one of {sorted(WRAPPERS)}") from None
