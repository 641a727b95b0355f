"""The node's metric maps against references computed here, independently of the aligner: a least-squares fit of
the projected LiDAR points (numpy.linalg.lstsq) and the ground truth; and the aligner that is measured
(eval-alignment's scoring, the public align()) is the one that runs (FrameProcessor, the node's path), bit for bit.

Frames: the Middlebury Motorcycle ground truth seen by a model with pixel noise and a smooth distortion that
changes from frame to frame (each map normalised to [0, 1] as the models output it), and a 16-line LiDAR
simulated on the ground truth, with 1 % range noise. The "predictor" replays those maps, so the pipeline's
alignment is all that differs between the paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from depth_ft_ros.alignment.aligner import MetricAligner, align
from depth_ft_ros.cli.eval_alignment import Sparse, align_frame
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.evaluation import lidar_sim
from depth_ft_ros.evaluation.middlebury import load_motorcycle
from depth_ft_ros.evaluation.synthetic import make_relative
from depth_ft_ros.frame.processor import CameraFrame, FrameProcessor, Outputs, aligner_settings
from depth_ft_ros.geometry.sparse import project_sparse_points
from depth_ft_ros.model.networks import Models

N_FRAMES = 4
FRAME_NS = 100_000_000  # 10 Hz


@dataclass
class _Prediction:
    relative: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class _ReplayedPredictor:
    """Stands in for DepthFtPredictor: returns the given relative maps in order."""

    def __init__(self, maps: list[np.ndarray], space: str) -> None:
        self.maps, self.space, self.vae_key, self.calls = maps, space, "replayed", 0

    def predict_group(self, frames: list[np.ndarray], encoded: object = None) -> list[_Prediction]:
        self.calls += len(frames)
        return [_Prediction(self.maps[self.calls - len(frames) + i]) for i in range(len(frames))]

    def processing_size(self, rgb: np.ndarray) -> tuple[int, int]:
        return int(rgb.shape[0]), int(rgb.shape[1])  # native size, as processing_resolution 0

    def close(self) -> None:
        pass


@dataclass
class _Sequence:
    relative: list[np.ndarray]
    points_cam_m: list[np.ndarray | None]


def _sequence(space: str, with_gap: bool = False) -> _Sequence:
    frame = load_motorcycle()
    maps, points = [], []
    for i in range(N_FRAMES):
        p = make_relative(frame.depth_m, "both", space, np.random.default_rng([31, i])).prediction
        maps.append((p - p.min()) / (p.max() - p.min()))
        rng = np.random.default_rng([32, i])
        scan = lidar_sim.lidar_scan(frame.depth_m, frame.camera, 16, rng=rng)
        points.append(None if with_gap and i == 2 else lidar_sim.add_relative_noise(scan, 0.01, rng))
    return _Sequence(maps, points)


def _pipeline(seq: _Sequence, space: str, **params: object) -> FrameProcessor:
    config = NodeConfig(**{"depth_model": "replayed", **params}).validate()  # type: ignore[arg-type]
    return FrameProcessor(Models(_ReplayedPredictor(seq.relative, space), None), config)  # type: ignore[arg-type]


def _projected(points_cam_m: np.ndarray, config: NodeConfig) -> tuple[np.ndarray, np.ndarray]:
    """The sparse input the node derives from a cloud (its projection parameters, written out)."""
    sp = project_sparse_points(points_cam_m, load_motorcycle().camera, rectified=config.image_rectified,
                               min_depth_m=config.min_depth, max_depth_m=config.max_depth,
                               filter_see_through=True, see_through_margin_m=config.see_through_margin)
    return sp.uv, sp.z_m


def _least_squares_map(relative: np.ndarray, uv: np.ndarray, z_m: np.ndarray, space: str) -> np.ndarray:
    """The metric map of an ordinary least-squares fit of the points: z = s*p + t (depth) or 1/z = s*p + t
    (disparity), p the relative map at the points' pixels."""
    p = relative[uv[:, 1], uv[:, 0]].astype(np.float64)
    target = z_m.astype(np.float64) if space == "depth" else 1.0 / z_m.astype(np.float64)
    (scale, shift), *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), target, rcond=None)
    fitted = scale * relative + shift
    return fitted if space == "depth" else 1.0 / fitted


def _absrel(depth_m: np.ndarray, gt_m: np.ndarray) -> float:
    valid = np.isfinite(depth_m) & np.isfinite(gt_m) & (gt_m > 0)
    return float(np.mean(np.abs(depth_m[valid] - gt_m[valid]) / gt_m[valid]))


def _frame_input(seq: _Sequence, i: int) -> CameraFrame:
    frame = load_motorcycle()
    return CameraFrame(rgb=frame.rgb, camera=frame.camera, stamp_ns=i * FRAME_NS, points_m=seq.points_cam_m[i])


@pytest.mark.parametrize("method", ["global", "local"])
@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_pipeline_align_and_eval_give_identical_maps(space: str, method: str) -> None:
    seq = _sequence(space)
    pipe = _pipeline(seq, space, alignment=method)  # the node's defaults otherwise: no smoothing
    cfg = pipe.config
    gt = load_motorcycle().depth_m
    for i in range(N_FRAMES):
        result = pipe.process(_frame_input(seq, i), Outputs(normals=False, cloud=False))
        report = result.alignment
        assert report.state == "fitted" and report.method == method  # a real fit, local not fallen back
        assert report.filter_action in ("init", "smoothed") and result.depth_m is not None
        uv, z = _projected(seq.points_cam_m[i], cfg)  # type: ignore[arg-type]
        assert report.points_used == len(z)
        # Independent references: the least-squares fit of the same points, and the ground truth.
        lstsq = _least_squares_map(seq.relative[i], uv, z, space)
        valid = np.isfinite(result.depth_m) & np.isfinite(lstsq) & (lstsq > 0)
        assert valid.mean() > 0.9
        rel_diff = np.abs(result.depth_m[valid] - lstsq[valid]) / lstsq[valid]
        absrel, absrel_lstsq = _absrel(result.depth_m, gt), _absrel(lstsq, gt)
        if method == "global":  # a robust fit of the same model: close to least squares, no worse against the GT
            assert np.median(rel_diff) < 0.05 and absrel <= 1.05 * absrel_lstsq, (np.median(rel_diff), absrel)
            assert absrel < 0.12
        else:  # the local correction removes most of the smooth distortion one global fit cannot
            assert absrel < 0.03 and absrel < absrel_lstsq / 4, (absrel, absrel_lstsq)
        # eval-alignment scores, and align() returns, exactly what the node publishes.
        public = align(seq.relative[i], uv, z, space, method, min_depth=cfg.min_depth, max_depth=cfg.max_depth)
        np.testing.assert_array_equal(result.depth_m, public)
        scored = align_frame(seq.relative[i], Sparse(uv, z), space, method).depth_m
        np.testing.assert_array_equal(result.depth_m, scored)


@pytest.mark.parametrize("method", ["global", "local"])
def test_with_smoothing_and_a_frame_without_points_the_stream_paths_agree(method: str) -> None:
    space = "depth"
    seq = _sequence(space, with_gap=True)
    pipe = _pipeline(seq, space, alignment=method, smoothing_seconds=0.5, on_few_points="hold")
    stream = MetricAligner(aligner_settings(pipe.config))  # the eval / replay way to run a stream
    states = []
    previous = (np.nan, np.nan)
    for i in range(N_FRAMES):
        result = pipe.process(_frame_input(seq, i), Outputs(normals=False, cloud=False))
        points = seq.points_cam_m[i]
        uv, z = _projected(points, pipe.config) if points is not None else (None, None)
        expected = stream.align(seq.relative[i], space, uv, z, i * FRAME_NS)
        assert result.depth_m is not None and expected.depth_m is not None
        np.testing.assert_array_equal(result.depth_m, expected.depth_m)
        assert (result.alignment.scale, result.alignment.shift) == (expected.report.scale, expected.report.shift)
        states.append((result.alignment.state, result.alignment.filter_action))
        if i == 1:  # the filter acted: the smoothed map is not this frame's own fit
            assert uv is not None and z is not None
            own = align(seq.relative[i], uv, z, space, method, pipe.config.min_depth, pipe.config.max_depth)
            assert not np.array_equal(result.depth_m, own, equal_nan=True)
        if i == 2:  # no points: the last smoothed scale/shift, held unchanged
            assert (result.alignment.scale, result.alignment.shift) == previous
        previous = (result.alignment.scale, result.alignment.shift)
    assert states == [("fitted", "init"), ("fitted", "smoothed"), ("held", "held"), ("fitted", "smoothed")]
