"""The license identifiers the Hugging Face Hub knows (data/hub_licenses.tsv, with its source and
date): a card with any other ``license:`` is refused by the Hub's metadata check, so a dataset
file, the corpus command and the cards accept only these (``other`` stands for the rest)."""
from __future__ import annotations

from functools import cache

from . import PACKAGE_DATA

HUB_LICENSES = PACKAGE_DATA / "hub_licenses.tsv"


@cache
def hub_licenses() -> dict[str, str]:
    """Identifier -> full name, in the Hub's order."""
    rows = (line.split("\t") for line in HUB_LICENSES.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#"))
    return {identifier: name for identifier, name in rows}


def license_problem(value: str) -> str | None:
    """Why ``value`` is not a Hub license identifier, or None when it is one."""
    if value in hub_licenses():
        return None
    close = [i for i in hub_licenses() if value.lower() in i or i in value.lower()][:5]
    hint = f" (close: {close})" if close else ""
    return (f"license {value!r} is not an identifier the Hub knows{hint}; use one of data/hub_licenses.tsv "
            "(e.g. cc-by-4.0, apache-2.0), or `other`")
