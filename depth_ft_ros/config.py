"""The node's configuration, validated without ROS.

Every field is a ROS parameter of the same name (depth_ft_ros.node.params declares them from this table), so
the names, defaults, ranges and descriptions live in one place and invalid values fail at start with a message
that names the parameter and the allowed values. A choice is held as its TextEnum member (enums.py), parsed once
from the parameter's string; members equal their text, so code comparing with strings keeps working.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from depth_ft_ros.enums import (
    AlignmentFit,
    AlignmentMethod,
    Device,
    Dtype,
    ImageTransport,
    OnFewPoints,
    OnnxProbe,
    Reliability,
    SpaceSetting,
    SparseInput,
    TextEnum,
)
from depth_ft_ros.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """How one configuration field is exposed and checked."""

    description: str
    choices: tuple[str, ...] = ()
    enum: type[TextEnum] | None = None  # a choice: NodeConfig holds the member (parsed once, in __post_init__)
    min_value: float | None = None
    max_value: float | None = None
    length: int | None = None  # for float lists
    string_list: bool = False  # a list of names (a string array, or one comma-separated string)
    # Read only when the node configures (chooses models, devices, subscriptions); a change at run time waits
    # for the next configure. The other parameters take effect between two frames.
    reconfigure_only: bool = False


def _param(default: Any, description: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"param": Param(description, **kwargs)})


def _choice(default: TextEnum, description: str, order: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """A parameter whose values are the members of default's enum (listed in `order` in messages, if given)."""
    return field(default=default, metadata={"param": _choice_spec(type(default), description, order, **kwargs)})


def _choice_spec(enum: type[TextEnum], description: str, order: tuple[str, ...], **kwargs: Any) -> Param:
    choices = order or tuple(member.value for member in enum)
    if sorted(choices) != sorted(member.value for member in enum):
        raise ValueError(f"{enum.__name__}: the order {choices} must list each member once")
    return Param(description, choices=choices, enum=enum, **kwargs)


def _list_param(default: list[float], description: str, length: int) -> Any:
    return field(default_factory=lambda: list(default), metadata={"param": Param(description, length=length)})


def _names_param(description: str, **kwargs: Any) -> Any:
    return field(default_factory=list, metadata={"param": Param(description, string_list=True, **kwargs)})


CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # a ROS name token: usable in topics and parameter names
PER_CAMERA_PARAMETERS = ("static_translation", "static_rotation")  # C.<name>: per camera, default the node's


@dataclass
class NodeConfig:
    cameras: list[str] = _names_param(  # noqa: RUF009 - returns a dataclass field
        "Camera names, each served on C/image, C/camera_info -> C/depth/image, C/points, ... by one copy of the "
        "models (empty: one camera on image, camera_info, ...)", reconfigure_only=True)
    batch_window: float = _param(10.0, "Several cameras: how long a ready frame waits for the other cameras' to "
                                 "share one forward, ms", min_value=0.0, max_value=1000.0)
    max_batch: int = _param(0, "Several cameras: most frames in one forward (0 = every camera's; 1 = one frame at "
                            "a time)", min_value=0, max_value=64)
    sparse_per_camera: bool = _param(False, "Several cameras: each has its own C/sparse_points (or C/sparse_depth); "
                                     "false: one shared sparse_points topic (one LiDAR seen by every camera)",
                                     reconfigure_only=True)
    depth_model: str = _param("", "Depth checkpoint: local diffusers folder, Hugging Face id or ONNX export folder; "
                              "empty = none",
                              reconfigure_only=True)
    normals_model: str = _param("", "Normals checkpoint: local diffusers folder, Hugging Face id or ONNX export "
                                "folder; empty = none",
                                reconfigure_only=True)
    device: Device = _choice(Device.AUTO, "Torch device for the models", reconfigure_only=True)
    dtype: Dtype = _choice(Dtype.AUTO, "Network precision (auto: fp16 on CUDA, fp32 on CPU)", reconfigure_only=True)
    cpu_threads: int = _param(0, "CPU threads of the network (torch intra-op threads); 0 = auto: every available "
                              "core for a CPU forward, 1 with a CUDA device; set fewer to leave cores to other "
                              "processes",
                              min_value=0, max_value=1024, reconfigure_only=True)
    processing_resolution: int = _param(768, "Longest side the network sees, px (0 = native; multiple of 8)",
                                        min_value=0, max_value=4096, reconfigure_only=True)
    onnx_providers: str = _param("auto", "ONNX exports only: execution providers, auto (TensorRT -> CUDA -> CPU by "
                                 "availability) or a comma list of tensorrt, cuda, cpu", reconfigure_only=True)
    onnx_probe: OnnxProbe = _choice(OnnxProbe.REFUSE, "ONNX exports only: when the load-time probe differs from the "
                                    "export's PyTorch outputs beyond its tolerance, refuse to start or warn and run",
                                    reconfigure_only=True)
    alignment: AlignmentMethod = _choice(AlignmentMethod.LOCAL, "Metric alignment with sparse points: global (robust "
                                         "scale/shift), local (global + a spatially varying correction where "
                                         "held-out points confirm it)", order=("off", "global", "local"))
    space: SpaceSetting = _choice(SpaceSetting.AUTO, "Space of the relative prediction (auto: from the checkpoint)")
    alignment_fit: AlignmentFit = _choice(AlignmentFit.SCALE_SHIFT, "What the global fit solves for: metric = scale "
                                          "* relative + shift, or scale alone (stable with few points or a narrow "
                                          "depth band)")
    local_heldout_ratio: float = _param(0.9, "alignment local: the correction is used in a frame when its held-out "
                                        "error (each sparse point predicted from its neighbours alone) is at most "
                                        "this fraction of the global fit's, in RMS and in median; larger uses it "
                                        "more often (100: always)", min_value=0.01, max_value=100.0)
    min_depth: float = _param(0.1, "Metric depths below this are invalid (NaN), m", min_value=0.0, max_value=1e4)
    max_depth: float = _param(80.0, "Metric depths above this are invalid (NaN), m", min_value=0.0, max_value=1e4)
    min_points: int = _param(10, "Fewest sparse points a fit needs", min_value=3, max_value=1_000_000)
    on_few_points: OnFewPoints = _choice(OnFewPoints.HOLD, "Without a usable fit: hold the last fit for "
                                         "hold_seconds, or publish depth/relative only")
    hold_seconds: float = _param(2.0, "How long the last good fit is held, s", min_value=0.0, max_value=3600.0)
    smoothing_seconds: float = _param(0.0, "Time constant of the scale/shift smoothing, s (0 = each frame's own "
                                      "fit; jumps are still held until confirmed)",
                                      min_value=0.0, max_value=60.0)
    image_rectified: bool = _param(False, "The image is rectified (image_rect: geometry from P); false: raw as the "
                                   "driver publishes it (image_raw: K and distortion D)")
    rectify_outputs: bool = _param(True, "From a raw image, publish depth, normals and the cloud in the rectified "
                                   "geometry of P with a zero-D camera_info, as depth_image_proc and RViz read "
                                   "them; false: in the raw geometry, with the raw camera_info")
    use_cv_bridge: bool = _param(True, "Convert images with cv_bridge where it is importable and works (robots); "
                                 "else, and for encodings it refuses, the numpy path (the pip install)",
                                 reconfigure_only=True)
    image_transport: ImageTransport = _choice(ImageTransport.RAW, "Subscribe to `image` (raw) or `image/compressed`",
                                              reconfigure_only=True)
    sparse_input: SparseInput = _choice(SparseInput.POINTS, "Metric points from `sparse_points` (PointCloud2), "
                                        "`sparse_depth` (Image) or none", reconfigure_only=True)
    image_qos: Reliability = _choice(Reliability.AUTO, "Reliability of the image subscription: auto (match the "
                                     "publishers: reliable unless one is best effort), or forced",
                                     reconfigure_only=True)
    camera_info_qos: Reliability = _choice(Reliability.AUTO, "Reliability of the camera_info subscription (as "
                                           "image_qos)", reconfigure_only=True)
    sparse_qos: Reliability = _choice(Reliability.AUTO, "Reliability of the sparse_points / sparse_depth "
                                      "subscription (as image_qos)", reconfigure_only=True)
    input_timeout: float = _param(5.0, "/diagnostics turns WARN when no image arrived for this long while active, s "
                                  "(0 = never)", min_value=0.0, max_value=3600.0)
    sync_tolerance: float = _param(0.06, "Largest stamp difference paired with an image, s",
                                   min_value=0.0, max_value=10.0)
    sync_wait: float = _param(0.1, "How long a frame waits for its camera_info / sparse points, s",
                              min_value=0.0, max_value=10.0)
    camera_frame: str = _param("", "Optical frame_id of the outputs when neither the image nor its camera_info "
                               "header names one (empty: such frames are refused as bad input)")
    fixed_frame: str = _param("", "Frame that does not move between a LiDAR sweep and an image (e.g. odom): points "
                              "are moved from their frame at their stamp to the camera at the image stamp through "
                              "it (tf2); empty: the latest transform (static extrinsics)")
    tf_timeout: float = _param(0.05, "How long a frame waits for a transform not yet in the tf2 buffer, s",
                               min_value=0.0, max_value=10.0)
    use_tf: bool = _param(True, "Look up sparse-point extrinsics with tf2 when tf2_ros is importable",
                          reconfigure_only=True)
    static_translation: list[float] = _list_param(  # noqa: RUF009 - returns a dataclass field
        [0.0, 0.0, 0.0], "Sparse-points frame -> camera optical frame translation [x, y, z], m (used without tf)",
        length=3)
    static_rotation: list[float] = _list_param(  # noqa: RUF009 - returns a dataclass field
        [0.0, 0.0, 0.0, 1.0], "Sparse-points frame -> camera optical frame rotation quaternion [x, y, z, w]",
        length=4)
    see_through_margin: float = _param(0.3, "Drop sparse points farther than their 7x7 neighbours by this + 10 %, "
                                       "m (LiDAR-camera parallax; 0 = off)", min_value=0.0, max_value=1e3)
    publish_relative: bool = _param(True, "Publish the affine-invariant map on depth/relative", reconfigure_only=True)
    cloud_stride: int = _param(1, "Keep every n-th pixel in `points`", min_value=1, max_value=64)
    cloud_rgb: bool = _param(True, "Add the rgb field to `points`")
    cloud_normals: bool = _param(True, "Add normal_x/y/z to `points` (needs normals_model)")
    cloud_edge_filter: bool = _param(True, "Flying pixels: drop pixels on depth discontinuities (a jump beyond "
                                     "cloud_edge_threshold to a neighbour) from `points`; depth/image stays complete")
    cloud_edge_threshold: float = _param(0.04, "Relative depth jump within a 3x3 window that marks a depth edge",
                                         min_value=0.001, max_value=1.0)
    cloud_min_confidence: float = _param(0.3, "Drop pixels whose depth/confidence is below this from `points` (0 = "
                                         "keep all); 0.3 ~ expected depth error above 12 %", min_value=0.0,
                                         max_value=1.0)
    cloud_max_range: float = _param(0.0, "Points farther than this are NaN, m (0 = max_depth)",
                                    min_value=0.0, max_value=1e4)
    autostart: bool = _param(True, "Configure and activate the lifecycle node at start", reconfigure_only=True)
    max_future_stamp: float = _param(2.0, "Images stamped more than this ahead of the node's clock are refused as "
                                     "bad input, s (0 = no check)", min_value=0.0, max_value=1e6)
    diagnostics_period: float = _param(1.0, "Seconds between /diagnostics messages", min_value=0.05,
                                       max_value=60.0)

    def __post_init__(self) -> None:
        """Choices as their enum members, parsed once from the parameter strings; a value that is not one stays as
        given, for validate() to refuse naming the parameter and the allowed values."""
        for f in fields(self):
            enum = f.metadata["param"].enum
            value = getattr(self, f.name)
            if enum is not None and not isinstance(value, enum) and value in f.metadata["param"].choices:
                setattr(self, f.name, enum(value))

    def validate(self) -> NodeConfig:
        """Check every field against its table entry and the cross-field rules; return self."""
        for f in fields(self):
            check_value(f.name, getattr(self, f.name))
        if not self.depth_model and not self.normals_model:
            raise ConfigError("parameters depth_model and normals_model are both empty: set at least one "
                              "(a local checkpoint folder or a Hugging Face id)")
        if self.processing_resolution % 8:
            raise ConfigError(f"parameter processing_resolution={self.processing_resolution}: must be 0 or a "
                              "multiple of 8")
        if self.max_depth <= self.min_depth:
            raise ConfigError(f"parameters min_depth={self.min_depth} and max_depth={self.max_depth}: "
                              "max_depth must be greater than min_depth")
        check_rotation("static_rotation", self.static_rotation)
        return self


def check_camera_value(camera: str, name: str, value: list[float]) -> list[float]:
    """A per-camera parameter `camera.name` (PER_CAMERA_PARAMETERS), checked as the node-level one is."""
    label = f"{camera}.{name}"
    check_value(name, value, label)
    if name == "static_rotation":
        check_rotation(label, value)
    return [float(v) for v in value]


def check_rotation(name: str, rotation_xyzw: list[float]) -> None:
    quat_norm = math.sqrt(sum(q * q for q in rotation_xyzw))
    if not 0.5 < quat_norm < 2.0:
        raise ConfigError(f"parameter {name}={rotation_xyzw}: not a quaternion [x, y, z, w] (norm must be ~1)")


def check_camera_names(names: list[str], param: str = "cameras") -> None:
    for name in names:
        if not isinstance(name, str) or not CAMERA_NAME.match(name):
            raise ConfigError(f"parameter {param}: {name!r} is not a camera name (a letter, then letters, digits "
                              "or _; it prefixes topics and parameters)")
    if len(set(names)) != len(names):
        raise ConfigError(f"parameter {param}={names}: each name once")


def param_spec(name: str) -> Param:
    for f in fields(NodeConfig):
        if f.name == name:
            return f.metadata["param"]
    raise ConfigError(f"unknown parameter {name!r}; known: {', '.join(f.name for f in fields(NodeConfig))}")


def check_value(name: str, value: Any, label: str = "") -> None:
    """Raise ConfigError naming the parameter (`label`, default `name`) and what it allows when `value` breaks
    the table entry of `name`."""
    spec = param_spec(name)
    name = label or name
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"parameter {name}={value!r}: allowed values are {', '.join(spec.choices)}")
    if spec.string_list:
        check_camera_names(list(value), name)
    if spec.length is not None:
        values = list(value)
        if len(values) != spec.length or not all(math.isfinite(float(v)) for v in values):
            raise ConfigError(f"parameter {name}={values}: needs {spec.length} finite numbers")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"parameter {name}={value}: must be finite")
        lo, hi = spec.min_value, spec.max_value
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"parameter {name}={value}: allowed range is [{lo}, {hi}]")
