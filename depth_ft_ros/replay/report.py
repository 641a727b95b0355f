"""What a replay measured, per input frame, and the summary printed at its end (no ROS here).

Scale/shift over time are read off the outputs: the least-squares affine map from `depth/relative` to `depth/image`
(in the prediction's space) for each frame. With the global alignment it reproduces the node's fit exactly
(residual ~0); with local refinement it is the best global approximation, and the residual says how far the
local correction moved away from it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

MAX_TABLE_ROWS = 60


@dataclass
class FrameRecord:
    index: int
    stamp_ns: int
    camera: str = ""  # the node's camera name (several cameras), "" for the single camera
    sent_s: float | None = None  # monotonic time the image was published
    arrivals_s: dict[str, float] = field(default_factory=dict)  # output topic -> first arrival (monotonic)
    scale: float = math.nan
    shift: float = math.nan
    fit_residual_rel: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)  # depth_metrics vs ground truth

    def latency_ms(self, topic: str) -> float | None:
        if self.sent_s is None or topic not in self.arrivals_s:
            return None
        return (self.arrivals_s[topic] - self.sent_s) * 1e3


def affine_from_outputs(depth_m: np.ndarray, relative: np.ndarray, space: str) -> tuple[float, float, float]:
    """(scale, shift, RMS relative residual) of depth_m ~ s * relative + t (1 / depth_m for disparity)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        target = 1.0 / depth_m.astype(np.float64) if space == "disparity" else depth_m.astype(np.float64)
        ok = np.isfinite(target) & np.isfinite(relative) & (depth_m > 0)
    if np.count_nonzero(ok) < 3:
        return math.nan, math.nan, math.nan
    x, y = relative[ok].astype(np.float64), target[ok]
    (scale, shift), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)
    residual = float(np.sqrt(np.mean(((scale * x + shift) - y) ** 2)) / max(float(np.mean(np.abs(y))), 1e-12))
    return float(scale), float(shift), residual


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    return {"p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


@dataclass
class ReplaySummary:
    in_bag: str
    out_bag: str
    mode: str  # "lossless" or "rate R"
    frames: list[FrameRecord]
    depth_topic: str  # the output whose arrival marks a frame as out
    output_counts: dict[str, int]
    interrupted: bool = False
    wall_s: float = 0.0
    node: dict[str, str] = field(default_factory=dict)

    @property
    def frames_sent(self) -> list[FrameRecord]:
        return [f for f in self.frames if f.sent_s is not None]

    @property
    def frames_out(self) -> list[FrameRecord]:
        return [f for f in self.frames_sent if f.arrivals_s]

    def latencies_ms(self) -> dict[str, float]:
        values = [f.latency_ms(self.depth_topic) for f in self.frames_sent]
        return percentiles([v for v in values if v is not None])

    def overall_metrics(self) -> dict[str, float]:
        """Per-frame metrics averaged over frames (the usual protocol)."""
        scored = [f.metrics for f in self.frames if f.metrics and f.metrics.get("n", 0) > 0]
        if not scored:
            return {}
        out = {k: float(np.mean([s[k] for s in scored])) for k in ("absrel", "rmse_m", "delta1", "coverage")}
        for key in ("absrel_cloud_kept", "absrel_cloud_dropped", "cloud_kept_fraction"):
            values = [s[key] for s in scored if math.isfinite(s.get(key, math.nan))]
            if values:
                out[key] = float(np.mean(values))
        out["frames"] = len(scored)
        return out

    def to_dict(self) -> dict[str, object]:
        sent, out = self.frames_sent, self.frames_out
        return {"in_bag": self.in_bag, "out_bag": self.out_bag, "mode": self.mode, "interrupted": self.interrupted,
                "wall_s": self.wall_s, "frames_in": len(sent), "frames_out": len(out),
                "frames_dropped": len(sent) - len(out), "latency_ms": self.latencies_ms(),
                "overall": self.overall_metrics(), "output_counts": self.output_counts, "node": self.node,
                "frames": [asdict(f) for f in self.frames]}

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=_json_default) + "\n")

    def format(self) -> str:
        sent, out = self.frames_sent, self.frames_out
        t0 = self.frames[0].stamp_ns if self.frames else 0
        lines = [f"replay summary ({self.mode}{', interrupted' if self.interrupted else ''}, {self.wall_s:.1f} s)",
                 f"  frames: {len(sent)} in, {len(out)} out, {len(sent) - len(out)} dropped"
                 + (f" (bag has {len(self.frames)})" if len(sent) != len(self.frames) else "")]
        if self.node:
            lines.append("  node: " + ", ".join(f"{k}={v}" for k, v in self.node.items() if v))
        lat = self.latencies_ms()
        if lat:
            lines.append(f"  latency image -> {self.depth_topic} (ms): " + "  ".join(f"{k} {v:.0f}"
                                                                                   for k, v in lat.items()))
        has_gt = any(f.metrics for f in self.frames)
        width = max((len(f.camera) for f in self.frames), default=0)
        lines.append("  frame  t[s]  " + ("camera".ljust(width) + "  " if width else "") + "   scale     shift  fit_res"
                     + ("   AbsRel  RMSE[m]  delta1" if has_gt else ""))
        step = max(1, math.ceil(len(sent) / MAX_TABLE_ROWS))  # long bags: every step-th frame (JSON has all)
        if step > 1:
            lines.append(f"  (one row every {step} frames of {len(sent)}; --summary-json has them all)")
        for f in sent[::step]:
            row = (f"  {f.index:5d} {(f.stamp_ns - t0) / 1e9:5.2f} " + (f" {f.camera.ljust(width)} " if width else "")
                   + f"{_num(f.scale, 9)} {_num(f.shift, 9)} "
                   f"{_num(f.fit_residual_rel, 8, '.1e')}")
            if has_gt:
                row += (f" {_num(f.metrics.get('absrel'), 8)} {_num(f.metrics.get('rmse_m'), 8)} "
                        f"{_num(f.metrics.get('delta1'), 7)}")
            if not f.arrivals_s:
                row += "   (no output)"
            elif self.depth_topic not in f.arrivals_s:
                row += f"   (no {self.depth_topic}: no metric fit)"
            lines.append(row)
        scales = [f.scale for f in sent if math.isfinite(f.scale)]
        shifts = [f.shift for f in sent if math.isfinite(f.shift)]
        if scales:
            lines.append(f"  scale over time: {min(scales):.4g} .. {max(scales):.4g} (median {np.median(scales):.4g})"
                         f"; shift: {min(shifts):.4g} .. {max(shifts):.4g} (median {np.median(shifts):.4g})")
        overall = self.overall_metrics()
        if overall:
            lines.append(f"  overall vs ground truth ({overall['frames']} frames, mean of per-frame): AbsRel "
                         f"{overall['absrel']:.4f}  RMSE {overall['rmse_m']:.4f} m  delta1 {overall['delta1']:.4f}  "
                         f"coverage {overall['coverage']:.3f}")
            if "absrel_cloud_kept" in overall:
                dropped = overall.get("absrel_cloud_dropped", math.nan)
                lines.append(f"  cloud filters (flying pixels, cloud_min_confidence): kept "
                             f"{overall['cloud_kept_fraction']:.1%} of the valid pixels, AbsRel kept "
                             f"{overall['absrel_cloud_kept']:.4f}"
                             + (f" vs dropped {dropped:.4f}" if math.isfinite(dropped) else " (none dropped)"))
        lines.append(f"  output bag: {self.out_bag}")
        lines.extend(f"    {topic}: {count} msgs" for topic, count in sorted(self.output_counts.items()))
        return "\n".join(lines)


def _num(value: float | None, width: int, fmt: str = ".4f") -> str:
    if value is None or not math.isfinite(value):
        return "-".rjust(width)
    return f"{value:{width}{fmt}}"


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
