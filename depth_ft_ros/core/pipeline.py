"""One frame through the whole chain, without ROS:

RGB -> predictor(s) -> relative depth / normals -> sparse metric points -> fit (+ temporal filter) ->
metric depth (+ local refinement) -> organized cloud arrays.

The ROS node converts messages to a FrameInput and a FrameResult back to messages; everything between is here,
so it is tested without rclpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from depth_ft_ros.core.alignment import FitResult, apply_scale_shift, fit_scale_shift
from depth_ft_ros.core.camera import PinholeCamera
from depth_ft_ros.core.cloud import cloud_arrays
from depth_ft_ros.core.config import NodeConfig
from depth_ft_ros.core.errors import ConfigError, InputError, ModelLoadError
from depth_ft_ros.core.local_alignment import local_refine
from depth_ft_ros.core.sparse import SparsePoints, project_sparse_points, sparse_from_depth_image
from depth_ft_ros.core.temporal import FilterAction, ScaleShiftFilter

if TYPE_CHECKING:
    from depth_ft_ros.core.predictor import DepthFtPredictor


@dataclass
class FrameInput:
    rgb: np.ndarray  # HxWx3 uint8 RGB
    camera: PinholeCamera  # intrinsics of `rgb`
    stamp_ns: int
    points_cam_m: np.ndarray | None = None  # (N, 3) metric points already in the camera optical frame
    sparse_depth_m: np.ndarray | None = None  # HxW metric depth registered to the camera, NaN = none


@dataclass
class Outputs:
    """Which outputs someone wants: the ones nobody wants are not computed."""

    normals: bool = True
    cloud: bool = True


@dataclass
class AlignmentReport:
    state: str  # "fitted", "held", "relative-only", "off", "no-depth-model"
    method: str  # "global", "local", "off"
    scale: float = float("nan")
    shift: float = float("nan")
    points_used: int = 0
    inliers: int = 0
    residual_m: float = float("nan")
    reason: str = ""  # why a fit was refused, when it was
    filter_action: str = ""
    dropped_points: dict[str, int] = field(default_factory=dict)


@dataclass
class FrameResult:
    stamp_ns: int
    camera: PinholeCamera  # intrinsics of every image output (same size as the input)
    relative: np.ndarray | None  # affine-invariant depth or disparity in [0, 1]
    space: str | None
    depth_m: np.ndarray | None  # metric, NaN invalid; None when no fit is available
    normals: np.ndarray | None  # HxWx3 unit vectors, optical frame
    cloud: np.ndarray | None  # organized structured array (x, y, z[, rgb][, normal_x/y/z])
    alignment: AlignmentReport
    timings_ms: dict[str, float]


def camera_for_image(camera: PinholeCamera, width: int, height: int) -> PinholeCamera:
    """The camera scaled to an image of another size (binned or resized stream); refuses another aspect ratio."""
    cam_w, cam_h = camera.image_width, camera.image_height  # after binning / ROI
    if (cam_w, cam_h) == (width, height):
        return camera
    if abs(cam_w * height - cam_h * width) > 0.01 * cam_w * height:
        raise InputError(f"camera_info is {cam_w}x{cam_h} but the image is {width}x{height} "
                         "(another aspect ratio): frame skipped")
    return camera.scaled(width, height)


class FramePipeline:
    """Owns the predictors and the alignment state of one camera stream."""

    def __init__(self, config: NodeConfig, depth_predictor: DepthFtPredictor | None,
                 normals_predictor: DepthFtPredictor | None) -> None:
        if depth_predictor is None and normals_predictor is None:
            raise ConfigError("parameters depth_model and normals_model are both empty: set at least one")
        self.depth_predictor = depth_predictor
        self.normals_predictor = normals_predictor
        # Encode once when both models share the VAE (E2E-FT and Lotus publish one checkpoint per task).
        self.shared_encoder = (depth_predictor is not None and normals_predictor is not None
                               and depth_predictor.vae_key == normals_predictor.vae_key)
        self.config = config
        self.space = self._resolve_space(config)
        self.filter = ScaleShiftFilter(time_constant_s=config.smoothing_seconds, hold_seconds=config.hold_seconds)

    def update_config(self, config: NodeConfig) -> None:
        """Apply parameters changed at run time (from the next frame on; a frame in flight keeps its own)."""
        space = self._resolve_space(config)
        if space != self.space or (config.smoothing_seconds, config.hold_seconds) != (
                self.filter.time_constant_s, self.filter.hold_seconds):
            self.filter = ScaleShiftFilter(time_constant_s=config.smoothing_seconds,
                                           hold_seconds=config.hold_seconds)
        self.space = space
        self.config = config

    @classmethod
    def load(cls, config: NodeConfig) -> FramePipeline:
        from depth_ft_ros.core.predictor import DepthFtPredictor

        loaded: dict[str, DepthFtPredictor] = {}
        try:
            for name, task in (("depth_model", "depth"), ("normals_model", "normals")):
                model = getattr(config, name)
                if not model:
                    continue
                try:
                    predictor = DepthFtPredictor.from_pretrained(
                        model, device=config.device, dtype=config.dtype,
                        processing_resolution=config.processing_resolution)
                except ModelLoadError as exc:  # name the parameter: both models may be local folders
                    raise ModelLoadError(f"parameter {name}: {exc}") from exc
                loaded[task] = predictor
                if predictor.task != task:
                    raise ConfigError(f"parameter {name}={predictor.model_id!r} is a {predictor.task} checkpoint, "
                                      f"not a {task} one")
        except BaseException:
            for predictor in loaded.values():  # free the GPU memory of what did load
                predictor.close()
            raise
        return cls(config, loaded.get("depth"), loaded.get("normals"))

    def close(self) -> None:
        for predictor in (self.depth_predictor, self.normals_predictor):
            if predictor is not None:
                predictor.close()

    def describe(self) -> dict[str, str]:
        models = [p for p in (self.depth_predictor, self.normals_predictor) if p is not None]
        return {
            "depth_model": self.depth_predictor.model_id if self.depth_predictor else "",
            "normals_model": self.normals_predictor.model_id if self.normals_predictor else "",
            "family": ", ".join(p.family for p in models),
            "device": str(models[0].device),
            "dtype": str(models[0].dtype).replace("torch.", ""),
            "space": self.space or "",
            "shared_encoder": str(self.shared_encoder).lower(),
        }

    def process(self, frame: FrameInput, outputs: Outputs | None = None) -> FrameResult:
        outputs = outputs or Outputs()
        cfg = self.config  # one snapshot per frame: parameters may change while it runs
        timings_ms: dict[str, float] = {}
        t0 = time.perf_counter()

        relative, normals = self._predict(frame.rgb, want_normals=outputs.normals or
                                          (outputs.cloud and cfg.cloud_normals), timings_ms=timings_ms)
        t1 = time.perf_counter()

        depth_m, report = self._metric_depth(cfg, frame, relative)
        t2 = time.perf_counter()
        timings_ms["align"] = (t2 - t1) * 1e3

        cloud = None
        if outputs.cloud and depth_m is not None:
            cloud = cloud_arrays(
                depth_m, frame.camera,
                rgb=frame.rgb if cfg.cloud_rgb else None,
                normals=normals if cfg.cloud_normals else None,
                stride=cfg.cloud_stride,
                max_range_m=cfg.cloud_max_range or cfg.max_depth,
                rectified=cfg.image_rectified,
            )
        timings_ms["cloud"] = (time.perf_counter() - t2) * 1e3
        timings_ms["pipeline"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(frame.stamp_ns, frame.camera, relative, self.space if relative is not None else None,
                           depth_m, normals, cloud, report, timings_ms)

    # -- steps ---------------------------------------------------------------------------------------------

    def _resolve_space(self, config: NodeConfig) -> str | None:
        if self.depth_predictor is None:
            return None
        if config.space != "auto":
            return config.space
        return self.depth_predictor.space or "depth"

    def _predict(self, rgb: np.ndarray, want_normals: bool,
                 timings_ms: dict[str, float]) -> tuple[np.ndarray | None, np.ndarray | None]:
        relative = normals = None
        encoded = None
        if self.depth_predictor is not None:
            if self.shared_encoder and want_normals:
                encoded = self.depth_predictor.encode(rgb)
            prediction = self.depth_predictor.predict(rgb, encoded=encoded)
            relative = prediction.relative
            timings_ms.update({f"depth.{k}": v for k, v in prediction.timings_ms.items()})
        if self.normals_predictor is not None and want_normals:
            prediction = self.normals_predictor.predict(rgb, encoded=encoded)
            normals = prediction.normals
            timings_ms.update({f"normals.{k}": v for k, v in prediction.timings_ms.items()})
        return relative, normals

    @staticmethod
    def _sparse(cfg: NodeConfig, frame: FrameInput) -> SparsePoints | None:
        if frame.points_cam_m is not None:
            return project_sparse_points(frame.points_cam_m, frame.camera, rectified=cfg.image_rectified,
                                         min_depth_m=cfg.min_depth,
                                         max_depth_m=cfg.max_depth, filter_see_through=cfg.see_through_margin > 0,
                                         see_through_margin_m=cfg.see_through_margin)
        if frame.sparse_depth_m is not None:
            return sparse_from_depth_image(frame.sparse_depth_m, "32FC1", target_size=frame.rgb.shape[1::-1])
        return None

    def _metric_depth(self, cfg: NodeConfig, frame: FrameInput,
                      relative: np.ndarray | None) -> tuple[np.ndarray | None, AlignmentReport]:
        space, temporal = self.space, self.filter  # read once: update_config may replace them meanwhile
        if relative is None:
            return None, AlignmentReport(state="no-depth-model", method="off")
        if cfg.alignment == "off":
            return None, AlignmentReport(state="off", method="off")
        sparse = self._sparse(cfg, frame)
        n_points = 0 if sparse is None else len(sparse.z_m)
        if sparse is not None and n_points >= cfg.min_points:
            fit = fit_scale_shift(relative, sparse.uv, sparse.z_m, space=space, robust=True,
                                  min_points=cfg.min_points, fit_shift=cfg.alignment_fit == "scale_shift")
        else:
            fit = FitResult.refused(space, n_points, f"too few points ({n_points} < min_points "
                                    f"{cfg.min_points})")
        filtered = temporal.update(fit if fit.ok else None, frame.stamp_ns)
        report = AlignmentReport(
            state="relative-only", method=cfg.alignment, points_used=n_points, inliers=fit.n_inliers,
            residual_m=fit.residual_m, reason=fit.reason or "", filter_action=filtered.action,
            dropped_points=sparse.dropped if sparse is not None else {},
        )
        use_held = filtered.ok and (fit.ok or cfg.on_few_points == "hold")
        if not use_held:
            return None, report
        # "held" also when this frame's fit is a jump the filter has not confirmed yet.
        report.state = "held" if filtered.action == FilterAction.HELD else "fitted"
        report.scale, report.shift = filtered.scale, filtered.shift
        depth_m = apply_scale_shift(relative, filtered.scale, filtered.shift, space,
                                    cfg.min_depth, cfg.max_depth)
        if cfg.alignment == "local" and fit.ok and sparse is not None:
            # All points, not only the global inliers: the local outlier test re-admits points that a smooth
            # model error pushed out of the global fit.
            refined = local_refine(depth_m, sparse.uv, sparse.z_m, min_depth_m=cfg.min_depth,
                                   max_depth_m=cfg.max_depth)
            if refined.depth_m is None:  # too few points agree locally: the global map stands, and says so
                report.method, report.reason = "global", refined.note or ""
            else:
                depth_m = refined.depth_m
        return depth_m, report
