"""Which comparison a rater sees next.

Balanced mode: among the comparisons this rater has not seen, take the one served least often,
then the one whose system pair was served least often, then one on a prompt the rater has not
seen yet, then the least-served prompt; the remaining ties are broken at random. Served counts
(not vote counts) are balanced, so raters who leave midway do not skew coverage for long.
Coverage keeps the comparisons bucketed by served count and system pair, so a pick looks at the
lowest bucket's few pairs instead of keying every comparison of the study (profiled: keying all
560 comparisons of the load benchmark's study was 15% of a vote's server CPU).

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
    # (gold?, served count) -> system pair -> {comparison id: comparison}; built by `levels`
    _levels: dict | None = field(default=None, init=False, repr=False)
    # the same comparisons by prompt: (gold?, served count) -> system pair -> item id -> {comparison id: comparison}
    _by_item: dict | None = field(default=None, init=False, repr=False)
    _indexed: list | None = field(default=None, init=False, repr=False)  # the comparison list `_levels` holds

    def add_served(self, comp: Comparison) -> None:
        n = self.served[comp.id]
        self.served[comp.id] = n + 1
        self.pair_served[comp.pair] += 1
        self.item_served[comp.item_id] += 1
        if self._levels is not None:
            self._move(comp, n, n + 1)

    def remove_served(self, comp: Comparison) -> None:
        """Take back one `add_served` (a pick reserved for a write that failed)."""
        n = self.served[comp.id]
        if n <= 0:
            return
        self.served[comp.id] = n - 1
        self.pair_served[comp.pair] -= 1
        self.item_served[comp.item_id] -= 1
        if self._levels is not None:
            self._move(comp, n, n - 1)

    def _move(self, comp: Comparison, old: int, new: int) -> None:
        _unfile(self._levels, (comp.is_gold, old), comp.pair, comp.id)
        _unfile(self._by_item, (comp.is_gold, old), comp.pair, comp.item_id, comp.id)
        self._file(comp, new)

    def _file(self, comp: Comparison, served: int) -> None:
        level = (comp.is_gold, served)
        self._levels.setdefault(level, {}).setdefault(comp.pair, {})[comp.id] = comp
        self._by_item.setdefault(level, {}).setdefault(comp.pair, {}).setdefault(comp.item_id, {})[comp.id] = comp

    def levels(self, comparisons: list[Comparison]) -> dict:
        """The served-count buckets of `comparisons` (indexed on first use, then kept up to date).

        Kept for one list object: pass the same list every time (a different list re-indexes).
        """
        if self._indexed is not comparisons:
            self._levels, self._by_item, self._indexed = {}, {}, comparisons
            for comp in comparisons:
                self._file(comp, self.served[comp.id])
        return self._levels

    def by_item(self, comparisons: list[Comparison]) -> dict:
        """`levels` with each pair's comparisons grouped by prompt (item id)."""
        self.levels(comparisons)
        return self._by_item

    def add_vote(self, comp: Comparison, score_low: float) -> None:
        """score_low: 1 if the smaller system id won, 0.5 for a tie, 0 if it lost."""
        self.pair_score[comp.pair] += score_low
        self.pair_votes[comp.pair] += 1


def _unfile(index: dict, *path) -> None:  # noqa: ANN002 - keys down to the entry to delete
    """Delete index[k0][k1]...[kn], and every dict that this leaves empty."""
    if len(path) > 1:
        _unfile(index[path[0]], *path[1:])
        if index[path[0]]:
            return
    del index[path[0]]


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
    if adaptive and not gold:
        pool = [c for c in comparisons if not c.is_gold and c.id not in seen_comparisons]
        if not pool:
            return None
        scores = [_uncertainty(cov, c.pair) for c in pool]
        best = max(scores)
        pool = [c for c, u in zip(pool, scores) if u >= best - 1e-12]
        keys = [(cov.served[c.id], *_minor_key(cov, c, seen_items)) for c in pool]
        lowest = min(keys)
        return rng.choice([c for c, k in zip(pool, keys) if k == lowest])
    return _balanced(cov, cov.levels(comparisons), cov.by_item(comparisons), seen_comparisons, seen_items, rng, gold)


def _minor_key(cov: Coverage, comp: Comparison, seen_items: set[int]) -> tuple:
    """The balanced order after the served count: pair served, prompt already seen, prompt served."""
    return cov.pair_served[comp.pair], comp.item_id in seen_items, cov.item_served[comp.item_id]


def _balanced(cov: Coverage, levels: dict, by_item: dict, seen: set[int], seen_items: set[int], rng: random.Random,
              gold: bool) -> Comparison | None:
    """The lowest (served, pair served, prompt seen, prompt served) unseen comparison, ties at random.

    The same order as keying every comparison, found level by level: the first served-count level
    with an unseen comparison holds the answer; in it, the least-served pairs with an unseen
    comparison; among theirs, prompts are taken in their order (the last two keys depend on the
    prompt alone), so only the comparisons of the first prompts that have an unseen one are looked
    at. Keying each comparison of those pairs instead cost ~110 us a pick in the load benchmark's
    study (560 comparisons), 10% of a vote's server CPU.
    """
    for _, served in sorted(key for key in levels if key[0] == gold):
        pairs: list[tuple[int, int]] = []
        least = None
        for pair, group in levels[(gold, served)].items():
            n = cov.pair_served[pair]
            if least is not None and n > least:
                continue
            if not group.keys() <= seen:  # an unseen comparison (a subset test in C: most are unseen)
                if least is None or n < least:
                    pairs, least = [], n
                pairs.append(pair)
        if not pairs:
            continue
        prompts = [by_item[(gold, served)][pair] for pair in pairs]  # item id -> {comparison id: comparison}
        order: dict[tuple, list[int]] = {}
        for item in set().union(*prompts):  # a study's few prompts, not its many comparisons
            order.setdefault((item in seen_items, cov.item_served[item]), []).append(item)
        for key in sorted(order):
            pool = [comp for item in order[key] for group in prompts for cid, comp in group.get(item, {}).items()
                    if cid not in seen]
            if pool:
                return rng.choice(pool)
    return None
