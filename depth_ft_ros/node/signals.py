"""SIGINT and SIGTERM for the node's process, as process managers send them.

ros2 launch sends SIGINT, then SIGTERM after its sigterm_timeout (5 s), then SIGKILL; systemd and docker send
SIGTERM, then SIGKILL after their own timeout. rclpy's own handlers would shut the ROS context down at once, under
a frame still being published by the worker (a traceback in the log). Here rclpy installs none
(SignalHandlerOptions.NO) and the process handles them itself:

- the first signal asks the node to stop: the main loop leaves its spin within SPIN_POLL_S, the worker finishes the
  frame in hand (it still publishes it), then the node releases everything and the process exits 0;
- a signal while the models are still loading interrupts the loading (KeyboardInterrupt in the main thread, caught
  by main()); one before that (the imports take seconds) is noted, and main() then exits 0 without starting. The
  process's entry (node/entry.py: the `depth_ft_node` script and `python -m depth_ft_ros.node.entry`) installs
  the handlers before importing the node.
- a second signal while a frame is still in hand (the manager's patience is running out) leaves at once, exit 0,
  without waiting for that frame.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

SPIN_POLL_S = 0.1  # longest wait in the executor: how soon a signal is seen by the main loop
HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Installs Python handlers for SIGINT and SIGTERM (main thread only) and records what arrived."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.received: list[str] = []
        self.spinning = False
        self.interruptible = False  # True while the models load: a signal interrupts the loading
        self.releasing = False  # True while the node waits for the frame in hand and releases: a 2nd signal leaves
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignals:
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if self.requested.is_set() and self.releasing:
            print(f"depth_ft_node: {name} again while the last frame finishes: leaving now", file=sys.stderr,
                  flush=True)
            exit_now(0)
        self.requested.set()
        if self.interruptible and not self.spinning and not self.releasing:
            raise KeyboardInterrupt  # interrupts model loading; main() catches it



def exit_now(code: int) -> None:
    """End the process with `code` once everything is released: flush Python's and C's output buffers, then skip
    the interpreter's teardown (freeing torch and the DDS libraries module by module takes seconds on a loaded
    machine and does nothing a process exit does not)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing left to flush to
            stream.flush()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)  # rcutils logs through C stdio
    os._exit(code)
