"""Generator kind `prompted` (and `endpoint`, its served twin): an instruction-tuned model asked
to write one task of a task type for a passage, as the paper's alternative generators
(Mistral-7B-Instruct-v0.2, Zephyr-7B-beta) were. The request comes from the package's prompt
file (data/prompted_prompts.yaml, this project's own: docs/protocol.md, D16); the reply is an
``Instruction:`` line and a ``Response:`` line.

The kept task carries the passage as a Bonito task does: where the model wrote ``{{context}}``
it is replaced by the passage (on both sides, as Bonito's), else the passage goes in front of
the instruction, so adaptation sees the same shape of data from every generator.
"""
from __future__ import annotations

import functools
import re

import yaml

from ..core import PACKAGE_DATA
from ..core.prompts import CONTEXT_PLACEHOLDER
from ..core.tasks import task_type_code

PROMPTS_PATH = PACKAGE_DATA / "prompted_prompts.yaml"
# a label at the start of a line, optionally in markdown bold (small chat models like **Instruction:**)
_LABEL = re.compile(r"^[ \t]*(?:\*\*|__)?(instruction|response)(?:\*\*|__)?[ \t]*:(?:\*\*|__)?", re.I | re.M)


@functools.cache
def prompt_file() -> dict:
    return yaml.safe_load(PROMPTS_PATH.read_text())


def prompted_request(passage: str, task_type: str) -> str:
    """The user's turn asking for one task of ``task_type`` (code or full name) about ``passage``."""
    spec = prompt_file()
    entry = spec["task_types"][task_type_code(task_type)]
    return spec["request"].format(passage=passage.strip(), task=entry["task"], description=entry["description"])


def reply_prefix() -> str:
    """What a local model's reply is started with (the prompt file's ``reply_prefix``)."""
    return prompt_file()["reply_prefix"]


def parse_prefixed_output(text: str, passage: str) -> tuple[str, str] | None:
    """``parse_prompted_output`` of a local model's reply, which began after ``reply_prefix``."""
    return parse_prompted_output(reply_prefix() + text, passage)


def parse_prompted_output(text: str, passage: str) -> tuple[str, str] | None:
    """(instruction with the passage, response) from a reply, or None unless it holds exactly one
    ``Instruction:`` label followed by exactly one ``Response:`` label, each at a line start. A
    side may come back empty: the funnel counts those under ``empty``."""
    labels = [(m.group(1).lower(), m.start(), m.end()) for m in _LABEL.finditer(text)]
    if [name for name, _, _ in labels] != ["instruction", "response"]:
        return None
    (_, _, instruction_end), (_, response_start, response_end) = labels
    instruction = text[instruction_end:response_start].strip()
    response = text[response_end:].strip()
    passage = passage.strip()
    if not instruction:
        return "", response.replace(CONTEXT_PLACEHOLDER, passage)
    if CONTEXT_PLACEHOLDER in instruction:
        instruction = instruction.replace(CONTEXT_PLACEHOLDER, passage)
    elif passage:
        instruction = f"{passage}\n\n{instruction}"
    return instruction, response.replace(CONTEXT_PLACEHOLDER, passage)
