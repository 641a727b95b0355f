"""What every bag of a run is processed with: the node's parameters (defaults <- --params YAML <- model flags <-
--param overrides, as `replay` layers them), topic choices, wanted outputs, and the identity of the models.

Settings are plain data (picklable): the driver builds them once and every worker gets a copy.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from depth_ft_ros.config import PER_CAMERA_PARAMETERS, NodeConfig, check_camera_value
from depth_ft_ros.errors import ConfigError
from depth_ft_ros.model.families.checkpoint import EMBEDDING_FILE
from depth_ft_ros.msgs import names
from depth_ft_ros.replay.topics import TopicFlags

# Every output the node can publish for a camera (relative to its namespace and camera prefix).
ALL_OUTPUTS = (names.DEPTH_IMAGE, names.DEPTH_CAMERA_INFO, names.DEPTH_RELATIVE, names.DEPTH_COLORIZED,
               names.DEPTH_CONFIDENCE, names.NORMALS_IMAGE, names.NORMALS_CAMERA_INFO, names.NORMALS_COLORIZED,
               names.POINTS)
DEFAULT_OUTPUTS = (names.DEPTH_IMAGE, names.DEPTH_CAMERA_INFO, names.DEPTH_CONFIDENCE, names.NORMALS_IMAGE,
                   names.NORMALS_CAMERA_INFO, names.POINTS)
MANIFEST_FORMAT = 1
# Written beside the weights by the first load (a cache of the text encoder's output): not part of the model.
DERIVED_FILES = frozenset({EMBEDDING_FILE})


@dataclass(frozen=True)
class FleetSettings:
    params: dict[str, Any]  # NodeConfig fields, validated
    camera_params: dict[str, dict[str, list[float]]]  # camera -> {static_translation: ..., static_rotation: ...}
    topics: TopicFlags
    outputs: tuple[str, ...]  # wanted output topics, relative to the camera (names.*)
    namespace: str
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # depth_model/normals_model -> {id, sha256}
    package_version: str = "unknown"

    def config(self) -> NodeConfig:
        return NodeConfig(**self.params)

    def wanted(self, topic: str) -> bool:
        """Whether an output topic (relative to the namespace, with its camera prefix) is written."""
        return (topic.split("/", 1)[-1] if self.params["cameras"] else topic) in self.outputs

    def key(self) -> dict[str, Any]:
        """What the outputs of a bag depend on besides the bag (compared with a manifest's)."""
        return {"format": MANIFEST_FORMAT, "params": self.params, "camera_params": self.camera_params,
                "topics": asdict(self.topics), "outputs": list(self.outputs), "namespace": self.namespace,
                "models": self.models, "package_version": self.package_version}


def read_params_file(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, list[float]]]]:
    """(node parameters, per-camera parameters) from a ROS parameters YAML (`/**:` or a node name, each with
    `ros__parameters:`), as `--ros-args --params-file` reads it: later sections win."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--params {path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--params {path}: expected `/**: {{ros__parameters: {{...}}}}`")
    params: dict[str, Any] = {}
    for section in doc.values():
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            params.update(_flatten(section["ros__parameters"]))
    known = {f.name for f in fields(NodeConfig)}
    node: dict[str, Any] = {}
    cameras: dict[str, dict[str, list[float]]] = {}
    for name, value in params.items():
        camera, _, leaf = name.rpartition(".")
        if camera and leaf in PER_CAMERA_PARAMETERS:
            cameras.setdefault(camera, {})[leaf] = check_camera_value(camera, leaf, value)
        elif name in known:
            node[name] = value
        else:
            raise ConfigError(f"--params {path}: unknown parameter {name!r}; known: {', '.join(sorted(known))}")
    return node, cameras


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def model_identity(model: str) -> dict[str, str]:
    """{id, sha256}: a local checkpoint folder or file hashed by content (names and bytes of every file); a hub id
    by the id alone (its revision is whatever the cache resolves)."""
    path = Path(model)
    if not model or not path.exists():
        return {"id": model, "sha256": ""}
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in DERIVED_FILES) \
        if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return {"id": str(path.resolve()), "sha256": digest.hexdigest()}


def package_version() -> str:
    try:
        return importlib.metadata.version("depth_ft_ros")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_settings(params_file: Path | None, depth_model: str | None, normals_model: str | None,
                   overrides: dict[str, Any], topics: TopicFlags, outputs: list[str] | None,
                   namespace: str = "depth_ft") -> FleetSettings:
    """Settings for a run; ConfigError naming the parameter or flag when one is invalid."""
    params: dict[str, Any] = {}
    camera_params: dict[str, dict[str, list[float]]] = {}
    if params_file is not None:
        params, camera_params = read_params_file(params_file)
    if depth_model is not None:
        params["depth_model"] = depth_model
    if normals_model is not None:
        params["normals_model"] = normals_model
    params.update(overrides)
    defaults = asdict(NodeConfig())
    for name, value in list(params.items()):  # YAML whole numbers for float parameters, as rclpy would refuse
        if isinstance(defaults[name], float) and isinstance(value, int) and not isinstance(value, bool):
            params[name] = float(value)
    config = NodeConfig(**{**defaults, **params}).validate()
    unknown_cameras = sorted(set(camera_params) - set(config.cameras))
    if unknown_cameras:
        raise ConfigError(f"--params: per-camera parameters for {', '.join(unknown_cameras)}, which are not in "
                          f"cameras={config.cameras}")
    chosen = tuple(outputs) if outputs else DEFAULT_OUTPUTS
    bad = [o for o in chosen if o not in ALL_OUTPUTS]
    if bad:
        raise ConfigError(f"--outputs {', '.join(bad)}: allowed values are {', '.join(ALL_OUTPUTS)}")
    models = {name: model_identity(getattr(config, name)) for name in ("depth_model", "normals_model")
              if getattr(config, name)}
    return FleetSettings(asdict(config), camera_params, topics, chosen, namespace.strip("/") or "depth_ft",
                         models, package_version())
