"""Named values that travel between modules: the configuration's choices (NodeConfig holds these members, parsed
from the parameter strings), alignment state and method, prediction space, and why a frame was dropped.

str Enums: they compare equal to, and hash as, their text ("fitted" == AlignmentState.FITTED, {"local": 1}[
AlignmentMethod.LOCAL]), so configuration files, diagnostics keys and callers holding plain strings keep working,
and they format as their text on every Python (3.11 changed format() of mixed-in enums, hence the explicit
__str__/__format__).
"""

from __future__ import annotations

from enum import Enum

from depth_ft_ros.errors import InputError


class TextEnum(str, Enum):
    """A str Enum that prints and formats as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __hash__(self) -> int:  # as its text: a member finds the entry of its text in a dict, and the reverse
        return hash(str(self.value))


class Space(TextEnum):
    """Space of an affine-invariant prediction: metric = s*p + t (depth) or 1/metric = s*p + t (disparity)."""

    DEPTH = "depth"
    DISPARITY = "disparity"

    @classmethod
    def parse(cls, value: str, what: str = "alignment space") -> Space:
        """The member for `value`; InputError naming `what` and the allowed values otherwise."""
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise InputError(f"{what} must be one of {allowed}, got {value!r}") from None


class AlignmentMethod(TextEnum):
    GLOBAL = "global"  # one scale/shift for the whole frame
    LOCAL = "local"  # global, then a spatially varying correction
    OFF = "off"  # no metric depth

    @classmethod
    def parse(cls, value: str) -> AlignmentMethod:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls if m is not cls.OFF)
            raise InputError(f"alignment method must be {allowed} or 'off', got {value!r}") from None


class AlignmentState(TextEnum):
    FITTED = "fitted"  # this frame's fit (possibly smoothed) gave the metric map
    HELD = "held"  # an earlier fit gave it (no usable fit now, or an unconfirmed jump)
    RELATIVE_ONLY = "relative-only"  # no metric map: no usable fit and nothing (allowed) to hold
    OFF = "off"  # alignment switched off
    NO_DEPTH_MODEL = "no-depth-model"  # nothing to align


# -- the configuration's choices (NodeConfig; the parameter descriptions live in config.py) -------------------


class SpaceSetting(TextEnum):
    """Parameter `space`: the prediction's space, or auto (the checkpoint's own)."""

    AUTO = "auto"
    DEPTH = "depth"
    DISPARITY = "disparity"


class AlignmentFit(TextEnum):
    """Parameter `alignment_fit`: what the global fit solves for."""

    SCALE_SHIFT = "scale_shift"
    SCALE = "scale"


class OnFewPoints(TextEnum):
    """Parameter `on_few_points`: without a usable fit, hold the last one or publish relative depth only."""

    HOLD = "hold"
    RELATIVE = "relative"


class Device(TextEnum):
    AUTO = "auto"
    CUDA = "cuda"
    CPU = "cpu"


class Dtype(TextEnum):
    AUTO = "auto"
    FP16 = "fp16"
    BF16 = "bf16"
    FP32 = "fp32"


class OnnxProbe(TextEnum):
    """Parameter `onnx_probe`: what a failed load-time probe of an ONNX export does."""

    REFUSE = "refuse"
    WARN = "warn"


class ImageTransport(TextEnum):
    RAW = "raw"
    COMPRESSED = "compressed"


class SparseInput(TextEnum):
    """Parameter `sparse_input`: where metric points come from."""

    POINTS = "points"  # sparse_points, PointCloud2
    DEPTH = "depth"  # sparse_depth, Image
    NONE = "none"


class Reliability(TextEnum):
    """Parameters image_qos, camera_info_qos, sparse_qos: match the publishers (auto) or force one."""

    AUTO = "auto"
    RELIABLE = "reliable"
    BEST_EFFORT = "best_effort"


# -- what happened to a frame (NodeStats.drop; /diagnostics `dropped.<reason>`) -------------------------------------


class DropReason(TextEnum):
    """Why an image produced no output. Every drop is counted under one of these (NodeStats.drop)."""

    INACTIVE = "inactive"  # arrived while the node was not active (lifecycle) or its worker stopping
    SUPERSEDED = "superseded"  # a newer image of the camera arrived before the worker took this one
    NO_SUBSCRIBERS = "no_subscribers"  # nobody listens to any output: the models do not run
    NO_CAMERA_INFO = "no_camera_info"  # no camera_info within sync_tolerance of its stamp
    BAD_INPUT = "bad_input"  # the image or its camera_info was refused (named in bad_input.<kind>)
    INTERNAL_ERROR = "internal_error"  # a bug or a broken environment, not the input's fault


class BadInput(TextEnum):
    """Kinds of bad input (the input's fault: named in the warning, counted under /diagnostics `bad_input.<kind>`)."""

    IMAGE = "bad_image"  # the image message (encoding, size, data)
    IMAGE_STAMP = "bad_image_stamp"  # stamped too far ahead of the node's clock
    IMAGE_FRAME_ID = "bad_image_frame_id"  # no frame_id anywhere
    CAMERA_INFO = "bad_camera_info"  # camera_info refused when it arrived
    FRAME = "bad_frame"  # the frame as a whole (e.g. sizes the network cannot take)
    NO_CAMERA_INFO = "no_camera_info"
    STAMP_BACKWARDS = "stamp_backwards"
    SPARSE_MESSAGE = "bad_sparse_message"  # a sparse message whose stamp cannot be read
    SPARSE_POINTS = "bad_sparse_points"
    SPARSE_DEPTH = "bad_sparse_depth"
    SPARSE_POINTS_NON_FINITE = "bad_sparse_points.non_finite"
    SPARSE_DEPTH_NON_FINITE = "bad_sparse_depth.non_finite"
    NO_SPARSE_POINTS = "no_sparse_points"
    NO_TRANSFORM = "no_transform"
    NO_FIT = "no_fit"  # alignment found no usable fit (relative-only)
    INCOMPATIBLE_QOS = "incompatible_qos"
