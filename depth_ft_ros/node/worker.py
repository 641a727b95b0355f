"""The node's worker thread: one per activation, with its own stop event and its own newest-frame slots (one
per camera; the frames ready from several cameras within the batch window are handled together).

A worker that outlives deactivate (a frame still in the network) keeps running only until that frame is done:
its stop event is its own, so a later activation cannot revive it, and the node does not start a second
worker while it is alive (DepthFtNode.on_activate). What the frame reads (streams, models) is released only after
the thread has ended (DepthFtNode._release waits for it).

An exception escaping handle() or between_frames() is a bug, not the input's fault: it goes to failed(exc, batch)
(the node logs it once with its traceback, counts it, and /diagnostics turns ERROR) and the worker takes the next
frame; it never ends the thread.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from depth_ft_ros.frame.sync import LatestSlots

T = TypeVar("T")


class FrameWorker(Generic[T]):
    """Runs handle({camera: item}) for the newest items put(), and between_frames() before each batch and while
    idle.

    between_frames is where the node applies parameter changes: never while a frame runs. An item still in a
    slot when the worker stops goes to discard(camera, item) (the node counts it). batch_window_s: how long
    the first ready frame waits for the other cameras' (LatestSlots.take_batch)."""

    def __init__(self, handle: Callable[[dict[int, T]], None], between_frames: Callable[[], None],
                 discard: Callable[[int, T], None], failed: Callable[[Exception, dict[int, T]], None],
                 name: str = "depth_ft_worker", idle_poll_s: float = 0.1, batch_window_s: float = 0.0) -> None:
        self._handle = handle
        self._between_frames = between_frames
        self._discard = discard
        self._failed = failed
        self._idle_poll_s = idle_poll_s
        self.batch_window_s = batch_window_s
        self._slot: LatestSlots[T] = LatestSlots()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.busy_since_s: float | None = None  # monotonic start of the frame in hand, None while idle

    def start(self) -> None:
        self._thread.start()

    def put(self, camera: int, item: T) -> bool:
        """Hand a camera's frame over; True when it replaced one the worker had not taken (the caller counts it)."""
        return self._slot.put(camera, item)

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
            self._guarded(self._between_frames, {})
            batch = self._slot.take_batch(self._idle_poll_s, self.batch_window_s)
            if not batch:
                continue
            if self._stop.is_set():
                for camera, item in batch.items():
                    self._discard(camera, item)
                break
            # A change made while this worker waited applies to these frames as a whole.
            self._guarded(self._between_frames, {})
            self.busy_since_s = time.monotonic()
            try:
                self._guarded(functools.partial(self._handle, batch), batch)
            finally:
                self.busy_since_s = None
        for camera, item in self._slot.take_batch(0.0).items():
            self._discard(camera, item)

    def _guarded(self, step: Callable[[], None], batch: dict[int, T]) -> None:
        try:
            step()
        except Exception as exc:  # a bug: reported, and the worker goes on with the next frame
            try:
                self._failed(exc, batch)
            except Exception as report_exc:  # the report itself failed: say so where it cannot fail, go on
                print(f"depth_ft_worker: {exc!r}; reporting it failed: {report_exc!r}", file=sys.stderr)
