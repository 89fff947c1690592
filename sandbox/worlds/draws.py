"""Random draws for generating worlds, fast enough for a million records.

A world is defined by its draws: `Draws` makes exactly the draws of `random.Random`'s
`randint`, `randrange`, `choice` and `choices` (CPython 3.11: `_randbelow` by
rejection on `getrandbits`, `choices` by bisecting cumulative weights), so a world
generated with it is the one those methods generated. They are inlined here because
generation is draw-bound: `randint` goes through three Python frames per draw, a drawer
made by `ranged` or `picker` through one. Cyclic garbage collection is paused while a
world is built (`building()`): its records hold no reference cycles, and a collection
every few hundred allocations would rescan the growing world again and again.
"""

from __future__ import annotations

import gc
import random
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import accumulate
from typing import Generic, TypeVar

T = TypeVar("T")


class Draws:
    """Draws from one seeded stream (see the module docstring)."""

    __slots__ = ("rng", "random", "_bits")

    def __init__(self, seed: int | str) -> None:
        self.rng = random.Random(seed)
        self.random = self.rng.random  # a float in [0, 1)
        self._bits = self.rng.getrandbits

    def below(self, n: int) -> int:
        """An int in [0, n): `Random._randbelow(n)`."""
        bits = self._bits
        k = n.bit_length()
        r = bits(k)
        while r >= n:
            r = bits(k)
        return r

    def between(self, low: int, high: int) -> int:
        """An int in [low, high]: `Random.randint(low, high)`."""
        return low + self.below(high - low + 1)

    def pick(self, items: Sequence[T]) -> T:
        """One of `items`: `Random.choice(items)`."""
        return items[self.below(len(items))]

    def ranged(self, low: int, high: int) -> Callable[[], int]:
        """A drawer of ints in the fixed range [low, high] (as `between`, faster)."""
        n = high - low + 1
        k = n.bit_length()
        bits = self._bits

        def draw() -> int:
            r = bits(k)
            while r >= n:
                r = bits(k)
            return low + r

        return draw

    def picker(self, items: Sequence[T]) -> Callable[[], T]:
        """A drawer of one of `items` (as `pick`, faster)."""
        n = len(items)
        k = n.bit_length()
        bits = self._bits

        def draw() -> T:
            r = bits(k)
            while r >= n:
                r = bits(k)
            return items[r]

        return draw

    def weighted(self, table: Weighted[T]) -> T:
        """One of the table's items by weight: `Random.choices(items, weights)[0]`."""
        return table.items[bisect(table.cumulative, self.random() * table.total, 0,
                                  len(table.items) - 1)]


class Weighted(Generic[T]):
    """Items and their weights, accumulated once instead of on every draw."""

    __slots__ = ("items", "cumulative", "total")

    def __init__(self, weights: dict[T, float]) -> None:
        self.items = list(weights)
        self.cumulative = list(accumulate(weights.values()))
        self.total = self.cumulative[-1] + 0.0


@contextmanager
def building() -> Iterator[None]:
    """Cyclic garbage collection paused (if it was on) while a world is generated."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
