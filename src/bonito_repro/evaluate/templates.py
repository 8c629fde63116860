"""A dataset's evaluation prompt templates, given in its dataset file's ``templates``
(``data/datasets/<key>.yaml``; docs/protocol.md, section 8.4, D11), and rendering them.

Rendering goes through promptsource's ``Template.apply`` as the paper's scripts do (every field
cut at 2,048 characters, the result stripped). Only the prompt side of a template is rendered;
answer choices come from the dataset file, keyed by the canonical labels yes / no / maybe.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

CANONICAL_LABELS = ("yes", "no", "maybe")


class TemplateError(ValueError):
    """A template entry is malformed or does not fit the test rows."""


def _promptsource():
    with warnings.catch_warnings():  # promptsource imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from promptsource import templates
    return templates


@dataclass(frozen=True)
class EvalTemplate:
    """One prompt template: its Jinja prompt, the scored answer text of each canonical label
    (None for a generation template) and the test-set column behind each template variable."""

    name: str
    jinja: str
    choices: dict[str, str] | None = None
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.choices or {})

    @property
    def answer_texts(self) -> list[str]:
        return list((self.choices or {}).values())

    def render(self, row: dict[str, Any]) -> str:
        example = dict(row)
        for variable, column in self.fields.items():
            if column not in row:
                raise TemplateError(f"template {self.name!r} reads column {column!r} "
                                    f"(as {variable!r}), which the test rows lack (they have {sorted(row)})")
            example[variable] = row[column]
        return self._template.apply(example)[0]

    @cached_property
    def _template(self):
        return _promptsource().Template(name=self.name, jinja=self.jinja, reference="")


def render_all(template: EvalTemplate, rows: list[dict[str, Any]], seed: int) -> list[str]:
    """Prompts of one template for every row. Some promptsource templates draw words at random
    (question_num_hint_answer's ``choice`` filter); the paper left that unseeded, here it is
    seeded per template so that a rerun gives the same prompts."""
    return [prompt for prompt, _ in render_with_states(template, rows, seed)]


def render_with_states(template: EvalTemplate, rows: list[dict[str, Any]], seed: int) -> list[tuple[str, Any]]:
    """``render_all``'s prompts, each with the random state its rendering started from, so that
    ``render_again`` can render the row changed (a shortened passage) with the same random words."""
    random.seed(f"{seed}:{template.name}")
    rendered = []
    for i, row in enumerate(rows):
        state = random.getstate()
        rendered.append((_render(template, row, i), state))
    return rendered


def render_again(template: EvalTemplate, row: dict[str, Any], i: int, state: Any) -> str:
    """Row ``i`` of a ``render_with_states`` call, changed, rendered from the random state it had."""
    random.setstate(state)
    return _render(template, row, i)


def _render(template: EvalTemplate, row: dict[str, Any], i: int) -> str:
    try:
        return template.render(row)
    except TemplateError:
        raise
    except Exception as error:  # jinja errors name neither the template nor the row
        raise TemplateError(f"template {template.name!r} fails on test row {i}: {error}") from error


def _from_promptsource(spec: dict, fields: dict, where: str) -> list[EvalTemplate]:
    templates = _promptsource().DatasetTemplates(spec["dataset"], spec.get("subset"))
    labels = spec.get("labels")
    out = []
    for name in spec["names"]:
        if name not in templates.all_template_names:
            raise TemplateError(f"{where}: promptsource has no template {name!r} for "
                                f"{spec['dataset']}/{spec.get('subset')}")
        source = templates[name]
        jinja = source.jinja.split("|||")[0]  # the prompt side; targets come from the test rows
        for old, new in spec.get("replace", {}).items():
            jinja = jinja.replace(old, new)
        choices = None
        if labels is not None:
            texts = source.get_fixed_answer_choices_list()
            if texts is None or len(texts) != len(labels):
                raise TemplateError(f"{where}: template {name!r} has answer choices {texts}, "
                                    f"not one for each of {labels}")
            choices = dict(zip(labels, texts))
        out.append(EvalTemplate(name=name, jinja=jinja, choices=choices, fields=dict(fields)))
    return out


def _check_choices(template: EvalTemplate, where: str) -> None:
    if template.choices is None:
        return
    unknown = set(template.choices) - set(CANONICAL_LABELS)
    if unknown or len(template.choices) < 2:
        raise TemplateError(f"{where}: template {template.name!r} choices {template.choices} must map "
                            f"at least two of {CANONICAL_LABELS} to answer texts")


def load_templates(spec: dict, where: str) -> list[EvalTemplate]:
    """The templates a dataset file's ``templates`` entry gives, in its order; ``where`` (the file,
    or the command-line flag) names the entry in errors."""
    fields = spec.get("fields", {})
    if "promptsource" in spec:
        templates = _from_promptsource(spec["promptsource"], fields, where)
    else:
        templates = [EvalTemplate(name=t["name"], jinja=t["jinja"], choices=t.get("choices"),
                                  fields=dict(fields)) for t in spec["inline"]]
    names = [t.name for t in templates]
    if len(set(names)) != len(names):
        raise TemplateError(f"{where}: duplicate template names {names}")
    kinds = {t.choices is None for t in templates}
    if len(kinds) != 1:
        raise TemplateError(f"{where}: templates with and without answer choices are mixed")
    for template in templates:
        _check_choices(template, where)
    return templates
