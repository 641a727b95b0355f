"""Affine-invariant prediction -> metric depth with sparse metric points: MetricAligner.

MetricAligner is the one object that combines the steps, in this order:
robust global fit (scale_shift.fit_scale_shift) -> temporal filter (temporal.ScaleShiftFilter) -> hold policy
(use a held fit when this frame has none, or not) -> metric map (apply_scale_shift) -> optional local
refinement (local_alignment.local_refine). The frame processor, the public align() / align_detailed()
(a one-frame aligner), `eval-alignment` and the tests all run it, so the accuracy that is measured is the
accuracy of the code that runs.

Settings are plain values (AlignerSettings); AlignerSettings.from_config is the one place that maps the node's
parameters (NodeConfig) to them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from depth_ft_ros.alignment.local import LocalOptions, local_refine
from depth_ft_ros.alignment.scale_shift import (
    ROBUST_METHODS,
    SPACES,
    FitResult,
    apply_scale_shift,
    fit_scale_shift,
    sample_prediction,
)
from depth_ft_ros.alignment.temporal import FilterAction, ScaleShiftFilter
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import AlignmentMethod, AlignmentState, Space
from depth_ft_ros.errors import InputError

__all__ = [
    "ROBUST_METHODS", "SPACES", "AlignResult", "AlignerSettings", "AlignmentMethod", "AlignmentOutput",
    "AlignmentReport", "AlignmentState", "FitResult", "LocalOptions", "MetricAligner", "Space", "align",
    "align_detailed", "aligner_settings", "apply_scale_shift", "fit_scale_shift", "sample_prediction",
]


def _no_options() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AlignerSettings:
    """How MetricAligner turns a relative map into metric depth. The defaults are those of the one-frame
    align(); the node's come from its parameters (from_config)."""

    method: AlignmentMethod = AlignmentMethod.GLOBAL
    min_depth_m: float = 1e-3  # metric depths outside [min_depth_m, max_depth_m] are NaN
    max_depth_m: float = math.inf
    min_points: int = 8  # fewest usable points a fit needs
    fit_shift: bool = True  # False: scale alone (t = 0)
    robust: bool = True
    robust_method: str = "irls"  # scale_shift.ROBUST_METHODS
    smoothing_seconds: float = 0.0  # time constant of the scale/shift filter (0: each frame's own fit)
    hold_seconds: float = 1.0  # how long a fit is held when later frames have none
    hold: bool = True  # without a usable fit, use the held one (False: no metric map)
    fit_options: Mapping[str, Any] = field(default_factory=_no_options)  # more fit_scale_shift keywords
    local_options: LocalOptions = field(default_factory=LocalOptions)  # how the local correction works

    @classmethod
    def from_config(cls, config: NodeConfig) -> AlignerSettings:
        """The node's alignment parameters as MetricAligner settings (the one place that maps them)."""
        return cls(
            method=AlignmentMethod(config.alignment),
            min_depth_m=config.min_depth,
            max_depth_m=config.max_depth,
            min_points=config.min_points,
            fit_shift=config.alignment_fit == "scale_shift",
            smoothing_seconds=config.smoothing_seconds,
            hold_seconds=config.hold_seconds,
            hold=config.on_few_points == "hold",
            local_options=LocalOptions(max_heldout_ratio=config.local_heldout_ratio),
        )


def aligner_settings(config: NodeConfig) -> AlignerSettings:
    """AlignerSettings.from_config as a function (the name the frame processor and the tools import)."""
    return AlignerSettings.from_config(config)


@dataclass
class AlignmentReport:
    """What the aligner did with one frame (the node publishes it in /diagnostics)."""

    state: AlignmentState
    method: AlignmentMethod  # what was used: "local" falls back to "global" when the points cannot support it
    scale: float = float("nan")
    shift: float = float("nan")
    points_used: int = 0  # sparse points given to the fit
    inliers: int = 0
    residual_m: float = float("nan")
    reason: str = ""  # why there is no fit, a held one, or no local correction
    filter_action: FilterAction | Literal[""] = ""  # "" when the filter did not run
    dropped_points: dict[str, int] = field(default_factory=dict)
    space: Space | None = None
    fit: FitResult | None = None  # this frame's own global fit (before the filter)
    local: dict[str, float] | None = None  # diagnostics of the local correction: when applied, or what refused it


@dataclass
class AlignmentOutput:
    depth_m: np.ndarray | None  # float32 HxW metres, NaN invalid; None when there is no usable fit
    report: AlignmentReport


class MetricAligner:
    """(relative map, space, sparse points, stamp) -> metric depth + report, for one stream of frames.

    Keeps the temporal state of the stream (the filter and the space it was fitted in): a change of space
    restarts it, as do stamps going backwards."""

    def __init__(self, settings: AlignerSettings | None = None) -> None:
        self.settings = settings or AlignerSettings()
        self._filter = ScaleShiftFilter(time_constant_s=self.settings.smoothing_seconds,
                                        hold_seconds=self.settings.hold_seconds)
        self._space: Space | None = None

    def reconfigured(self, settings: AlignerSettings) -> MetricAligner:
        """An aligner with new settings that carries this one's temporal state over while the filter's own
        settings (smoothing_seconds, hold_seconds) are unchanged."""
        new = MetricAligner(settings)
        if (settings.smoothing_seconds, settings.hold_seconds) == (self.settings.smoothing_seconds,
                                                                   self.settings.hold_seconds):
            new._filter, new._space = self._filter, self._space
        return new

    def reset(self) -> None:
        """Forget the stream: the next frame starts from its own fit."""
        self._filter.reset()
        self._space = None

    def align(self, relative: np.ndarray, space: Space | str, uv: np.ndarray | None, z_m: np.ndarray | None,
              stamp_ns: int = 0) -> AlignmentOutput:
        """One frame. uv (N, 2) (column, row) pixels of `relative` and z_m (N,) metres; None: no points.
        Raises InputError for malformed input (shapes, pixels outside the map, unknown space)."""
        s = self.settings
        if s.method == AlignmentMethod.OFF:
            return AlignmentOutput(None, AlignmentReport(AlignmentState.OFF, AlignmentMethod.OFF))
        space = Space.parse(space)
        if space != self._space:  # a fit held in another space means nothing in this one
            self._filter.reset()
            self._space = space
        n_points = 0 if uv is None or z_m is None else len(z_m)
        if uv is None or z_m is None:
            fit = FitResult.refused(space, 0, f"too few points: none this frame, need {s.min_points}")
        else:
            fit = fit_scale_shift(relative, uv, z_m, space, robust=s.robust, robust_method=s.robust_method,
                                  min_points=s.min_points, fit_shift=s.fit_shift, **s.fit_options)
        filtered = self._filter.update(fit, stamp_ns)
        report = AlignmentReport(
            state=AlignmentState.RELATIVE_ONLY, method=s.method, points_used=n_points, inliers=fit.n_inliers,
            residual_m=fit.residual_m, reason=fit.reason or "", filter_action=filtered.action, space=space,
            fit=fit,
        )
        if not (filtered.ok and (fit.ok or s.hold)):
            return AlignmentOutput(None, report)
        # "held" also when this frame's fit is a jump the filter has not confirmed yet.
        if filtered.action == FilterAction.HELD:
            report.state, report.reason = AlignmentState.HELD, report.reason or filtered.reason or ""
        else:
            report.state = AlignmentState.FITTED
        report.scale, report.shift = filtered.scale, filtered.shift
        depth_m = apply_scale_shift(relative, filtered.scale, filtered.shift, space, s.min_depth_m, s.max_depth_m)
        if s.method == AlignmentMethod.LOCAL and fit.ok and uv is not None and z_m is not None:
            # All points, not only the global inliers: the local outlier test re-admits points that a smooth
            # model error pushed out of the global fit.
            refined = local_refine(depth_m, uv, z_m, fit, s.local_options, min_depth_m=s.min_depth_m,
                                   max_depth_m=s.max_depth_m)
            report.local = refined.info
            if refined.depth_m is None:  # not supported or not confirmed by the points: the global map stands
                report.method, report.reason = AlignmentMethod.GLOBAL, refined.note or ""
            else:
                depth_m = refined.depth_m
        return AlignmentOutput(depth_m, report)


@dataclass
class AlignResult:
    depth_m: np.ndarray  # float32 HxW metres, NaN invalid
    fit: FitResult  # the global fit (also the base of a local correction)
    method: AlignmentMethod  # "global" or "local": what was actually used
    local: dict[str, float] | None = None  # diagnostics of the local correction: when used, or what refused it
    note: str | None = None  # why local fell back to global, if it did


def align_detailed(
    prediction: np.ndarray,
    uv: np.ndarray,
    z: np.ndarray,
    space: Space | str = Space.DEPTH,
    method: AlignmentMethod | str = AlignmentMethod.GLOBAL,
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
    robust: bool = True,
    fit_kwargs: Mapping[str, Any] | None = None,
    local_kwargs: Mapping[str, Any] | None = None,
) -> AlignResult:
    """Like align() but returns the fit and what was done: a one-frame MetricAligner. Raises InputError when
    the global fit refuses; "local" falls back to the global result (method="global", note set) when the
    points cannot support it. fit_kwargs: more fit_scale_shift keywords; local_kwargs: LocalOptions fields."""
    chosen = AlignmentMethod.parse(method)
    if chosen == AlignmentMethod.OFF:
        raise InputError("alignment method must be 'global' or 'local', got 'off'")
    options = dict(fit_kwargs or {})
    defaults = AlignerSettings()
    settings = AlignerSettings(
        method=chosen, min_depth_m=min_depth, max_depth_m=max_depth, robust=robust,
        min_points=int(options.pop("min_points", defaults.min_points)),
        fit_shift=bool(options.pop("fit_shift", defaults.fit_shift)),
        robust_method=str(options.pop("robust_method", defaults.robust_method)),
        fit_options=MappingProxyType(options), local_options=LocalOptions.from_mapping(local_kwargs or {}),
    )
    out = MetricAligner(settings).align(prediction, space, uv, z)
    report = out.report
    if out.depth_m is None or report.fit is None:
        raise InputError(f"metric alignment refused: {report.reason}")
    fell_back = chosen == AlignmentMethod.LOCAL and report.method != AlignmentMethod.LOCAL
    return AlignResult(out.depth_m, report.fit, report.method, local=report.local,
                       note=report.reason if fell_back else None)


def align(
    prediction: np.ndarray,
    uv: np.ndarray,
    z: np.ndarray,
    space: Space | str = Space.DEPTH,
    method: AlignmentMethod | str = AlignmentMethod.GLOBAL,
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
    robust: bool = True,
) -> np.ndarray:
    """Metric depth (float32 HxW metres, NaN invalid) from an affine-invariant prediction and sparse points."""
    return align_detailed(prediction, uv, z, space, method, min_depth, max_depth, robust).depth_m
