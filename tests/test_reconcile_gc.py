"""bulk_loading and the collector: what a big block leaves is moved to the oldest generation, unscanned, and
stays collectable (a cycle made inside is freed by the next full collection)."""

from __future__ import annotations

import gc
import weakref

from controller.reconcile.loader import bulk_loading


class Node:
    me: object = None


def test_a_big_block_leaves_its_objects_old_and_collectable() -> None:
    gc.collect()
    with bulk_loading():
        kept = [[n] for n in range(150_000)]  # what a cold sync keeps: far more than a young generation holds
        cycle = Node()
        cycle.me = cycle
        gone = weakref.ref(cycle)
        del cycle
    assert gc.isenabled() and gc.get_freeze_count() == 0
    old = {id(o) for o in gc.get_objects(generation=2)}
    assert id(kept[0]) in old and id(kept[-1]) in old  # promoted: no young collection walks them again
    assert gone() is not None  # the cycle waits for a full collection ...
    gc.collect()
    assert gone() is None  # ... which frees it: nothing is kept from the collector for good
    assert gc.is_tracked(kept[0])


def test_it_leaves_frozen_objects_frozen() -> None:
    gc.collect()
    frozen = [[1]]
    gc.freeze()
    try:
        with bulk_loading():
            kept = [[n] for n in range(150_000)]
        # Not unfrozen by the block (someone froze them for a reason): a frozen object is in no generation.
        # (The freeze count itself moves: frozen objects of other code are freed as it runs.)
        assert gc.get_freeze_count() > 0
        assert not any(o is frozen for o in gc.get_objects())
        assert len(kept) == 150_000
    finally:
        gc.unfreeze()
