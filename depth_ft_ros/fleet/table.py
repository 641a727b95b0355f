"""The per-frame Parquet table of a bag: one row per output frame.

Columns: bag, camera, frame_id, stamp_ns, log_time_ns, the alignment (method, state, filter action, scale,
shift, points used, inliers), depth coverage, confidence quantiles, stage timings (ms_<stage>), and the
evaluation columns of depth_ft_ros.fleet.evaluate.evaluation_columns(result, frame) where that module exists.
Rows are gathered in columnar chunks (a bag of hours stays a few MB here) and written once, at the bag's end.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK_ROWS = 1024
CONFIDENCE_QUANTILES = (0.1, 0.5, 0.9)


@functools.cache
def _evaluation_hook() -> Callable[..., dict[str, Any]] | None:
    try:
        module = importlib.import_module("depth_ft_ros.fleet.evaluate")
    except ImportError:
        return None
    return getattr(module, "evaluation_columns", None)


def frame_row(bag: str, result: Any, frame: Any, log_time_ns: int, config: Any = None,
              gt_depth_m: np.ndarray | None = None) -> dict[str, Any]:
    """The table row of one output frame (a FrameResult, the CameraFrame it came from, the parameters it went
    through and the bag's ground truth for it, if any)."""
    report = result.alignment
    row: dict[str, Any] = {
        "bag": bag,
        "camera": result.camera_name,
        "frame_id": result.frame_id,
        "stamp_ns": int(result.stamp_ns),
        "log_time_ns": int(log_time_ns),
        "alignment_method": str(report.method),
        "alignment_state": str(report.state),
        "alignment_filter": str(getattr(report, "filter_action", "")),
        "scale": float(report.scale),
        "shift": float(report.shift),
        "points_used": int(report.points_used),
        "inliers": int(getattr(report, "inliers", 0) or 0),
    }
    depth = result.depth_m
    row["batch_size"] = int(result.batch_size)
    row["depth_valid_fraction"] = float(np.isfinite(depth).mean()) if depth is not None else math.nan
    conf = result.confidence
    values = conf[np.isfinite(conf)] if conf is not None else np.empty(0)
    for q in CONFIDENCE_QUANTILES:
        row[f"confidence_p{round(q * 100)}"] = float(np.quantile(values, q)) if values.size else math.nan
    for stage, ms in sorted(result.timings_ms.items()):
        row[f"ms_{stage}"] = float(ms)
    hook = _evaluation_hook()
    if hook is not None:
        row.update(hook(result, frame, config=config, gt_depth_m=gt_depth_m))
    return row


class FrameTable:
    """Rows in, one Parquet file out (`close`); columns that appear in later rows only are null before."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._chunks: list[pa.Table] = []
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self.rows += 1
        if len(self._rows) >= CHUNK_ROWS:
            self._chunks.append(pa.Table.from_pylist(self._rows))
            self._rows = []

    def write(self, path: Path) -> None:
        if self._rows:
            self._chunks.append(pa.Table.from_pylist(self._rows))
            self._rows = []
        table = pa.concat_tables(self._chunks, promote_options="default") if self._chunks else pa.table(
            {"bag": pa.array([], pa.string()), "camera": pa.array([], pa.string()),
             "frame_id": pa.array([], pa.string()), "stamp_ns": pa.array([], pa.int64())})
        pq.write_table(table, path)
