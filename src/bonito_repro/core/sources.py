"""The grammar of source names: what a target is adapted on (``run.sources`` and the
``{source}`` of ``adapters/{target}/{source}/{dataset}/`` and ``eval/...``).

- ``zero_shot``: no further adaptation (evaluations only);
- ``tapt``: next-word prediction on the dataset's unannotated text;
- a generator's name: its synthetic tasks;
- ``{generator}.n{N}`` (a size point of the ablations): a seeded subset of N of its tasks;
- ``tapt+{generator}`` (a chain): TAPT, then the generator's tasks from that adapter.

The names ``zero_shot`` and ``tapt`` and names ending in ``.nN`` are reserved: no generator may
take one.
"""
from __future__ import annotations

import re

ZERO_SHOT = "zero_shot"
TAPT = "tapt"
RESERVED = (ZERO_SHOT, TAPT)
SIZE_SOURCE = re.compile(r"^(?P<generator>.+)\.n(?P<size>[1-9][0-9]*)$")
CHAIN_PREFIX = TAPT + "+"


def size_source(generator: str, size: int) -> str:
    return f"{generator}.n{size}"


def chain_source(generator: str) -> str:
    return CHAIN_PREFIX + generator


def parse_size_source(source: str) -> tuple[str, int] | None:
    """(generator, N) of a size point's source name, or None for any other source."""
    match = SIZE_SOURCE.match(source)
    return (match["generator"], int(match["size"])) if match else None


def chained_generator(source: str) -> str | None:
    return source[len(CHAIN_PREFIX):] if source.startswith(CHAIN_PREFIX) else None


def generator_of(source: str) -> str | None:
    """The generator whose tasks a source trains on (a size point's or a chain's), or None for
    ``tapt`` and ``zero_shot``."""
    if source in RESERVED:
        return None
    size = parse_size_source(source)
    return size[0] if size else chained_generator(source) or source


def generator_name_problems(names) -> list[str]:
    """Generator names that the grammar above reserves, each naming its key."""
    problems = [f"generators.{name}: names ending in .nN are size points of the ablations"
                for name in names if parse_size_source(name)]
    reserved = sorted(set(RESERVED) & set(names))
    if reserved:
        problems.append(f"generators: {reserved} are reserved source names")
    return problems
