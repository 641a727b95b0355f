"""The node's worker thread: one per activation, with its own stop event and its own newest-frame slot.

A worker that outlives deactivate (a frame still in the network) keeps running only until that frame is done:
its stop event is its own, so a later activation cannot revive it, and the node does not start a second
worker while it is alive (DepthFtNode.on_activate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from depth_ft_ros.core.frame_sync import LatestSlot

T = TypeVar("T")


class FrameWorker(Generic[T]):
    """Runs handle(item) for the newest item put(), and between_frames() before each frame and while idle.

    between_frames is where the node applies parameter changes: never while a frame runs. An item still in the
    slot when the worker stops goes to discard() (the node counts it)."""

    def __init__(self, handle: Callable[[T], None], between_frames: Callable[[], None],
                 discard: Callable[[T], None], name: str = "depth_ft_worker", idle_poll_s: float = 0.1) -> None:
        self._handle = handle
        self._between_frames = between_frames
        self._discard = discard
        self._idle_poll_s = idle_poll_s
        self._slot: LatestSlot[T] = LatestSlot()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.busy_since_s: float | None = None  # monotonic start of the frame in hand, None while idle

    def start(self) -> None:
        self._thread.start()

    def put(self, item: T) -> bool:
        """Hand a frame over; True when it replaced one the worker had not taken (the caller counts it)."""
        return self._slot.put(item)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask the worker to finish: it ends after the frame in hand, if any."""
        self._stop.set()
        self._slot.close()

    def join(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for the thread to end; True when it has ended (or never started)."""
        if self._thread.ident is not None:
            self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._between_frames()
            item = self._slot.take(timeout_s=self._idle_poll_s)
            if item is None:
                continue
            if self._stop.is_set():
                self._discard(item)
                break
            self._between_frames()  # a change made while this worker waited applies to this frame as a whole
            self.busy_since_s = time.monotonic()
            try:
                self._handle(item)
            finally:
                self.busy_since_s = None
        leftover = self._slot.take(timeout_s=0.0)
        if leftover is not None:
            self._discard(leftover)
