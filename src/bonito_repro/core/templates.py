"""A dataset's evaluation prompt templates, given in its dataset file's ``templates``
(``data/datasets/<key>.yaml``; docs/protocol.md, section 8.4), and rendering them.

A dataset file gives its templates in one of three kinds:

- ``verbatim``: promptsource-style templates kept whole as they were published (``jinja``:
  prompt ``|||`` target; ``answer_choices``), such as the Bonito authors' own. Which choice each
  canonical label scores is derived, not written: the target is rendered for a row of each raw
  label of the dataset's label map and must give one of the choices.
- ``promptsource``: templates of the installed promptsource package, by name; ``labels`` gives
  the canonical label of each of their answer choices in order.
- ``inline``: a prompt written out, with ``choices`` mapping each canonical label to its answer.

Rendering goes through promptsource's ``Template.apply`` as the paper's scripts do (every field
cut at 2,048 characters, the result stripped). Only the prompt side is rendered for the test
rows; the scored answers are the choices, stripped, keyed by the canonical labels yes / no / maybe.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .errors import InputError
from .schemas import FieldType, raw_label

CANONICAL_LABELS = ("yes", "no", "maybe")
SEPARATOR = "|||"  # promptsource's, between prompt and target


class TemplateError(InputError):
    """A template entry is malformed or does not fit the test rows."""


def _promptsource():
    with warnings.catch_warnings():  # promptsource imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from promptsource import templates
    return templates


@dataclass(frozen=True)
class EvalTemplate:
    """One prompt template: its Jinja prompt, the scored answer text of each canonical label
    (None for a generation template), the test-set column behind each template variable, and
    promptsource's ``answer_choices`` expression, which the prompt may read as ``answer_choices``."""

    name: str
    jinja: str
    choices: dict[str, str] | None = None
    fields: dict[str, str] = field(default_factory=dict)
    answer_choices: str | None = None

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
        return _promptsource().Template(name=self.name, jinja=self.jinja, reference="",
                                        answer_choices=self.answer_choices)


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
        out.append(EvalTemplate(name=name, jinja=jinja, choices=choices, fields=dict(fields),
                                answer_choices=source.answer_choices))
    return out


def _split(jinja: str, name: str, where: str) -> tuple[str, str]:
    """(prompt, target) of a promptsource-style template: the Jinja before and after ``|||``."""
    parts = jinja.split(SEPARATOR)
    if len(parts) != 2:
        raise TemplateError(f"{where}: template {name!r}: its jinja needs one {SEPARATOR!r} between the "
                            f"prompt and the target, it has {len(parts) - 1}")
    return parts[0], parts[1]


def _derive_choices(name: str, target: str, answer_choices: str, labels: dict, label_type: FieldType | None,
                    fields: dict, where: str) -> dict[str, str]:
    """Canonical label -> answer text, in the order of ``answer_choices``: the target rendered (as
    promptsource's ``Template.apply`` renders it, stripped) for a row holding only a raw label of
    the map, once per label. Every label must render one of the choices, every choice be one
    label's, and no two canonical labels share a choice."""
    promptsource = _promptsource()
    texts = promptsource.Template(name=name, jinja="", reference="",
                                  answer_choices=answer_choices).get_fixed_answer_choices_list()
    if texts is None:
        raise TemplateError(f"{where}: template {name!r}: answer_choices must be a fixed list (no template "
                            f"variables), got {answer_choices!r}")
    if len(set(texts)) != len(texts):
        raise TemplateError(f"{where}: template {name!r}: answer_choices repeat a choice: {texts}")
    renderer = promptsource.Template(name=name, jinja=target, reference="", answer_choices=answer_choices)
    owner: dict[str, tuple[str, str]] = {}  # answer text -> (raw label, canonical label)
    chosen: dict[str, tuple[str, str]] = {}  # canonical label -> (raw label, answer text)
    for raw, canonical in labels["map"].items():
        value = raw_label(raw, label_type)
        example = {labels["field"]: value, **{v: value for v, c in fields.items() if c == labels["field"]}}
        try:
            text = renderer.apply(example)[0]
        except Exception as error:  # jinja errors name neither the template nor the label
            raise TemplateError(f"{where}: template {name!r}: its target fails for label {raw!r}: {error}") from error
        if text not in texts:
            raise TemplateError(f"{where}: template {name!r}: label {raw!r} ({canonical}) renders the target "
                                f"{text!r}, which is not one of its answer choices {texts}")
        first, first_canonical = owner.setdefault(text, (raw, canonical))
        if first_canonical != canonical:
            raise TemplateError(f"{where}: template {name!r}: labels {first!r} ({first_canonical}) and {raw!r} "
                                f"({canonical}) both render the target {text!r}")
        first, first_text = chosen.setdefault(canonical, (raw, text))
        if first_text != text:
            raise TemplateError(f"{where}: template {name!r}: labels {first!r} and {raw!r} are both {canonical} "
                                f"but render the targets {first_text!r} and {text!r}")
    unlabelled = [text for text in texts if text not in owner]
    if unlabelled:
        raise TemplateError(f"{where}: template {name!r}: no label renders the answer choice(s) {unlabelled}; "
                            "each choice needs a gold label")
    return {owner[text][1]: text for text in texts}


def _from_verbatim(entries: list[dict], fields: dict, labels: dict | None, test_fields: dict,
                   where: str) -> list[EvalTemplate]:
    out = []
    for entry in entries:
        name = entry["name"]
        prompt, target = _split(entry["jinja"], name, where)
        choices = None
        if "answer_choices" in entry:
            if not labels:
                raise TemplateError(f"{where}: template {name!r}: answer_choices need the dataset's labels "
                                    "(which choice is each label's is derived from them)")
            label_type = test_fields["required"].get(labels["field"])
            choices = _derive_choices(name, target, entry["answer_choices"], labels, label_type, fields, where)
        out.append(EvalTemplate(name=name, jinja=prompt, choices=choices, fields=dict(fields),
                                answer_choices=entry.get("answer_choices")))
    return out


def _check_choices(template: EvalTemplate, where: str) -> None:
    if template.choices is None:
        return
    unknown = set(template.choices) - set(CANONICAL_LABELS)
    if unknown or len(template.choices) < 2:
        raise TemplateError(f"{where}: template {template.name!r} choices {template.choices} must map "
                            f"at least two of {CANONICAL_LABELS} to answer texts")


def load_templates(spec: dict, labels: dict | None, test_fields: dict, where: str) -> list[EvalTemplate]:
    """The templates a dataset file's ``templates`` entry gives, in its order. ``labels`` and
    ``test_fields`` (the file's, for the label field's type) let a verbatim template's choices be
    derived; ``where`` (the file, or the command-line flag) names the entry in errors."""
    fields = spec.get("fields", {})
    if "promptsource" in spec:
        templates = _from_promptsource(spec["promptsource"], fields, where)
    elif "verbatim" in spec:
        templates = _from_verbatim(spec["verbatim"], fields, labels, test_fields, where)
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
