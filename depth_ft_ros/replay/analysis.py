"""What the replay learns from the node's outputs as they arrive: per-frame arrival times, the scale/shift that
maps depth/relative onto depth, metrics against the bag's ground truth, and the arrays the previews need.

Messages are decoded exactly as a subscriber would (rclpy deserialization + depth_ft_ros.msgs.convert); each
frame's arrays are freed as soon as its numbers are computed, so long bags do not grow memory.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image, PointCloud2

from depth_ft_ros.errors import InputError
from depth_ft_ros.evaluation.metrics import cloud_split_metrics, depth_metrics
from depth_ft_ros.frame.sync import nearest_index
from depth_ft_ros.msgs import convert, names
from depth_ft_ros.replay.messages import COMPRESSED_IMAGE, stamp_ns_from_cdr
from depth_ft_ros.replay.report import FrameRecord, affine_from_outputs

GT_MATCH_NS = 5_000_000  # a ground-truth image belongs to a frame when their stamps are this close
MAX_PENDING = 16  # frames with one of depth / depth/relative decoded, waiting for the other


class OutputAnalyzer:
    """Fed from the executor thread (outputs) and the playing thread (inputs); thread-safe."""

    def __init__(self, frames: list[FrameRecord], namespace: str, space: str, preview_indices: list[int]) -> None:
        self._records = {(f.camera, f.stamp_ns): f for f in frames}
        self._cameras = {f.camera for f in frames} - {""}
        self._prefix = "/" + namespace.strip("/") + "/"
        self._space = space
        self._preview = set(preview_indices)
        self._lock = threading.Lock()
        self._gt_stamps: dict[str, list[int]] = {}  # per camera
        self._gt: dict[tuple[str, int], bytes] = {}
        self._pending: dict[int, dict[str, np.ndarray]] = {}  # frame index -> decoded outputs awaiting their pair
        self._split_parts: dict[int, dict[str, np.ndarray]] = {}  # frame index -> depth, ground truth, cloud mask
        self.previews: dict[int, dict[str, np.ndarray]] = {}  # frame index -> rgb, depth, normals, gt
        self.warnings: list[str] = []
        self.gt_skipped = 0

    # -- inputs (playing thread) ---------------------------------------------------------------------------

    def add_ground_truth(self, data: bytes, camera: str = "") -> None:
        stamp_ns = stamp_ns_from_cdr(data)
        with self._lock:
            bisect.insort(self._gt_stamps.setdefault(camera, []), stamp_ns)
            self._gt[(camera, stamp_ns)] = bytes(data)

    def image_sent(self, record: FrameRecord, data: bytes, msgtype: str) -> None:
        if record.index in self._preview:
            msg = deserialize_message(data, CompressedImage if msgtype == COMPRESSED_IMAGE else Image)
            rgb = convert.compressed_to_rgb(msg) if msgtype == COMPRESSED_IMAGE else convert.image_to_rgb(msg)
            with self._lock:
                self.previews.setdefault(record.index, {})["rgb"] = np.array(rgb)

    # -- outputs (executor thread) -------------------------------------------------------------------------

    def on_output(self, topic: str, msgtype: str, data: bytes, arrival_s: float) -> None:
        """Runs in the executor thread: an exception here would stop the spin and stall the replay, so an
        output that cannot be analysed becomes a warning in the summary (it is still recorded)."""
        try:
            self._analyse_output(topic, data, arrival_s)
        except Exception as exc:
            with self._lock:
                message = f"could not analyse an output on {topic}: {exc}"
                if message not in self.warnings:
                    self.warnings.append(message)

    def _analyse_output(self, topic: str, data: bytes, arrival_s: float) -> None:
        if not topic.startswith(self._prefix):  # /diagnostics: not a per-frame output
            return
        name = topic[len(self._prefix):]
        camera, _, rest = name.partition("/")
        camera, name = (camera, rest) if camera in self._cameras else ("", name)
        try:
            stamp_ns = stamp_ns_from_cdr(data)
        except InputError:
            return
        record = self._records.get((camera, stamp_ns))
        if record is None:  # a stamp that is not one of the bag's frames
            return
        with self._lock:
            record.arrivals_s.setdefault(name, arrival_s)
        if name in (names.DEPTH_IMAGE, names.DEPTH_RELATIVE):
            image = deserialize_message(data, Image)
            array = convert.depth_image_to_metres(image) if name == names.DEPTH_IMAGE else np.array(
                convert.image_to_array(image), dtype=np.float32)
            self._keep(record, name, array)
        elif name == names.POINTS:
            cloud = convert.pointcloud2_to_xyz(deserialize_message(data, PointCloud2))
            with self._lock:
                self._cloud_split(record, kept=np.isfinite(cloud[:, 2]))
        elif name == names.DEPTH_CONFIDENCE and record.index in self._preview:
            confidence = np.array(convert.image_to_array(deserialize_message(data, Image)), dtype=np.float32)
            with self._lock:
                self.previews.setdefault(record.index, {})["confidence"] = confidence
        elif name == names.NORMALS_IMAGE and record.index in self._preview:
            normals = np.array(convert.image_to_array(deserialize_message(data, Image)), dtype=np.float32)
            with self._lock:
                self.previews.setdefault(record.index, {})["normals"] = normals

    def _keep(self, record: FrameRecord, name: str, array: np.ndarray) -> None:
        with self._lock:
            pending = self._pending.setdefault(record.index, {})
            pending[name] = array
            if name == names.DEPTH_IMAGE:
                self._score(record, array)
                if record.index in self._preview:
                    self.previews.setdefault(record.index, {})["depth"] = array
            if names.DEPTH_IMAGE in pending and names.DEPTH_RELATIVE in pending:
                record.scale, record.shift, record.fit_residual_rel = affine_from_outputs(
                    pending[names.DEPTH_IMAGE], pending[names.DEPTH_RELATIVE], self._space)
                del self._pending[record.index]
            while len(self._pending) > MAX_PENDING:  # a frame whose pair never came (e.g. no fit): forget it
                del self._pending[min(self._pending)]

    def _score(self, record: FrameRecord, depth_m: np.ndarray) -> None:
        """Metrics vs the nearest ground truth (called with the lock held)."""
        stamps = self._gt_stamps.get(record.camera, [])
        i = nearest_index(stamps, record.stamp_ns, GT_MATCH_NS)
        if i is None:
            return
        data = self._gt.pop((record.camera, stamps.pop(i)))
        gt = convert.depth_image_to_metres(deserialize_message(data, Image))
        if gt.shape != depth_m.shape:
            self.gt_skipped += 1
            msg = f"ground truth is {gt.shape[1]}x{gt.shape[0]}, depth {depth_m.shape[1]}x{depth_m.shape[0]}: " \
                  "frames not scored"
            if msg not in self.warnings:
                self.warnings.append(msg)
            return
        record.metrics = depth_metrics(depth_m, gt)
        self._cloud_split(record, depth_m=depth_m, gt_m=gt)
        if record.index in self._preview:
            self.previews.setdefault(record.index, {})["gt"] = gt

    def _cloud_split(self, record: FrameRecord, **parts: np.ndarray) -> None:
        """AbsRel vs ground truth of the pixels the cloud kept and of those its filters dropped (flying pixels,
        low confidence), once a frame's depth, ground truth and cloud are all in (called with the lock held)."""
        have = self._split_parts.setdefault(record.index, {})
        have.update(parts)
        if not {"depth_m", "gt_m", "kept"} <= set(have):
            while len(self._split_parts) > MAX_PENDING:
                del self._split_parts[min(self._split_parts)]
            return
        del self._split_parts[record.index]
        depth_m, gt_m, kept = have["depth_m"], have["gt_m"], have["kept"]
        if kept.size != depth_m.size:
            return  # a strided cloud: no per-pixel split
        record.metrics.update(cloud_split_metrics(depth_m, gt_m, kept))

    def preview_frames(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return dict(self.previews)
