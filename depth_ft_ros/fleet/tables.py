"""Reading a fleet run back: the per-bag frame tables (<out>/<bag>/frames.parquet) and the run record
(<out>/fleet_run.json), reduced to per-bag numbers the summary and the compare report print, and the shapes of
those numbers (BagStats, RunInfo, Comparison).

Metrics follow the replay summary's protocol: per frame, then the mean over frames (frames without a value, e.g.
too few points for the held-out fit, are left out and counted).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from depth_ft_ros.errors import InputError

FRAMES_FILE = "frames.parquet"
RUN_FILE = "fleet_run.json"
NOT_OUTPUT = (".partial-", ".replaced-")  # the engine's names for work in progress and replaced outputs
TIMING_PREFIX = "ms_"  # stage timing columns: ms_<stage>
MEAN_COLUMNS = ("heldout_absrel", "heldout_rmse_m", "heldout_delta1", "gt_absrel", "gt_rmse_m", "gt_delta1")


@dataclass
class BagStats:
    """One bag's frames reduced: counts, mean per-frame metrics, method/state shares, confidence, timings."""

    bag: str
    frames: int
    cameras: list[str]
    log_s: float  # first to last output stamp (per camera, the longest)
    means: dict[str, float]  # MEAN_COLUMNS present in the table -> mean over frames that have a value
    scored: dict[str, int]  # the same columns -> frames that have a value
    methods: dict[str, float]  # alignment_method -> share of frames
    states: dict[str, float]  # alignment_state -> share of frames
    confidence: dict[str, float]  # confidence quantile columns -> mean over frames
    timings_ms: dict[str, float]  # stage (ms_<stage> columns) -> mean over frames
    per_frame_absrel: np.ndarray = field(default_factory=lambda: np.zeros(0))  # finite held-out AbsRel values


@dataclass
class RunInfo:
    """What fleet_run.json says about the run as a whole (NaN / empty where it says nothing)."""

    wall_s: float = math.nan
    frames: int = 0
    frames_per_s: float = math.nan
    log_hours_per_hour: float = math.nan
    failed: dict[str, str] = field(default_factory=dict)  # bag -> reason
    skipped: list[str] = field(default_factory=list)  # bags a re-run found done
    extra: dict[str, Any] = field(default_factory=dict)  # the record as written


@dataclass
class BagComparison:
    bag: str
    frames: int  # frames both runs scored
    a: float  # mean held-out AbsRel over those frames
    b: float


@dataclass
class Comparison:
    label_a: str
    label_b: str
    rows: list[BagComparison]
    mean_a: float  # mean over bags
    mean_b: float
    mean_diff: float  # mean over bags of b - a
    ci_low: float
    ci_high: float
    confidence: float
    only_a: list[str] = field(default_factory=list)  # bags with output in one run only
    only_b: list[str] = field(default_factory=list)
    unscored: list[str] = field(default_factory=list)  # bags in both without a frame both scored
    other_input: list[str] = field(default_factory=list)  # same name, other input files (not compared)
    differences: list[str] = field(default_factory=list)  # what differs between the runs' settings


def bag_tables(out_dir: Path) -> dict[str, Path]:
    """bag name -> its frames table, for the finished bags under out_dir (folders in progress or set aside by
    the engine carry .partial-/.replaced- in their name: not outputs)."""
    found: dict[str, Path] = {}
    for path in sorted(Path(out_dir).glob(f"*/{FRAMES_FILE}")):
        name = path.parent.name
        if name.startswith(".") or any(mark in name for mark in NOT_OUTPUT):
            continue
        found[name] = path
    return found


def read_frames(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet table ({exc})") from exc


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def _shares(table: pa.Table, name: str) -> dict[str, float]:
    if name not in table.column_names or table.num_rows == 0:
        return {}
    counts = Counter(str(v) for v in table.column(name).to_pylist())
    return {key: n / table.num_rows for key, n in counts.most_common()}


def confidence_columns(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("confidence_")]


def bag_stats(bag: str, table: pa.Table) -> BagStats:
    names = table.column_names
    means: dict[str, float] = {}
    scored: dict[str, int] = {}
    for name in MEAN_COLUMNS:
        if name in names:
            values = _floats(table, name)
            ok = np.isfinite(values)
            scored[name] = int(ok.sum())
            means[name] = float(values[ok].mean()) if ok.any() else math.nan
    cameras = sorted({str(c) for c in table.column("camera").to_pylist()}) if "camera" in names else [""]
    log_s = 0.0
    if "stamp_ns" in names and table.num_rows:
        stamps = np.asarray(table.column("stamp_ns").to_numpy(zero_copy_only=False), dtype=np.int64)
        keys = (np.asarray([str(c) for c in table.column("camera").to_pylist()]) if "camera" in names
                else np.zeros(len(stamps), dtype=str))
        log_s = max(float(stamps[keys == k].max() - stamps[keys == k].min()) / 1e9 for k in set(keys.tolist()))

    def column_means(columns: list[str]) -> dict[str, float]:
        out = {}
        for name in columns:
            values = _floats(table, name)
            ok = np.isfinite(values)
            out[name] = float(values[ok].mean()) if ok.any() else math.nan
        return out

    absrel = _floats(table, "heldout_absrel") if "heldout_absrel" in names else np.zeros(0)
    return BagStats(
        bag=bag, frames=table.num_rows, cameras=cameras, log_s=log_s, means=means, scored=scored,
        methods=_shares(table, "alignment_method"), states=_shares(table, "alignment_state"),
        confidence=column_means(confidence_columns(names)),
        timings_ms={n[len(TIMING_PREFIX):]: v for n, v in
                    column_means([n for n in names if n.startswith(TIMING_PREFIX)]).items()},
        per_frame_absrel=absrel[np.isfinite(absrel)],
    )


def run_stats(out_dir: Path) -> dict[str, BagStats]:
    """bag -> BagStats for every finished bag of a run folder."""
    return {bag: bag_stats(bag, read_frames(path)) for bag, path in bag_tables(out_dir).items()}


def _failed(record: dict[str, Any]) -> dict[str, str]:
    """Failed bags and reasons from the run record: a {bag: reason} map or a list of {bag, reason} under
    "failed", or "bags" entries whose status is failed."""
    out: dict[str, str] = {}
    failed = record.get("failed", {})
    if isinstance(failed, dict):
        out.update({str(k): str(v) for k, v in failed.items()})
    elif isinstance(failed, list):
        for item in failed:
            if isinstance(item, dict):
                out[str(item.get("bag", item.get("name", "?")))] = str(item.get("reason", item.get("error", "")))
            else:
                out[str(item)] = ""
    bags = record.get("bags", [])
    for item in bags.values() if isinstance(bags, dict) else bags:
        if isinstance(item, dict) and str(item.get("status", "")).lower() in ("failed", "error"):
            out.setdefault(str(item.get("bag", item.get("name", "?"))), str(item.get("reason", item.get("error", ""))))
    return out


def _number(record: dict[str, Any], *keys: str) -> float:
    for key in keys:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return math.nan


def run_info(out_dir: Path, bags: dict[str, BagStats]) -> RunInfo:
    """The run record, with frames/s and hours of log per hour derived from wall time, frames and the log
    duration of the tables when the record does not state them."""
    path = Path(out_dir) / RUN_FILE
    record: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable run record ({exc})") from exc
        record = loaded if isinstance(loaded, dict) else {}
    info = RunInfo(extra=record, failed=_failed(record))
    info.wall_s = _number(record, "wall_s", "elapsed_s", "duration_s")
    frames = _number(record, "frames", "frames_out", "frames_total")
    info.frames = int(frames) if math.isfinite(frames) else sum(b.frames for b in bags.values())
    info.frames_per_s = _number(record, "frames_per_s", "fps")
    if not math.isfinite(info.frames_per_s) and info.wall_s > 0:
        info.frames_per_s = info.frames / info.wall_s
    info.log_hours_per_hour = _number(record, "log_hours_per_hour", "log_hours_per_wall_hour")
    log_s = _number(record, "log_s", "log_seconds")
    if not math.isfinite(log_s):
        log_s = sum(b.log_s for b in bags.values())
    if not math.isfinite(info.log_hours_per_hour) and info.wall_s > 0:
        info.log_hours_per_hour = log_s / info.wall_s
    skipped = record.get("skipped", [])
    info.skipped = [str(s) for s in skipped] if isinstance(skipped, list) else []
    return info


def pooled_mean(bags: dict[str, BagStats], column: str) -> tuple[float, int]:
    """Mean of a per-frame metric over every scored frame of all bags, and the number of those frames."""
    total = sum(b.means[column] * b.scored[column] for b in bags.values() if b.scored.get(column))
    n = sum(b.scored.get(column, 0) for b in bags.values())
    return (total / n if n else math.nan), n
