"""The passage cut of ``evaluation.truncation: passage`` (docs/protocol.md, section 8.5): a row
with only the first tokens of its passage (its dataset file's ``passage`` fields), and the search
for the most of them that lets the prompt fit."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .errors import EvaluationError

Row = dict[str, Any]


def _field(row: Row, path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value[part]
    return value


def _replaced(row: Row, path: str, value: Any) -> Row:
    """A copy of ``row`` with the field at the dotted ``path`` set to ``value``."""
    head, _, rest = path.partition(".")
    return {**row, head: _replaced(row[head], rest, value) if rest else value}


def passage_texts(row: Row, fields: Sequence[str], where: str) -> list[str]:
    """The passage's pieces in order: each str field, each item of a list[str] field."""
    texts: list[str] = []
    for path in fields:
        try:
            value = _field(row, path)
        except (KeyError, TypeError):
            raise EvaluationError(f"{where}: the test row has no passage field {path!r} "
                                  f"(its fields: {sorted(row)})") from None
        texts += [value] if isinstance(value, str) else list(value)
    return texts


def cut_passage(row: Row, fields: Sequence[str], texts: Sequence[str], ends: Sequence[Sequence[int]],
                keep: int) -> Row:
    """``row`` with only the first ``keep`` tokens of its passage (``texts``, ``passage_texts``'s
    pieces; ``ends[i][j]``: where token j of piece i ends in it): whole pieces while the tokens
    last, the piece where they run out cut after its last kept token, the pieces after it emptied
    (a list field loses them)."""
    kept: list[str | None] = []  # None: a piece left with no token
    for text, piece_ends in zip(texts, ends):
        n = min(keep, len(piece_ends))
        kept.append(text if n == len(piece_ends) else text[:piece_ends[n - 1]] if n else None)
        keep -= n
    out, start = row, 0
    for path in fields:
        value = _field(row, path)
        if isinstance(value, str):
            out, start = _replaced(out, path, kept[start] or ""), start + 1
        else:
            items = kept[start:start + len(value)]
            out, start = _replaced(out, path, [item for item in items if item is not None]), start + len(value)
    return out


def largest_fitting(fits: Callable[[int], bool], guess: int, n: int) -> int:
    """The largest k in [0, n) with ``fits(k)``, or -1 if not even ``fits(0)``; ``fits`` holds up to
    some k and not after it, and ``fits(n)`` is taken to be false. The probes start at ``guess``
    and step away from it in doubling steps until the answer is bracketed, then bisect: about
    2 log2 |answer - guess| + 2 calls."""
    low, high = -1, n  # fits(low) (or low == -1), not fits(high)
    probe, step = min(max(guess, 0), n - 1), 1
    while high - low > 1:
        if fits(probe):
            low, probe = probe, probe + step
        else:
            high, probe = probe, probe - step
        step *= 2
        if not low < probe < high:
            probe = (low + high) // 2
    return low
