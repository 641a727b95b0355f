"""Bag frames -> training samples at the processing resolution, the held-out split, and augmentation.

A sample holds what one step needs, already at the size the network sees (before padding): the image in
[-1, 1] (core.network_input, the predictor's preprocessing), the LiDAR depth on that pixel grid (each point
moved to the processing grid as cv2.resize maps pixel centres, nearest point per pixel:
core.sparse.sparse_from_depth_image) and, for normals models, normals from the dense ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from depth_ft_ros.geometry.sparse import SparsePoints, sparse_from_depth_image
from depth_ft_ros.model.families import NormalsFrame
from depth_ft_ros.model.network_input import pad_to_multiple, processing_size, to_network_input
from depth_ft_ros.training.bag_frames import BagFrame
from depth_ft_ros.training.losses import flip_horizontal, normals_from_depth

JITTER = 0.2  # brightness, contrast and saturation factors drawn from [1 - JITTER, 1 + JITTER]


@dataclass
class TrainSample:
    image: torch.Tensor  # [3, h, w] float32 in [-1, 1]
    depth_m: torch.Tensor  # [1, h, w] float32 metric target, NaN where there is none
    normals: torch.Tensor | None  # [3, h, w] unit normals in the model's frame, NaN where there are none

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])


def sparse_image(points: SparsePoints) -> np.ndarray:
    """HxW float32 metres at the points' pixels, NaN elsewhere."""
    width, height = points.image_size
    depth = np.full((height, width), np.nan, dtype=np.float32)
    depth[points.uv[:, 1], points.uv[:, 0]] = points.z_m
    return depth


def make_sample(frame: BagFrame, processing_resolution: int, normals_frame: NormalsFrame | None) -> TrainSample:
    """One frame at the processing size. normals_frame: the model's frame for a normals model (the targets
    come from the dense ground truth), None for a depth model."""
    height, width = frame.rgb.shape[:2]
    h, w = processing_size(height, width, processing_resolution)
    image = to_network_input(torch.from_numpy(frame.rgb)[None], processing_resolution)[0]
    sparse = sparse_from_depth_image(sparse_image(frame.lidar), "32FC1", target_size=(w, h))
    normals = None
    if normals_frame is not None:
        if frame.gt_depth_m is None:
            raise ValueError(f"{frame.bag}: frame at {frame.stamp_ns / 1e9:.3f} s has no dense ground truth; "
                             "a normals model is fine-tuned on normals from a ground-truth depth topic")
        # The ground truth sampled at the processing grid's pixel centres (never mixing depths across edges).
        rows = np.floor((np.arange(h) + 0.5) * height / h).astype(np.int64)
        cols = np.floor((np.arange(w) + 0.5) * width / w).astype(np.int64)
        gt = frame.gt_depth_m[rows[:, None], cols[None, :]]
        optical = normals_from_depth(gt, frame.camera.scaled(w, h))
        signs = np.asarray(normals_frame.to_optical, dtype=np.float32)  # +-1 per axis: its own inverse
        normals = torch.from_numpy(np.ascontiguousarray((optical * signs).transpose(2, 0, 1)))
    return TrainSample(image=image, depth_m=torch.from_numpy(sparse_image(sparse))[None], normals=normals)


def split_by_time(frames: list[BagFrame], val_fraction: float) -> tuple[list[BagFrame], list[BagFrame]]:
    """(train, held-out): per bag, the last val_fraction of its frames in time are held out (at least one
    each side when the bag has two frames or more)."""
    train: list[BagFrame] = []
    held: list[BagFrame] = []
    for bag in dict.fromkeys(f.bag for f in frames):
        own = sorted((f for f in frames if f.bag == bag), key=lambda f: f.stamp_ns)
        n_held = min(max(round(len(own) * val_fraction), 1), len(own) - 1) if len(own) > 1 else 0
        train += own[: len(own) - n_held]
        held += own[len(own) - n_held:]
    return train, held


def split_points(points: SparsePoints, seed: int = 0) -> tuple[SparsePoints, SparsePoints]:
    """(fit, evaluation) halves of a frame's points, drawn at random with a fixed seed: validation aligns with
    the first and scores against the second, which the fit never saw."""
    order = np.random.default_rng(seed).permutation(points.n)
    fit, held = np.sort(order[: points.n // 2]), np.sort(order[points.n // 2:])

    def subset(index: np.ndarray) -> SparsePoints:
        return SparsePoints(uv=points.uv[index], z_m=points.z_m[index], n_input=int(index.size),
                            image_size=points.image_size)

    return subset(fit), subset(held)


def augment(sample: TrainSample, generator: torch.Generator) -> TrainSample:
    """Random horizontal flip (p = 0.5) and photometric jitter (brightness, contrast, saturation)."""
    image, depth, normals = sample.image, sample.depth_m, sample.normals
    if bool(torch.rand((), generator=generator) < 0.5):
        image, depth = flip_horizontal(image), flip_horizontal(depth)
        normals = flip_horizontal(normals, normals=True) if normals is not None else None
    factors = 1.0 + (torch.rand(3, generator=generator) * 2.0 - 1.0) * JITTER
    rgb = (image + 1.0) / 2.0
    rgb = rgb * factors[0]
    rgb = (rgb - rgb.mean()) * factors[1] + rgb.mean()
    gray = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]
    rgb = (rgb - gray) * factors[2] + gray
    return TrainSample(image=rgb.clamp(0.0, 1.0) * 2.0 - 1.0, depth_m=depth, normals=normals)


def collate(samples: list[TrainSample], pad_multiple: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Samples of one size -> (image, depth_m, normals) batches padded bottom/right to pad_multiple: the image
    by replication (as the predictor), the targets with NaN (no target in the padding)."""
    image = torch.stack([s.image for s in samples])
    depth = torch.stack([s.depth_m for s in samples])
    normals = None
    if samples[0].normals is not None:
        stacked = torch.stack([s.normals for s in samples if s.normals is not None])
        normals = pad_to_multiple(stacked, pad_multiple, value=float("nan"))
    return (pad_to_multiple(image, pad_multiple), pad_to_multiple(depth, pad_multiple, value=float("nan")),
            normals)
