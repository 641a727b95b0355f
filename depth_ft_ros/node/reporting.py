"""How the node tells about trouble: counted in NodeStats (for /diagnostics) and logged, throttled.

- bad_input: the input's fault (a malformed message, a stamp from the future): a named counter and a warning
  that names the input and the field, at most once per throttle period and kind.
- note: an expected loss that is still counted (sparse points behind the camera or outside the image: a
  360-degree LiDAR drops most of its points every frame, by design): logged at INFO, per kind, rarely. WARN is
  for what a person must act on; this is normal operation, and /diagnostics carries the counts.
- internal_error: not the input's fault: its own counter; each distinct error (type and place) is logged once
  with its traceback at error level, repeats at most once per throttle period without it.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from depth_ft_ros.frame.stats import NodeStats

WARN_THROTTLE_S = 5.0
NOTE_THROTTLE_S = 60.0


class Reporter:
    def __init__(self, logger: Any, stats: NodeStats) -> None:
        self._logger = logger
        self._stats = stats
        self._lock = threading.Lock()
        self._last_log_s: dict[str, float] = {}
        self._errors_seen: set[tuple[str, str]] = set()

    def _due(self, key: str, throttle_s: float) -> bool:
        now_s = time.monotonic()
        with self._lock:
            if now_s - self._last_log_s.get(key, -1e18) < throttle_s:
                return False
            self._last_log_s[key] = now_s
            return True

    def bad_input(self, kind: str, message: str, throttle_s: float = WARN_THROTTLE_S,
                  throttle_key: str = "") -> None:
        """throttle_key: faults of one kind that differ (two wrong D lengths) each get their warning."""
        self._stats.warn(kind, message)
        if self._due(f"{kind}:{throttle_key}", throttle_s):
            self._logger.warning(message)

    def note(self, key: str, message: str, throttle_s: float = NOTE_THROTTLE_S) -> None:
        """An expected, counted loss: INFO, at most once per throttle period and key."""
        if self._due(key, throttle_s):
            self._logger.info(message)

    def internal_error(self, exc: BaseException, context: str) -> None:
        """Call from the except block that caught `exc` (the traceback is read from it)."""
        message = f"internal error while {context}: {exc!r}"
        self._stats.internal_error(message)
        frames = traceback.extract_tb(exc.__traceback__)
        place = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        key = (type(exc).__name__, place)
        with self._lock:
            first = key not in self._errors_seen
            self._errors_seen.add(key)
        if first:
            self._due("internal_error", 0.0)  # the throttle of the repeats starts here
            self._logger.error(f"{message}\n{''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))}")
        elif self._due("internal_error", WARN_THROTTLE_S):
            self._logger.error(f"{message} (again; traceback logged the first time)")
