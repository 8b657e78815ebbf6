"""Which comparison a rater sees next.

Balanced mode: among the comparisons this rater has not seen, take the one served least often,
then the one whose system pair was served least often, then one on a prompt the rater has not
seen yet, then the least-served prompt; the remaining ties are broken at random. Served counts
(not vote counts) are balanced, so raters who leave midway do not skew coverage for long.

Adaptive mode (active learning in the spirit of Chatbot Arena's sampling): pick the system pair
whose win probability is most uncertain - largest variance of the Beta(wins+1, losses+1)
posterior, ties as half - then the best comparison of that pair by the balanced order.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class Comparison:
    id: int  # comparisons.id
    item_id: int  # items.id
    pair: tuple[int, int]  # (smaller system id, larger system id)
    is_gold: bool  # clean video against its corrupted copy
    a_is_low: bool = True  # system_a is pair[0] (orientation of stored votes)


@dataclass(kw_only=True)
class Coverage:
    """Served counts and vote tallies of one study (in memory, rebuilt from the database)."""

    served: Counter = field(default_factory=Counter)  # comparison id -> times served
    pair_served: Counter = field(default_factory=Counter)  # system pair -> times served
    item_served: Counter = field(default_factory=Counter)  # item id -> times served
    pair_score: Counter = field(default_factory=Counter)  # system pair -> score of its first system
    pair_votes: Counter = field(default_factory=Counter)  # system pair -> decided votes

    def add_served(self, comp: Comparison) -> None:
        self.served[comp.id] += 1
        self.pair_served[comp.pair] += 1
        self.item_served[comp.item_id] += 1

    def add_vote(self, comp: Comparison, score_low: float) -> None:
        """score_low: 1 if the smaller system id won, 0.5 for a tie, 0 if it lost."""
        self.pair_score[comp.pair] += score_low
        self.pair_votes[comp.pair] += 1


def _uncertainty(cov: Coverage, pair: tuple[int, int]) -> float:
    wins = cov.pair_score[pair]
    n = cov.pair_votes[pair]
    a, b = wins + 1.0, n - wins + 1.0
    return a * b / ((a + b) ** 2 * (a + b + 1.0))  # variance of Beta(a, b)


def choose(
    comparisons: list[Comparison],
    cov: Coverage,
    seen_comparisons: set[int],
    seen_items: set[int],
    rng: random.Random,
    gold: bool = False,
    adaptive: bool = False,
) -> Comparison | None:
    """Next comparison for one rater, or None when every eligible one has been seen."""
    pool = [c for c in comparisons if c.is_gold == gold and c.id not in seen_comparisons]
    if not pool:
        return None
    if adaptive and not gold:
        scores = [_uncertainty(cov, c.pair) for c in pool]
        best = max(scores)
        pool = [c for c, u in zip(pool, scores) if u >= best - 1e-12]
    served, pair_served, item_served = cov.served, cov.pair_served, cov.item_served
    keys = [(served[c.id], pair_served[c.pair], c.item_id in seen_items, item_served[c.item_id]) for c in pool]
    lowest = min(keys)
    return rng.choice([c for c, k in zip(pool, keys) if k == lowest])
