"""One frame through the whole chain, without ROS:

RGB -> predictor(s) -> relative depth / normals -> sparse metric points -> MetricAligner (fit, temporal
filter, hold, local refinement) -> metric depth -> organized cloud arrays.

The ROS node converts messages to a FrameInput and a FrameResult back to messages; everything between is here,
so it is tested without rclpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from depth_ft_ros.alignment.aligner import AlignmentReport, MetricAligner, aligner_settings
from depth_ft_ros.alignment.confidence import ConfidenceSettings, cloud_keep_mask, confidence_map, depth_edges
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import AlignmentMethod, AlignmentState, Space
from depth_ft_ros.errors import InputError
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.cloud import cloud_arrays
from depth_ft_ros.geometry.rectify import Rectifier, needs_rectification
from depth_ft_ros.geometry.sparse import SparsePoints, project_sparse_points, sparse_from_depth_image
from depth_ft_ros.model.networks import Models, Predicted

if TYPE_CHECKING:
    from depth_ft_ros.model.predictor import DepthFtPredictor


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
    confidence: bool = False


__all__ = ["AlignmentReport", "FrameInput", "FramePipeline", "FrameResult", "Outputs", "aligner_settings",
           "camera_for_image"]


@dataclass
class FrameResult:
    stamp_ns: int
    camera: PinholeCamera  # of every image output (same size as the input; the rectified camera when rectified)
    relative: np.ndarray | None  # affine-invariant depth or disparity in [0, 1]
    space: Space | None
    depth_m: np.ndarray | None  # metric, NaN invalid; None when no fit is available
    normals: np.ndarray | None  # HxWx3 unit vectors, optical frame
    cloud: np.ndarray | None  # organized structured array (x, y, z[, rgb][, normal_x/y/z])
    alignment: AlignmentReport
    timings_ms: dict[str, float]
    confidence: np.ndarray | None = None  # HxW in [0, 1], same geometry as depth_m (computed when wanted)
    cloud_kept: np.ndarray | None = None  # HxW bool: pixels the cloud keeps (edge filter, min confidence)


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
    """One camera stream's state (alignment filter, rectification maps) over the models, which several
    streams may share (Models: one copy of each network per process)."""

    def __init__(self, config: NodeConfig, models: Models) -> None:
        self.models = models
        self.config = config
        self.space = self._resolve_space(config)
        self.aligner = MetricAligner(aligner_settings(config))
        self._rectify_cache: tuple[PinholeCamera, Rectifier | None] | None = None

    @property
    def depth_predictor(self) -> DepthFtPredictor | None:
        return self.models.depth

    @property
    def normals_predictor(self) -> DepthFtPredictor | None:
        return self.models.normals

    @property
    def shared_encoder(self) -> bool:
        return self.models.shared_encoder

    def update_config(self, config: NodeConfig) -> None:
        """Apply parameters changed at run time (from the next frame on; a frame in flight keeps its own).
        The aligner keeps its temporal state unless the filter's settings change (it restarts by itself when
        the space changes)."""
        self.aligner = self.aligner.reconfigured(aligner_settings(config))
        self.space = self._resolve_space(config)
        self.config = config

    @classmethod
    def load(cls, config: NodeConfig) -> FramePipeline:
        """A pipeline over models of its own (one camera; several cameras share one Models.load)."""
        return cls(config, Models.load(config))

    def close(self) -> None:
        """Close the models (only the stream that loaded them, or the last user of shared ones, calls this)."""
        self.models.close()

    def describe(self) -> dict[str, str]:
        return {**self.models.describe(), "space": self.space or ""}

    @staticmethod
    def _confidence(cfg: NodeConfig, depth_m: np.ndarray | None, sparse: SparsePoints | None, *,
                    want_confidence: bool, want_cloud: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(confidence, depth-edge mask), each only when an output needs it (depth/confidence, or the cloud's
        flying-pixel filter and cloud_min_confidence)."""
        need_conf = want_confidence or (want_cloud and cfg.cloud_min_confidence > 0)
        if depth_m is None or not (need_conf or (want_cloud and cfg.cloud_edge_filter)):
            return None, None
        settings = ConfidenceSettings(edge_threshold_rel=cfg.cloud_edge_threshold)
        edges = depth_edges(depth_m, settings.edge_threshold_rel, settings.edge_radius_px, settings.edge_dilate_px)
        if not need_conf:
            return None, edges
        if sparse is None:  # no sparse points this frame: nothing measured now supports the map
            return np.zeros_like(depth_m), edges
        return confidence_map(depth_m, sparse.uv, sparse.z_m, settings, edges=edges), edges

    def _rectifier(self, cfg: NodeConfig, camera: PinholeCamera) -> Rectifier | None:
        """The raw -> rectified maps of this camera (built once per camera object), or None when the outputs
        stay in the input's geometry."""
        if not cfg.rectify_outputs or cfg.image_rectified:
            return None
        if self._rectify_cache is None or self._rectify_cache[0] is not camera:
            self._rectify_cache = (camera, Rectifier.for_camera(camera) if needs_rectification(camera) else None)
        return self._rectify_cache[1]

    def wants_normals(self, outputs: Outputs) -> bool:
        """Whether this frame needs the normals network (normals topics, or the cloud's normal fields)."""
        return outputs.normals or (outputs.cloud and self.config.cloud_normals)

    def process(self, frame: FrameInput, outputs: Outputs | None = None) -> FrameResult:
        """One frame through the networks and the rest of the chain (one camera; see `finish` for batches)."""
        outputs = outputs or Outputs()
        predicted = self.models.predict([frame.rgb], [self.wants_normals(outputs)])[0]
        if predicted.error is not None:
            raise predicted.error
        return self.finish(frame, predicted, outputs)

    def finish(self, frame: FrameInput, predicted: Predicted, outputs: Outputs | None = None) -> FrameResult:
        """The chain after the networks: alignment, confidence, rectification, cloud. timings_ms["pipeline"]
        counts this frame's share of the forward it went through (the predictors' totals) and the rest."""
        outputs = outputs or Outputs()
        cfg = self.config  # one snapshot per frame: parameters may change while it runs
        timings_ms: dict[str, float] = dict(predicted.timings_ms)
        relative, normals = predicted.relative, predicted.normals
        t0 = time.perf_counter()

        depth_m, report, sparse = self._metric_depth(cfg, frame, relative)
        t2 = time.perf_counter()
        timings_ms["align"] = (t2 - t0) * 1e3

        # Confidence and the flying-pixel mask, in the geometry the sparse points were projected into.
        want_cloud = outputs.cloud and depth_m is not None
        confidence, edges = self._confidence(cfg, depth_m, sparse, want_confidence=outputs.confidence,
                                             want_cloud=want_cloud)
        t_conf = time.perf_counter()
        timings_ms["confidence"] = (t_conf - t2) * 1e3

        # Outputs in the rectified geometry of P (what depth_image_proc and RViz assume), or the input's own.
        camera, rgb, rectified = frame.camera, frame.rgb, cfg.image_rectified
        rectifier = self._rectifier(cfg, frame.camera)
        if rectifier is not None:
            camera, rectified = rectifier.camera, True
            depth_m = rectifier.depth(depth_m) if depth_m is not None else None
            relative = rectifier.relative(relative) if relative is not None else None
            normals = rectifier.normals(normals) if normals is not None else None
            confidence = rectifier.relative(confidence) if confidence is not None else None
            edges = rectifier.mask(edges) if edges is not None else None
            rgb = rectifier.image(rgb) if outputs.cloud and cfg.cloud_rgb and depth_m is not None else rgb
        t3 = time.perf_counter()
        timings_ms["rectify"] = (t3 - t_conf) * 1e3

        cloud = kept = None
        if want_cloud and depth_m is not None:
            kept = cloud_keep_mask(depth_m, edges if cfg.cloud_edge_filter else None, confidence,
                                   cfg.cloud_min_confidence)
            cloud_depth = depth_m if kept.all() else np.where(kept, depth_m, np.float32(np.nan))
            cloud = cloud_arrays(
                cloud_depth, camera,
                rgb=rgb if cfg.cloud_rgb else None,
                normals=normals if cfg.cloud_normals else None,
                stride=cfg.cloud_stride,
                max_range_m=cfg.cloud_max_range or cfg.max_depth,
                rectified=rectified,
            )
        timings_ms["cloud"] = (time.perf_counter() - t3) * 1e3
        network_ms = timings_ms.get("depth.total", 0.0) + timings_ms.get("normals.total", 0.0)
        timings_ms["pipeline"] = (time.perf_counter() - t0) * 1e3 + network_ms
        return FrameResult(frame.stamp_ns, camera, relative, self.space if relative is not None else None,
                           depth_m, normals, cloud, report, timings_ms,
                           confidence if outputs.confidence else None, kept)

    # -- steps ---------------------------------------------------------------------------------------------

    def _resolve_space(self, config: NodeConfig) -> Space | None:
        if self.models.depth is None:
            return None
        if config.space != "auto":
            return Space(config.space)
        return Space(self.models.depth.space or Space.DEPTH)

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

    def _metric_depth(self, cfg: NodeConfig, frame: FrameInput, relative: np.ndarray | None
                      ) -> tuple[np.ndarray | None, AlignmentReport, SparsePoints | None]:
        space, aligner = self.space, self.aligner  # read once: update_config may replace them meanwhile
        if relative is None or space is None:
            return None, AlignmentReport(AlignmentState.NO_DEPTH_MODEL, AlignmentMethod.OFF), None
        sparse = self._sparse(cfg, frame) if aligner.settings.method != AlignmentMethod.OFF else None
        out = aligner.align(relative, space, None if sparse is None else sparse.uv,
                            None if sparse is None else sparse.z_m, frame.stamp_ns)
        if sparse is not None:
            out.report.dropped_points = sparse.dropped
        return out.depth_m, out.report, sparse
