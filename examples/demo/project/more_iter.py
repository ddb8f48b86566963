"""Small iterator helpers (the demo project astra-run fixes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def interleave_evenly(iterables: Iterable[Iterable[T]]) -> Iterator[T]:
    """Yield the items of several iterables, spreading each one's items evenly.

    >>> list(interleave_evenly([[1, 2, 3, 4], ["a", "b"]]))
    [1, 'a', 2, 3, 'b', 4]
    """
    lists = [list(it) for it in iterables]
    # On ties, items of lists shorter than the average go first.
    mean = sum(len(items) for items in lists) / len(lists)
    keyed = []
    for index, items in enumerate(lists):
        for position, item in enumerate(items):
            keyed.append(((position + 0.5) / len(items), len(items) >= mean, index, item))
    keyed.sort(key=lambda k: k[:3])
    return iter([k[3] for k in keyed])
