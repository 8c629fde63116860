"""The generator kinds, in one table that code looks up (a kind is never matched as a string
elsewhere): which rule writes a kind's synthetic sets, which rule trains what it needs, whether a
local model generates (on ``generation.backend``'s environment), and whether a set that keeps no
task is a result. What a kind's config entry must hold is its block of the schema
(properties.generators); how it prompts and parses is its module under bonito_repro.generate.

Adding a kind: an entry here, its schema block, its config entry, its module (with its prompt and
parser in generate.kinds.KINDS if rule `generate` runs it), its rule, its tests;
tests/test_registries.py holds the entry to the schema, the rules and generate.kinds.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratorKind:
    rule: str                     # the rule that writes synthetic/{generator}/{dataset}.*
    runs_model: bool              # a local model generates, in generation.backend's environment
    alternative: bool             # not the paper's Bonito: a set that keeps no task is a result
    training_rule: str | None = None   # the rule that trains what it generates with, if any
    local_rule: bool = False      # runs where the network is (an endpoint, a download)
    beyond_paper: bool = False    # a method the paper does not use: figures label it so


GENERATOR_KINDS: dict[str, GeneratorKind] = {
    # Bonito: `base` + the adapter train_bonito trains on ctga, or a full published `model`
    "bonito": GeneratorKind(rule="generate", runs_model=True, alternative=False, training_rule="train_bonito"),
    # an instruction-tuned model asked with the package's prompt, under its chat template
    "prompted": GeneratorKind(rule="generate", runs_model=True, alternative=True),
    # the same request, sent to an OpenAI-compatible chat endpoint
    "endpoint": GeneratorKind(rule="endpoint_tasks", runs_model=False, alternative=True, local_rule=True),
    # a released synthetic set, read as it is (an empty one is a broken download)
    "published": GeneratorKind(rule="published_tasks", runs_model=False, alternative=False, local_rule=True),
    # instruction backtranslation: backward and forward adapters, then self-curation
    "backtranslation": GeneratorKind(rule="backtranslate", runs_model=True, alternative=True,
                                     training_rule="train_backtranslation", beyond_paper=True),
}
BEYOND_PAPER = "beyond the paper"


def generator_label(name: str, spec: dict) -> str:
    """How figures and tables name a generator: a kind the paper does not use says so."""
    return f"{name} ({BEYOND_PAPER})" if kind_of(spec).beyond_paper else name


def passage_cap(generation_cap: int | None, spec: dict) -> int | None:
    """The passages a generator reads of a dataset at most: ``generation.max_passages`` and the
    generator's own ``max_passages`` (a paid endpoint's bound), the smaller of the two; None: all."""
    caps = [c for c in (generation_cap, spec.get("max_passages")) if c is not None]
    return min(caps) if caps else None


def kind_of(spec: dict) -> GeneratorKind:
    """The registry entry of a generator's config entry."""
    return GENERATOR_KINDS[spec["kind"]]


def trains(spec: dict) -> bool:
    """Whether the workflow trains something for this generator: its kind has a training rule and
    the entry names a `base` to train, not a full `model` used as it is."""
    return kind_of(spec).training_rule is not None and "model" not in spec


def kind_written_by(rule: str) -> str:
    """The one generator kind whose sets ``rule`` writes: what the stage that rule runs records
    as its kind, since its command is not told."""
    kinds = [name for name, entry in GENERATOR_KINDS.items() if entry.rule == rule]
    if len(kinds) != 1:
        raise ValueError(f"rule {rule!r} writes the sets of the generator kinds {kinds}, not of one")
    return kinds[0]


def generators_of(config: dict, *, kind: str | None = None, rule: str | None = None,
                  runs_model: bool | None = None, trained: bool | None = None,
                  training_rule: str | None = None) -> list[str]:
    """The config's generators (sorted) of a kind, made by a rule, running a local model, trained
    by the workflow, or trained by one training rule: each filter applies where given."""
    def keep(spec: dict) -> bool:
        entry = kind_of(spec)
        return ((kind is None or spec["kind"] == kind) and (rule is None or entry.rule == rule)
                and (runs_model is None or entry.runs_model == runs_model)
                and (trained is None or trains(spec) == trained)
                and (training_rule is None or (trains(spec) and entry.training_rule == training_rule)))
    return sorted(name for name, spec in config["generators"].items() if keep(spec))
