"""The de-duplication state kept per device (ingest/dedupe.py) follows the device wherever its state
goes: through a failed batch's rollback, a counter reset, a rebuilt device index and a snapshot."""

from __future__ import annotations

from ingest.dedupe import WINDOW, SeqTracker

T = 1_800_000_000.0


def accept(tracker: SeqTracker, dev: int, seq: int, fp: int, *, dup: bool = False) -> bool:
    return tracker.accept(dev, seq, T + seq, fp, received=T + 10_000, redelivered=dup)


def test_a_redelivery_is_dropped_for_its_own_device_only() -> None:
    tracker = SeqTracker(3)
    assert accept(tracker, 1, 5, fp=111)
    assert accept(tracker, 2, 5, fp=222)
    assert not accept(tracker, 1, 5, fp=111, dup=True)
    assert not accept(tracker, 2, 5, fp=222, dup=True)
    # Device 0 never sent seq 5: its window is its own, however its neighbours' look.
    assert accept(tracker, 0, 5, fp=111)


def test_a_rolled_back_batch_leaves_neither_marks_nor_fingerprints() -> None:
    tracker = SeqTracker(2)
    assert accept(tracker, 0, 1, fp=7)
    tracker.begin()
    assert accept(tracker, 0, 2, fp=8)
    assert accept(tracker, 0, 1, fp=9)  # other content at seq 1: a reset, within the batch
    assert accept(tracker, 1, 1, fp=5)  # a device first heard from in the batch
    tracker.rollback()
    # As before the batch: seq 1 with its first content is the duplicate, seq 2 is new.
    assert not accept(tracker, 0, 1, fp=7, dup=True)
    assert accept(tracker, 0, 2, fp=8)
    assert accept(tracker, 1, 1, fp=6)  # device 1 is unknown again: any content is new


def test_after_a_reset_the_run_before_keeps_its_own_fingerprints() -> None:
    tracker = SeqTracker(1)
    for seq in range(1, 6):
        assert accept(tracker, 0, seq, fp=100 + seq)
    assert accept(tracker, 0, 1, fp=1)  # a reboot: counting from 1 again, other content
    assert accept(tracker, 0, 2, fp=2)
    assert not accept(tracker, 0, 4, fp=104, dup=True)  # from before the reboot: still recognised
    assert not accept(tracker, 0, 2, fp=2, dup=True)  # and the new run's own


def test_fingerprints_move_with_their_device_to_a_rebuilt_index() -> None:
    tracker = SeqTracker(3)
    for dev in range(3):
        for seq in range(1, WINDOW + 4):
            assert accept(tracker, dev, seq, fp=1000 * (dev + 1) + seq)
    moved = tracker.remapped([2, -1, 0, -1])  # old 2 is new 0, old 0 is new 2; two new devices
    assert not accept(moved, 0, WINDOW, fp=3000 + WINDOW, dup=True)
    assert not accept(moved, 2, WINDOW, fp=1000 + WINDOW, dup=True)
    assert accept(moved, 2, WINDOW - 1, fp=3000 + WINDOW - 1)  # device 2's content there differs
    assert accept(moved, 1, WINDOW, fp=3000 + WINDOW)  # new devices start empty
    assert accept(moved, 3, 5, fp=1)


def test_a_snapshot_restores_the_same_decisions_into_another_tracker() -> None:
    tracker = SeqTracker(4)
    for seq in range(10, 20):
        assert accept(tracker, 3, seq, fp=seq)
    assert accept(tracker, 3, 2, fp=2)  # a reset: the run before goes into the snapshot too
    fresh = SeqTracker(4)
    fresh.restore(list(tracker.snapshot()))
    assert not accept(fresh, 3, 15, fp=15, dup=True)
    assert not accept(fresh, 3, 2, fp=2, dup=True)
    assert accept(fresh, 3, 3, fp=3)


def test_the_rows_a_batch_stores_are_the_snapshot_of_its_changed_devices_by_id() -> None:
    """`changed_rows` (what each batch stores) is `snapshot()` named by device id: a device with
    one run, one after a counter reset (its run before packed too), and none for a device that
    was never seen; restored, the rows decide as the tracker they came from."""
    tracker = SeqTracker(4)
    ids = ["a", "b", "c", "d"]
    for seq in (1, 2, 3):
        assert accept(tracker, 0, seq, fp=10 + seq)
    assert accept(tracker, 2, 200, fp=5)
    assert accept(tracker, 2, 1, fp=6)  # far below the window: a reset, the run before is kept
    tracker.dirty.add(3)  # changed, yet never accepted anything: no state, no row
    rows = tracker.changed_rows(ids)
    assert sorted(rows) == sorted((ids[d], m, b, t, f) for d, m, b, t, f in tracker.snapshot())
    assert sorted(r[0] for r in rows) == ["a", "c"]
    assert len(dict((r[0], r[4]) for r in rows)["c"]) > 2 * WINDOW  # the run before, packed
    again = SeqTracker(4)
    again.restore([(ids.index(i), m, b, t, f) for i, m, b, t, f in rows])
    assert not accept(again, 2, 200, fp=5, dup=True)  # from the run before the reset
    assert not accept(again, 0, 3, fp=13, dup=True)
    assert accept(again, 0, 4, fp=14)
