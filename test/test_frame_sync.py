"""Newest-frame slot and stamp pairing used between the node's callbacks and its worker."""

from __future__ import annotations

import threading
import time

from depth_ft_ros.core.frame_sync import LatestSlot, StampBuffer


def test_latest_slot_keeps_newest_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 dropped
    assert slot.put(3) is True  # 2 dropped
    assert slot.take(0.01) == 3
    assert slot.take(0.01) is None
    assert slot.put(4) is False  # taken items are not drops


def test_latest_slot_take_wakes_on_put() -> None:
    slot: LatestSlot[str] = LatestSlot()
    threading.Timer(0.05, slot.put, args=("frame",)).start()
    start = time.monotonic()
    assert slot.take(5.0) == "frame"
    assert time.monotonic() - start < 2.0


def test_latest_slot_close_releases_waiter() -> None:
    slot: LatestSlot[str] = LatestSlot()
    threading.Timer(0.05, slot.close).start()
    assert slot.take(5.0) is None


def test_stamp_buffer_pairs_nearest_within_tolerance() -> None:
    buffer: StampBuffer[str] = StampBuffer(maxlen=3)
    for stamp_ns, item in [(100, "a"), (200, "b"), (300, "c"), (400, "d")]:
        buffer.add(stamp_ns, item)
    assert buffer.wait_nearest(290, tolerance_ns=20, timeout_s=0.0) == "c"
    assert buffer.wait_nearest(250, tolerance_ns=10, timeout_s=0.0) is None
    assert buffer.wait_nearest(100, tolerance_ns=10, timeout_s=0.0) is None  # evicted: maxlen 3
    assert buffer.wait_nearest(350, tolerance_ns=50, timeout_s=0.0) == "d"  # a tie: the newer wins


def test_stamp_buffer_waits_for_late_message() -> None:
    buffer: StampBuffer[str] = StampBuffer()
    threading.Timer(0.05, buffer.add, args=(1_000, "late")).start()
    assert buffer.wait_nearest(1_000, tolerance_ns=0, timeout_s=5.0) == "late"
    assert buffer.wait_nearest(5_000, tolerance_ns=0, timeout_s=0.05) is None


def test_nearest_index_in_sorted_stamps() -> None:
    from depth_ft_ros.core.frame_sync import nearest_index

    stamps = [100, 200, 300]
    assert nearest_index(stamps, 240, 50) == 1  # 200 is 40 away, 300 is 60
    assert nearest_index(stamps, 260, 50) == 2
    assert nearest_index(stamps, 50, 50) == 0 and nearest_index(stamps, 360, 50) is None
    assert nearest_index(stamps, 150, 10) is None and nearest_index([], 1, 10) is None
