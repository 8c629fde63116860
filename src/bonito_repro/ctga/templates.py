"""Meta-templates: a P3 template turned around so that the passage is the input and the whole
original task (prompt and target, passage shown as the literal ``{{context}}``) is the output.

Templates come from promptsource's own template files. A meta-template is a promptsource
``Template`` whose Jinja is ``CONTEXT_EXPRESSION ||| ORIGINAL`` where, inside ORIGINAL, the context
expression is replaced by a variable that renders ``{{context}}`` and the original ``|||`` by a
marker; ``Template.apply`` then yields (passage, instruction MARKER response), rendered by the same
code, filters and truncation as the original P3 template.
"""
from __future__ import annotations

import copy
import functools
import random
import re
import warnings
from dataclasses import dataclass

import jinja2

with warnings.catch_warnings():
    # promptsource imports pkg_resources, which warns that it is deprecated
    warnings.simplefilter("ignore", UserWarning)
    import promptsource.templates as promptsource
from promptsource.templates import DatasetTemplates, Template

from .tables import Annotation

# promptsource compiles a template's Jinja source on every apply (milliseconds, 16x the cost of
# rendering). Compiled templates are immutable, so memoising the compile renders the same, but for
# one thing: Jinja folds a filter on constant arguments into the compiled code, so a cached
# `["Question", "Problem"] | choice` would keep its first draw for every later render (of any row,
# seed, and of evaluation templates in the same process). A filter that takes the context is never
# folded: promptsource's `choice` is replaced by one that draws from `random` at each render.
if not hasattr(promptsource.env.from_string, "cache_info"):
    promptsource.env.from_string = functools.lru_cache(maxsize=None)(promptsource.env.from_string)


@jinja2.pass_context
def _choice_at_render(_context, choices):
    return random.choice(choices)


promptsource.env.filters["choice"] = _choice_at_render

PLACEHOLDER_VAR = "ctga_context_placeholder"
PLACEHOLDER_TAG = "{{" + PLACEHOLDER_VAR + "}}"
# Stands in for the original template's "|||" inside the meta-template's output part.
TASK_SEPARATOR = "<|ctga-task-separator|>"
# P3 datasets whose templates count only where they hold the context expression verbatim (the
# authors' rule for qasc, whose expression spans two tags).
EXACT_ONLY = frozenset({"qasc"})

# Jinja punctuation around which templates space freely: "{{passage}}" == "{{ passage }}".
_DELIMITERS = re.compile(r"\s*(\{\{|\}\}|\{%|%\}|\||\(|\)|,)\s*")


@dataclass(frozen=True)
class MetaTemplate:
    p3_dataset: str
    name: str
    task_type: str       # full task-type name
    original: Template
    meta: Template


def promptsource_templates(dataset: str, config: str | None) -> dict[str, Template]:
    """name -> Template, read from promptsource's templates.yaml for the dataset (offline)."""
    return {t.name: t for t in DatasetTemplates(dataset, config).templates.values()}


def _literal(text: str) -> str:
    """Regex for literal text; whitespace runs match any whitespace or a ``\\n`` escape (the
    table writes dream's join("\\n\\n") with real newlines, its templates with escapes)."""
    out = []
    for part in re.split(r"(\s+)", text):
        out.append(r"(?:\s|\\n)+" if part.isspace() else re.escape(part))
    return "".join(out)


def context_pattern(expression: str, exact: bool = False) -> re.Pattern:
    """Regex matching the context expression in a template, with Jinja-insensitive spacing."""
    if exact:
        return re.compile(re.escape(expression))
    tokens = [t for t in _DELIMITERS.split(expression) if t]
    return re.compile(r"\s*".join(
        re.escape(t) if _DELIMITERS.fullmatch(t) else _literal(t) for t in tokens))


def meta_jinja(jinja: str, expression: str, exact: bool = False) -> str | None:
    """The meta-template's Jinja, or None where the context expression is not in the template."""
    replaced, found = context_pattern(expression, exact).subn(lambda _: PLACEHOLDER_TAG, jinja)
    if not found:
        return None
    return f"{expression}|||" + replaced.replace("|||", TASK_SEPARATOR)


def build_meta_templates(
    p3_dataset: str, annotations: list[Annotation], expression: str, templates: dict[str, Template],
) -> tuple[list[MetaTemplate], dict[str, list[str]]]:
    """Meta-templates of a P3 dataset's annotated templates, and the names dropped by reason."""
    exact = p3_dataset.partition("/")[0] in EXACT_ONLY
    metas: list[MetaTemplate] = []
    dropped: dict[str, list[str]] = {"template_missing_in_promptsource": [],
                                     "template_context_not_found": []}
    for annotation in annotations:
        original = templates.get(annotation.template)
        if original is None:
            dropped["template_missing_in_promptsource"].append(annotation.template)
            continue
        jinja = meta_jinja(original.jinja, expression, exact)
        if jinja is None:
            dropped["template_context_not_found"].append(annotation.template)
            continue
        meta = copy.deepcopy(original)
        meta.jinja = jinja
        metas.append(MetaTemplate(p3_dataset, annotation.template, annotation.task_type, original,
                                  meta))
    return metas, dropped
