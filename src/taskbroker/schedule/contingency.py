"""N-1 and N-2 contingency analysis, fast and exact.

Definitions (DESIGN.md): faculty f is an N-1 *vulnerability* when removing {f} makes some
block fail; a pair {a, b} is *fatal* when removing both makes a block fail that fails under
neither {a} nor {b}.  Blocks failing with nobody removed are *unstaffed* and count against
no one.

How it is fast.  Staffing a block is a bipartite matching of free faculty to demand units,
so by Hall's theorem (with a slot of deficit d needing d distinct faculty) a block holds
iff for every set T of its slots the *slack*

    sigma(T) = |N(T)| - D(T)  >= 0,

where N(T) are the free faculty qualified for some service of T and D(T) the summed
deficits.  A block has at most one slot per service, so T ranges over few subsets.  Removing
a person changes a block only when the person is present in it (assigned or free); removing
person x lowers sigma(T) by Delta_x(T), which is 1 when x is free and in N(T), or when x is
assigned to a slot of T without surplus (its deficit grows), else 0.  Hence, per block,
computed once from its baseline:

* only slots with surplus <= 1 matter (a slot with surplus >= 2 keeps deficit 0 after two
  losses and only enlarges N(T), so a violated T stays violated without it), and of those
  only slots with at most D + 1 free qualified faculty, D the block's total deficit (any T
  holding a slot with more has sigma(T) >= 2, so it is never violated, tight or near-tight);
* **N-1**: x breaks the block iff some *tight* T (sigma = 0) has Delta_x(T) = 1, i.e. x is
  in Z(T) = N(T) + the assigned faculty of T's slots without surplus;
* **N-2**: removing two people lowers any sigma(T) by at most 2, so a pair can only break a
  T with sigma(T) <= 1.  With neither person critical alone, the pair breaks the block iff
  (i) both are in Z(T) for some T with sigma(T) = 1, or (ii) both are assigned to the same
  slot with surplus exactly 1 (neither loss alone opens a deficit, both open one) that lies
  in a tight T.  So only pairs inside the Z-sets of near-tight subsets, or sharing a
  surplus-1 slot in a tight subset, are ever enumerated; every other pair of people
  sharing the block is provably harmless there.

The whole analysis is one pass over the blocks with O(2^k) integer operations per block
(k = slots with surplus <= 1 and at most D + 1 free backups) plus the fatal pairs it
reports.  Blocks with more than
:data:`MAX_HALL_SLOTS` such slots fall back to explicit matchings (correct, slower).
The brute-force reference in :mod:`taskbroker.schedule.oracle` re-solves every block from
scratch for every removal; the tests compare the two on random programs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import combinations

from taskbroker.schedule.staffing import Block, StaffingModel, bits, match_units

__all__ = ["MAX_HALL_SLOTS", "BlockVerdict", "ContingencyResult", "analyse", "analyse_block"]

MAX_HALL_SLOTS = 14
EXAMPLES_PER_CASE = 5


@dataclass
class BlockVerdict:
    """What one block says: whether it holds, who breaks it alone, which pairs break it.

    ``critical`` maps a faculty index to the services of the bottleneck it breaks; ``pairs``
    maps (a, b) with a < b to the services of the bottleneck the pair breaks;
    ``failing_services`` is set for an unstaffed block.
    """

    holds: bool
    critical: dict[int, tuple[str, ...]] = field(default_factory=dict)
    pairs: dict[tuple[int, int], tuple[str, ...]] = field(default_factory=dict)
    failing_services: tuple[str, ...] = ()


def analyse_block(block: Block, qual: Mapping[str, int], *, pairs: bool = True) -> BlockVerdict:
    """N-1 / N-2 verdict of one block from its baseline (see the module docstring)."""
    free = block.free
    candidates = [s for s in block.slots if s.surplus <= 1]
    # A subset T can only have sigma(T) <= 1 when |N(T)| <= D(T) + 1 <= D + 1 (D: the block's
    # total deficit), and N(T) contains the free qualified faculty of each of its slots: a
    # slot with more than D + 1 of them is in no violated, tight or near-tight subset and is
    # left out of the enumeration (exact; in a fully staffed block only the slots with at
    # most one free backup remain, so 2^k stays small however many services there are).
    limit = sum(s.deficit for s in candidates) + 1
    rel = [s for s in candidates
           if (qual.get(s.service, 0) & free).bit_count() <= limit]
    if not rel:
        return BlockVerdict(True)
    k = len(rel)
    if k > MAX_HALL_SLOTS:
        return _analyse_by_matching(block, qual, pairs=pairs)
    slot_n = [qual.get(s.service, 0) & free for s in rel]
    slot_d = [s.deficit for s in rel]
    slot_z = [slot_n[i] | (rel[i].assigned if rel[i].surplus <= 0 else 0) for i in range(k)]
    size = 1 << k
    n_of = [0] * size
    d_of = [0] * size
    z_of = [0] * size
    tight: list[int] = []
    near: list[int] = []
    violated: list[int] = []
    for m in range(1, size):
        low = m & -m
        i = low.bit_length() - 1
        prev = m ^ low
        n_of[m] = n_of[prev] | slot_n[i]
        d_of[m] = d_of[prev] + slot_d[i]
        z_of[m] = z_of[prev] | slot_z[i]
        sigma = n_of[m].bit_count() - d_of[m]
        if sigma < 0:
            violated.append(m)
        elif sigma == 0:
            tight.append(m)
        elif sigma == 1:
            near.append(m)

    def services(m: int) -> tuple[str, ...]:
        return tuple(rel[i].service for i in bits(m))

    if violated:
        return BlockVerdict(False, failing_services=services(min(violated, key=int.bit_count)))
    verdict = BlockVerdict(True)
    tight.sort(key=int.bit_count)
    crit = 0
    for m in tight:
        new = z_of[m] & ~crit
        if new:
            names = services(m)
            for f in bits(new):
                verdict.critical[f] = names
            crit |= new
    if not pairs:
        return verdict
    near.sort(key=int.bit_count)
    seen_masks: set[int] = set()
    for m in near:
        group = z_of[m] & ~crit
        if group.bit_count() < 2 or group in seen_masks:
            continue
        seen_masks.add(group)
        names = services(m)
        for a, b in combinations(bits(group), 2):
            verdict.pairs.setdefault((a, b), names)
    for m in tight:
        for i in bits(m):
            if rel[i].surplus == 1:
                names = services(m)
                for a, b in combinations(bits(rel[i].assigned), 2):
                    verdict.pairs.setdefault((a, b), names)
    return verdict


def _short_services(block: Block, qual: Mapping[str, int], removed: int) -> tuple[str, ...]:
    """Services left short by a maximum matching after removing ``removed`` (empty: holds)."""
    order = []
    for s in block.slots:
        order += [s.service] * max(0, s.requirement - (s.assigned & ~removed).bit_count())
    chosen = match_units([qual.get(sid, 0) for sid in order], block.free & ~removed)
    return tuple(sorted({sid for sid, f in zip(order, chosen, strict=True) if f < 0}))


def _analyse_by_matching(block: Block, qual: Mapping[str, int], *, pairs: bool) -> BlockVerdict:
    """Explicit-matching verdict for blocks with too many slots for subset enumeration."""
    short = _short_services(block, qual, 0)
    if short:
        return BlockVerdict(False, failing_services=short)
    verdict = BlockVerdict(True)
    safe = []
    for f in bits(block.present):
        short = _short_services(block, qual, 1 << f)
        if short:
            verdict.critical[f] = short
        else:
            safe.append(f)
    if pairs:
        for a, b in combinations(safe, 2):
            short = _short_services(block, qual, (1 << a) | (1 << b))
            if short:
                verdict.pairs[(a, b)] = short
    return verdict


@dataclass
class ContingencyResult:
    """N-1 / N-2 over a model's blocks.

    Attributes:
        n1: faculty id -> list of (block label, services) it breaks alone.
        n2_counts: (a, b) faculty ids -> number of blocks the pair newly breaks.
        n2_examples: (a, b) -> up to :data:`EXAMPLES_PER_CASE` (block label, services).
        unstaffed: (block label, services) of blocks failing with nobody removed.
        blocks: number of blocks analysed.
    """

    n1: dict[str, list[tuple[str, tuple[str, ...]]]] = field(default_factory=dict)
    n2_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    n2_examples: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = field(
        default_factory=dict
    )
    unstaffed: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    blocks: int = 0

    @property
    def n1_pass(self) -> bool:
        """No single faculty loss breaks a block."""
        return not self.n1

    @property
    def n2_pass(self) -> bool:
        """No fatal pair."""
        return not self.n2_counts


def analyse(
    model: StaffingModel,
    *,
    n2: bool = True,
    on_block: Callable[[int, int], None] | None = None,
) -> ContingencyResult:
    """Run N-1 (and N-2 unless ``n2`` is False) over every block of ``model``.

    ``on_block(done, total)`` is called after each block (report progress, or raise to stop).
    """
    result = ContingencyResult(blocks=len(model.blocks))
    fac = model.faculty
    qual = dict(model.qual)
    total = len(model.blocks)
    for done, block in enumerate(model.blocks, 1):
        verdict = analyse_block(block, qual, pairs=n2)
        if not verdict.holds:
            result.unstaffed.append((block.label, verdict.failing_services))
        for f, names in verdict.critical.items():
            result.n1.setdefault(fac[f], []).append((block.label, names))
        for (a, b), names in verdict.pairs.items():
            key = (fac[a], fac[b])
            result.n2_counts[key] += 1
            examples = result.n2_examples.setdefault(key, [])
            if len(examples) < EXAMPLES_PER_CASE:
                examples.append((block.label, names))
        if on_block is not None:
            on_block(done, total)
    return result
