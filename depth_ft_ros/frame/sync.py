"""Thread-safe hand-over between subscription callbacks (which must never block) and the worker.

- LatestSlot keeps only the newest frame: a frame replaced before the worker took it is dropped and counted.
- LatestSlots is the same per camera, and hands the worker the frames that are ready from several cameras
  within a batch window.
- StampBuffer keeps the last few messages of a side stream (camera_info, sparse points) and pairs them with a
  frame by stamp within a tolerance, waiting a bounded time for one that has not arrived yet.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A one-item mailbox: put() overwrites, take() waits for an item."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> bool:
        """Store `item`; return True when it replaced an item nobody took (the caller counts that drop)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> T | None:
        """The newest item, waiting up to timeout_s; None on timeout or after close()."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class LatestSlots(Generic[T]):
    """One newest-item slot per camera (key); take_batch() hands over what is ready from several of them.

    A camera counts as live while it put an item within live_s; take_batch waits, after the first item
    arrives, until every live camera has one or until `window_s` after that first item's arrival: a frame
    never waits longer than window_s for another camera's, and not at all when the worker was busy (the
    items are already older than the window)."""

    def __init__(self, live_s: float = 1.0) -> None:
        self._items: dict[int, tuple[float, T]] = {}  # key -> (put monotonic s, item)
        self._last_put_s: dict[int, float] = {}
        self._live_s = live_s
        self._cond = threading.Condition()
        self._closed = False

    def put(self, key: int, item: T) -> bool:
        """Store `item` for camera `key`; True when it replaced one nobody took (the caller counts that drop)."""
        now_s = time.monotonic()
        with self._cond:
            replaced = key in self._items
            self._items[key] = (now_s, item)
            self._last_put_s[key] = now_s
            self._cond.notify()
            return replaced

    def take_batch(self, timeout_s: float, window_s: float = 0.0) -> dict[int, T]:
        """The newest item of each camera that has one ({} on timeout or after close())."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout_s)
            if self._items and window_s > 0 and not self._closed:
                deadline_s = min(put_s for put_s, _ in self._items.values()) + window_s
                while not self._closed:
                    now_s = time.monotonic()
                    live = {k for k, put_s in self._last_put_s.items() if now_s - put_s <= self._live_s}
                    if live <= self._items.keys() or now_s >= deadline_s:
                        break
                    self._cond.wait(deadline_s - now_s)
            items = {key: item for key, (_, item) in sorted(self._items.items())}
            self._items.clear()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class StampBuffer(Generic[T]):
    """The last `maxlen` (stamp_ns, item) pairs of one stream, searchable by stamp."""

    def __init__(self, maxlen: int = 10) -> None:
        self._items: deque[tuple[int, T]] = deque(maxlen=maxlen)
        self._cond = threading.Condition()

    def add(self, stamp_ns: int, item: T) -> None:
        with self._cond:
            self._items.append((stamp_ns, item))
            self._cond.notify_all()

    def wait_nearest(self, stamp_ns: int, tolerance_ns: int, timeout_s: float) -> T | None:
        """The item whose stamp is closest to stamp_ns, if within tolerance_ns (newest wins ties), waiting up
        to timeout_s for a match to arrive."""
        with self._cond:
            match = self._nearest_locked(stamp_ns, tolerance_ns)
            if match is None and timeout_s > 0:
                self._cond.wait_for(lambda: self._nearest_locked(stamp_ns, tolerance_ns) is not None, timeout_s)
                match = self._nearest_locked(stamp_ns, tolerance_ns)
            return match

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def _nearest_locked(self, stamp_ns: int, tolerance_ns: int) -> T | None:
        best: T | None = None
        best_gap = tolerance_ns + 1
        for item_stamp_ns, item in self._items:
            gap = abs(item_stamp_ns - stamp_ns)
            if gap <= best_gap:
                best, best_gap = item, gap
        return best if best_gap <= tolerance_ns else None


def nearest_index(sorted_stamps_ns: list[int], stamp_ns: int, tolerance_ns: int) -> int | None:
    """Index of the stamp nearest to stamp_ns among sorted stamps, if within tolerance_ns; else None (bags)."""
    i = bisect.bisect_left(sorted_stamps_ns, stamp_ns)
    best = min((j for j in (i - 1, i) if 0 <= j < len(sorted_stamps_ns)),
               key=lambda j: abs(sorted_stamps_ns[j] - stamp_ns), default=None)
    if best is None or abs(sorted_stamps_ns[best] - stamp_ns) > tolerance_ns:
        return None
    return best
