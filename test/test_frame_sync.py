"""Newest-frame slot and stamp pairing used between the node's callbacks and its worker."""

from __future__ import annotations

import threading
import time

from depth_ft_ros.frame.sync import LatestSlot, LatestSlots, StampBuffer


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
    from depth_ft_ros.frame.sync import nearest_index

    stamps = [100, 200, 300]
    assert nearest_index(stamps, 240, 50) == 1  # 200 is 40 away, 300 is 60
    assert nearest_index(stamps, 260, 50) == 2
    assert nearest_index(stamps, 50, 50) == 0 and nearest_index(stamps, 360, 50) is None
    assert nearest_index(stamps, 150, 10) is None and nearest_index([], 1, 10) is None


def test_latest_slots_keep_the_newest_per_camera_and_count_drops_per_camera() -> None:
    slots: LatestSlots[str] = LatestSlots()
    assert slots.put(0, "a1") is False
    assert slots.put(1, "b1") is False
    assert slots.put(0, "a2") is True  # a1 dropped, b1 not
    assert slots.take_batch(0.01) == {0: "a2", 1: "b1"}
    assert slots.take_batch(0.01) == {}


def test_a_ready_frame_waits_for_the_other_live_cameras_at_most_the_window() -> None:
    slots: LatestSlots[str] = LatestSlots(live_s=5.0)
    slots.put(0, "a0")
    slots.put(1, "b0")
    assert slots.take_batch(0.01, window_s=0.5) == {0: "a0", 1: "b0"}  # both live, both there: no wait
    # Camera 1's frame arrives 50 ms after camera 0's: they leave together, long before the window ends.
    threading.Timer(0.05, slots.put, args=(1, "b1")).start()
    slots.put(0, "a1")
    start = time.monotonic()
    assert slots.take_batch(1.0, window_s=0.5) == {0: "a1", 1: "b1"}
    assert time.monotonic() - start < 0.4
    # Camera 1 falls silent: camera 0's frame leaves when the window after its arrival ends.
    slots.put(0, "a2")
    start = time.monotonic()
    assert slots.take_batch(1.0, window_s=0.2) == {0: "a2"}
    assert 0.15 < time.monotonic() - start < 1.0
    # A frame already older than the window (the worker was busy) does not wait at all.
    slots.put(0, "a3")
    time.sleep(0.25)
    start = time.monotonic()
    assert slots.take_batch(1.0, window_s=0.2) == {0: "a3"}
    assert time.monotonic() - start < 0.15


def test_a_camera_silent_for_longer_than_live_s_is_not_waited_for() -> None:
    slots: LatestSlots[str] = LatestSlots(live_s=0.1)
    slots.put(1, "b0")
    assert slots.take_batch(0.01) == {1: "b0"}
    time.sleep(0.15)
    slots.put(0, "a0")
    start = time.monotonic()
    assert slots.take_batch(1.0, window_s=0.5) == {0: "a0"}
    assert time.monotonic() - start < 0.3
