"""One step of the frame path, without ROS: every camera's frame through the shared networks, then each camera's
finishing. The node, the bag replay and batch engines drive this same object; they only decode inputs and deliver
outputs. Read `FrameProcessor.__call__` top to bottom:

    CameraFrame per camera: rgb [H, W, 3] uint8, PinholeCamera, stamp, sparse points and their extrinsics
      1. check_inputs     refuse what no stage can use                      -> FrameFailure(bad_input, check)
      2. networks         frames of one processing size in one forward     relative [H, W] in [0, 1], normals [H, W, 3]
                          (model/networks.py)
      per camera, with its own state (MetricAligner with its temporal filter, rectification maps):
      3. sparse           points (N, 3) -> camera frame -> pixels uv (M, 2), z_m (M,)   (geometry/sparse.py)
      4. align            MetricAligner -> depth_m [H, W] (NaN invalid)     (alignment/aligner.py)
      5. confidence       confidence [H, W] in [0, 1], depth-edge mask      (alignment/confidence.py)
      6. rectify          raw -> the rectified geometry of P                (geometry/rectify.py)
      7. cloud            organized structured array [H/stride, W/stride]  (geometry/cloud.py)
    -> FrameResult per camera (or the FrameFailure that stopped it)

One configuration per step: `__call__(frames, config)` runs every stage of every frame with the config it is
given; a changed config reconfigures the aligners before the step (their temporal state is kept unless the
filter's settings change). Not thread-safe: one thread drives a processor (the node's worker).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from depth_ft_ros.alignment.aligner import AlignmentReport, MetricAligner, aligner_settings
from depth_ft_ros.alignment.confidence import ConfidenceSettings, cloud_keep_mask, confidence_map, depth_edges
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import AlignmentMethod, AlignmentState, DropReason, Space
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.failure import FrameFailure, Stage
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.cloud import cloud_arrays
from depth_ft_ros.geometry.rectify import Rectifier, needs_rectification
from depth_ft_ros.geometry.sparse import (
    DROP_REASONS,
    SparsePoints,
    project_sparse_points,
    sparse_from_depth_image,
    transform_points,
)
from depth_ft_ros.model.networks import Models, Predicted

MIN_PROCESSED_SIDE_PX = 8  # one latent pixel: an image that shrinks below this at processing_resolution is refused


@dataclass
class Outputs:
    """Which outputs someone wants: the ones nobody wants are not computed."""

    normals: bool = True
    cloud: bool = True
    confidence: bool = False


@dataclass
class CameraFrame:
    """One camera's decoded inputs for one step."""

    rgb: np.ndarray  # [H, W, 3] uint8 RGB
    camera: PinholeCamera  # intrinsics of `rgb` (scaled to its size)
    stamp_ns: int
    camera_name: str = ""  # "" for the single camera, else its name in NodeConfig.cameras
    frame_id: str = ""  # optical frame of every output
    points_m: np.ndarray | None = None  # (N, 3) metric points (a LiDAR sweep) in their own frame
    T_camera_points: np.ndarray | None = None  # 4x4: points' frame -> camera optical frame (None: already there)
    sparse_depth_m: np.ndarray | None = None  # [H', W'] metric sparse depth registered to the camera, NaN = none
    outputs: Outputs = field(default_factory=Outputs)


@dataclass
class FrameResult:
    camera_name: str
    frame_id: str
    stamp_ns: int
    camera: PinholeCamera  # of every image output (the input's size; the rectified camera when rectified)
    relative: np.ndarray | None  # affine-invariant depth or disparity in [0, 1]
    space: Space | None
    depth_m: np.ndarray | None  # metric, NaN invalid; None when no fit is available
    normals: np.ndarray | None  # [H, W, 3] unit vectors, optical frame
    cloud: np.ndarray | None  # organized structured array (x, y, z[, rgb][, normal_x/y/z])
    alignment: AlignmentReport
    timings_ms: dict[str, float]  # network stages (this frame's share) and each finishing stage, in run order
    confidence: np.ndarray | None = None  # [H, W] in [0, 1], same geometry as depth_m (computed when wanted)
    cloud_kept: np.ndarray | None = None  # [H, W] bool: pixels the cloud keeps (edge filter, min confidence)
    batch_size: int = 1  # frames in the forward this one went through


@dataclass
class _CameraState:
    """What one camera keeps from frame to frame."""

    aligner: MetricAligner
    rectifier: tuple[PinholeCamera, Rectifier | None] | None = None  # maps built once per camera object


class FrameProcessor:
    def __init__(self, networks: Models, config: NodeConfig) -> None:
        self.networks = networks
        self._config = config
        self._settings = aligner_settings(config)
        self._cameras: dict[str, _CameraState] = {}

    @property
    def config(self) -> NodeConfig:
        """The configuration of the last step (or the initial one)."""
        return self._config

    def space(self, config: NodeConfig | None = None) -> Space | None:
        """What the relative map is: the space parameter, or the depth checkpoint's own (auto)."""
        cfg = config or self._config
        if self.networks.depth is None:
            return None
        if cfg.space != "auto":
            return Space(cfg.space)
        return Space(self.networks.depth.space or Space.DEPTH)

    def aligner(self, camera_name: str) -> MetricAligner:
        """The camera's aligner (its temporal state), made on its first frame."""
        state = self._camera(camera_name)
        return state.aligner

    def wants_normals(self, outputs: Outputs, config: NodeConfig | None = None) -> bool:
        """Whether a frame needs the normals network (normals topics, or the cloud's normal fields)."""
        cfg = config or self._config
        return self.networks.normals is not None and (outputs.normals or (outputs.cloud and cfg.cloud_normals))

    # -- the step -------------------------------------------------------------------------------------------

    def __call__(self, frames: list[CameraFrame], config: NodeConfig | None = None
                 ) -> list[FrameResult | FrameFailure]:
        """One step: the newest frame of each camera (at most one per camera), in stamp order per camera."""
        cfg = config or self._config
        if cfg is not self._config:
            self.reconfigure(cfg)
        out: list[FrameResult | FrameFailure | None] = [None] * len(frames)

        # 1. Inputs every stage can use; a refused frame fails alone.
        ready: list[int] = []
        for index, frame in enumerate(frames):
            try:
                self.check_inputs(frame)
                ready.append(index)
            except FrameFailure as failure:
                out[index] = failure

        # 2. Networks: frames of one processing size share a forward (at most max_batch frames).
        predicted = self.networks.predict([frames[i].rgb for i in ready],
                                          [self.wants_normals(frames[i].outputs, cfg) for i in ready], cfg.max_batch)

        # 3-7. Each camera's finishing, with its own state.
        for index, pred in zip(ready, predicted, strict=True):
            frame = frames[index]
            if pred.error is not None:
                out[index] = _failure(pred.error, Stage.NETWORKS, frame)
                continue
            out[index] = self._finish(cfg, frame, pred)
        return [item for item in out if item is not None]

    def process(self, frame: CameraFrame, outputs: Outputs | None = None,
                config: NodeConfig | None = None) -> FrameResult:
        """One camera's frame on its own (a step of one); raises the FrameFailure that stopped it."""
        if outputs is not None:
            frame.outputs = outputs
        result = self([frame], config)[0]
        if isinstance(result, FrameFailure):
            raise result
        return result

    def check_inputs(self, frame: CameraFrame) -> None:
        """Refuse, naming the field, a frame that no stage can use. Raises FrameFailure(bad_input, check)."""
        rgb = frame.rgb
        problem = ""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            shape = getattr(rgb, "shape", None)
            problem = f"image must be HxWx3 uint8 RGB, got shape {shape} dtype {getattr(rgb, 'dtype', None)}"
        elif rgb.shape[0] < 1 or rgb.shape[1] < 1:
            problem = f"image is empty ({rgb.shape[1]}x{rgb.shape[0]})"
        elif (frame.camera.image_width, frame.camera.image_height) != (rgb.shape[1], rgb.shape[0]):
            problem = (f"camera is {frame.camera.image_width}x{frame.camera.image_height} but the image is "
                       f"{rgb.shape[1]}x{rgb.shape[0]}")
        else:
            height, width = self.networks.processing_size(rgb)
            if min(height, width) < MIN_PROCESSED_SIDE_PX:
                problem = (f"image width x height {rgb.shape[1]}x{rgb.shape[0]} becomes {width}x{height} at the "
                           f"network's processing size: each side must keep at least {MIN_PROCESSED_SIDE_PX} px "
                           "(aspect ratio too extreme for this processing_resolution)")
        if problem:
            raise FrameFailure(DropReason.BAD_INPUT, Stage.CHECK, problem, camera_name=frame.camera_name,
                               stamp_ns=frame.stamp_ns)

    # -- per camera -----------------------------------------------------------------------------------------

    def _finish(self, cfg: NodeConfig, frame: CameraFrame, pred: Predicted) -> FrameResult | FrameFailure:
        state = self._camera(frame.camera_name)
        timings_ms = dict(pred.timings_ms)
        relative, normals = pred.relative, pred.normals
        space = self.space(cfg) if relative is not None else None
        want_cloud = frame.outputs.cloud
        stage = Stage.SPARSE
        try:
            # 3. Sparse points -> pixels of this image.
            t0 = time.perf_counter()
            aligning = relative is not None and space is not None and state.aligner.settings.method != "off"
            sparse = self._sparse(cfg, frame) if aligning else None
            t1 = time.perf_counter()
            timings_ms["sparse"] = (t1 - t0) * 1e3

            # 4. Metric depth.
            stage = Stage.ALIGN
            if relative is None or space is None:
                depth_m, report = None, AlignmentReport(AlignmentState.NO_DEPTH_MODEL, AlignmentMethod.OFF)
            else:
                aligned = state.aligner.align(relative, space, None if sparse is None else sparse.uv,
                                              None if sparse is None else sparse.z_m, frame.stamp_ns)
                depth_m, report = aligned.depth_m, aligned.report
                if sparse is not None:
                    report.dropped_points = sparse.dropped
                    report.reason = _with_drop_reasons(report.reason, sparse)
            t2 = time.perf_counter()
            timings_ms["align"] = (t2 - t1) * 1e3

            # 5. Confidence and the flying-pixel mask, in the geometry the points were projected into.
            stage = Stage.CONFIDENCE
            confidence, edges = _confidence(cfg, depth_m, sparse, want_confidence=frame.outputs.confidence,
                                            want_cloud=want_cloud)
            t3 = time.perf_counter()
            timings_ms["confidence"] = (t3 - t2) * 1e3

            # 6. Outputs in the rectified geometry of P (what depth_image_proc and RViz assume), or the input's.
            stage = Stage.RECTIFY
            camera, rgb, rectified = frame.camera, frame.rgb, cfg.image_rectified
            rectifier = self._rectifier(cfg, state, frame.camera)
            if rectifier is not None:
                camera, rectified = rectifier.camera, True
                depth_m = rectifier.depth(depth_m) if depth_m is not None else None
                relative = rectifier.relative(relative) if relative is not None else None
                normals = rectifier.normals(normals) if normals is not None else None
                confidence = rectifier.relative(confidence) if confidence is not None else None
                edges = rectifier.mask(edges) if edges is not None else None
                rgb = rectifier.image(rgb) if want_cloud and cfg.cloud_rgb and depth_m is not None else rgb
            t4 = time.perf_counter()
            timings_ms["rectify"] = (t4 - t3) * 1e3

            # 7. The organized cloud, without flying pixels and low-confidence points.
            stage = Stage.CLOUD
            cloud = kept = None
            if want_cloud and depth_m is not None:
                kept = cloud_keep_mask(depth_m, edges if cfg.cloud_edge_filter else None, confidence,
                                       cfg.cloud_min_confidence)
                cloud = cloud_arrays(depth_m, camera, rgb=rgb if cfg.cloud_rgb else None,
                                     normals=normals if cfg.cloud_normals else None, stride=cfg.cloud_stride,
                                     max_range_m=cfg.cloud_max_range or cfg.max_depth, rectified=rectified,
                                     keep=kept)
            t5 = time.perf_counter()
            timings_ms["cloud"] = (t5 - t4) * 1e3
        except Exception as exc:
            return _failure(exc, stage, frame)
        network_ms = timings_ms.get("depth.total", 0.0) + timings_ms.get("normals.total", 0.0)
        timings_ms["pipeline"] = (t5 - t0) * 1e3 + network_ms
        return FrameResult(frame.camera_name, frame.frame_id, frame.stamp_ns, camera, relative, space, depth_m,
                           normals, cloud, report, timings_ms,
                           confidence if frame.outputs.confidence else None, kept, pred.batch_size)

    def _camera(self, camera_name: str) -> _CameraState:
        state = self._cameras.get(camera_name)
        if state is None:
            state = self._cameras[camera_name] = _CameraState(MetricAligner(self._settings))
        return state

    def reconfigure(self, config: NodeConfig) -> None:
        """Between steps: the aligners keep their temporal state unless the filter's settings change."""
        self._settings = aligner_settings(config)
        for state in self._cameras.values():
            state.aligner = state.aligner.reconfigured(self._settings)
        self._config = config

    @staticmethod
    def _sparse(cfg: NodeConfig, frame: CameraFrame) -> SparsePoints | None:
        if frame.points_m is not None:
            points_cam_m = frame.points_m
            if frame.T_camera_points is not None:
                points_cam_m = transform_points(points_cam_m, frame.T_camera_points)
            return project_sparse_points(points_cam_m, frame.camera, rectified=cfg.image_rectified,
                                         min_depth_m=cfg.min_depth, max_depth_m=cfg.max_depth,
                                         filter_see_through=cfg.see_through_margin > 0,
                                         see_through_margin_m=cfg.see_through_margin)
        if frame.sparse_depth_m is not None:
            return sparse_from_depth_image(frame.sparse_depth_m, "32FC1", target_size=frame.rgb.shape[1::-1])
        return None

    @staticmethod
    def _rectifier(cfg: NodeConfig, state: _CameraState, camera: PinholeCamera) -> Rectifier | None:
        """The raw -> rectified maps of this camera, or None when the outputs stay in the input's geometry."""
        if not cfg.rectify_outputs or cfg.image_rectified:
            return None
        if state.rectifier is None or state.rectifier[0] is not camera:
            state.rectifier = (camera, Rectifier.for_camera(camera) if needs_rectification(camera) else None)
        return state.rectifier[1]


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


def _with_drop_reasons(reason: str, sparse: SparsePoints) -> str:
    """A fit refused for want of points says where the points went: "all 5000 points dropped: 5000 behind the
    camera ..." with a hint when the extrinsics are the likely cause."""
    if sparse.n > 0 or sparse.n_input == 0 or not reason:
        return reason
    counts = {name: count for name, count in sparse.dropped.items() if count}
    parts = ", ".join(f"{count} {DROP_REASONS[name].split(' (')[0]}" if name not in ("behind_camera", "outside_image")
                      else f"{count} {name.replace('_', ' ')}" for name, count in counts.items())
    hint = ""
    if counts.get("behind_camera", 0) + counts.get("outside_image", 0) == sparse.n_input:
        hint = "; check the sparse points' extrinsics (static_translation/static_rotation or tf)"
    return f"{reason}: all {sparse.n_input} points dropped ({parts}){hint}"


def _failure(exc: BaseException, stage: Stage, frame: CameraFrame) -> FrameFailure:
    if isinstance(exc, FrameFailure):
        return exc
    kind = DropReason.BAD_INPUT if isinstance(exc, InputError) else DropReason.INTERNAL_ERROR
    return FrameFailure(kind, stage, str(exc) if kind is DropReason.BAD_INPUT else repr(exc),
                        camera_name=frame.camera_name, stamp_ns=frame.stamp_ns, cause=exc)


__all__ = ["CameraFrame", "FrameFailure", "FrameProcessor", "FrameResult", "Outputs", "Stage", "aligner_settings"]
