"""What the rules and the sampler keep between frames: hourly budgets, class shares, the random
pick and the recently kept frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

from edge_runtime.sampling.config import DuplicateConfig
from edge_runtime.sampling.rules import hamming, unit_vector

BUDGET_WINDOW = timedelta(hours=1)


class HourlyBudget:
    """At most `per_hour` frames kept in any one-hour window of capture time."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._spent: deque[datetime] = deque()

    def has_room(self, now: datetime) -> bool:
        start = now - BUDGET_WINDOW
        spent = self._spent
        while spent and spent[0] <= start:
            spent.popleft()
        return len(spent) < self.per_hour

    def spend(self, now: datetime) -> None:
        self._spent.append(now)


class ClassShares:
    """Detections counted per class so far on this device: what 'rare by share' is measured on."""

    def __init__(self, rare_names: frozenset[str], counting: bool) -> None:
        self._rare_names = rare_names
        self._counting = counting
        self._by_name: dict[str, int] = {}
        self.names: tuple[str, ...] = ()
        self.counts: list[int] = []
        self.rare: frozenset[int] = frozenset()  # indices of the classes named rare
        self.total = 0

    def bind(self, names: tuple[str, ...]) -> None:
        """Follow the model's class list; counts are kept by name across a model update."""
        if names is self.names or names == self.names:
            self.names = names
            return
        self._by_name.update(zip(self.names, self.counts, strict=True))
        self.names = names
        self.counts = [self._by_name.get(name, 0) for name in names]
        self.total = sum(self.counts)
        self.rare = frozenset(i for i, name in enumerate(names) if name in self._rare_names)

    def observe(self, classes: Sequence[int]) -> None:
        if self._counting:
            counts = self.counts
            for c in classes:
                counts[c] += 1
            self.total += len(classes)


class RandomPick:
    """Fires on a share of the frames it is asked about, like a coin flip per frame.

    It counts down a geometric gap between picks, so the generator is drawn once per pick instead
    of once per frame.
    """

    def __init__(self, share: float, rng: np.random.Generator) -> None:
        self._share = share
        self._rng = rng
        self._left = self._gap()

    def _gap(self) -> int:
        return int(self._rng.geometric(self._share))

    def __call__(self) -> bool:
        self._left -= 1
        if self._left:
            return False
        self._left = self._gap()
        return True


class RecentKept:
    """Hashes and unit embeddings of the last kept frames, to turn away their near-duplicates."""

    def __init__(self, config: DuplicateConfig) -> None:
        self._config = config
        self._hashes: deque[int] = deque(maxlen=config.recent)
        self._embeddings: deque[np.ndarray | None] = deque(maxlen=config.recent)

    def is_near_duplicate(self, phash: int, embedding: np.ndarray | None) -> bool:
        limit = self._config.hash_max_distance
        if any(hamming(phash, kept) <= limit for kept in self._hashes):
            return True
        max_distance = self._config.embedding_max_distance
        unit = None if max_distance is None else unit_vector(embedding)
        if max_distance is None or unit is None:
            return False
        return any(kept is not None and kept.shape == unit.shape
                   and 1.0 - float(kept @ unit) <= max_distance
                   for kept in self._embeddings)

    def remember(self, phash: int, embedding: np.ndarray | None) -> None:
        self._hashes.append(phash)
        compared = self._config.embedding_max_distance is not None
        self._embeddings.append(unit_vector(embedding) if compared else None)
