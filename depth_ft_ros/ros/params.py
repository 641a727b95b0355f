"""Declare the node's parameters from depth_ft_ros.core.config.NodeConfig and read them back validated."""

from __future__ import annotations

from dataclasses import MISSING, fields, replace
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from depth_ft_ros.core.config import NodeConfig, Param, check_value
from depth_ft_ros.core.errors import ConfigError

# Parameters read only when the node configures (they choose models, devices and subscriptions); the rest
# take effect on the next frame when changed at run time.
RECONFIGURE_ONLY = frozenset({
    "depth_model", "normals_model", "device", "dtype", "processing_resolution", "image_transport",
    "sparse_input", "reliable_qos", "use_tf", "autostart", "publish_relative", "use_cv_bridge",
})
CONFIG_PARAMETERS = frozenset(f.name for f in fields(NodeConfig))


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def _descriptor(name: str, spec: Param, default: Any) -> ParameterDescriptor:
    text = spec.description
    if spec.choices:
        text += f" (one of: {', '.join(spec.choices)})"
    if name in RECONFIGURE_ONLY:
        text += " [read at configure]"
    descriptor = ParameterDescriptor(name=name, description=text)
    if spec.choices:
        descriptor.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if isinstance(default, bool):
        return descriptor
    if isinstance(default, int) and spec.min_value is not None and spec.max_value is not None:
        descriptor.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value),
                                                 step=1)]
    elif isinstance(default, float) and spec.min_value is not None and spec.max_value is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                              to_value=float(spec.max_value), step=0.0)]
    return descriptor


def declare_parameters(node: Node) -> NodeConfig:
    """Declare every NodeConfig field as a parameter; return the validated config or raise ConfigError."""
    values: dict[str, Any] = {}
    for f in fields(NodeConfig):
        spec: Param = f.metadata["param"]
        default = _default(f)
        try:
            param = node.declare_parameter(f.name, default, _descriptor(f.name, spec, default))
        except InvalidParameterTypeException as exc:
            raise ConfigError(f"parameter {f.name}: wrong type ({exc}); expected {type(default).__name__}"
                              + (" (write floats with a decimal point, e.g. 10.0)"
                                 if isinstance(default, float) else "")) from None
        except InvalidParameterValueException:
            lo, hi = spec.min_value, spec.max_value
            raise ConfigError(f"parameter {f.name}: value out of range, allowed range is [{lo}, {hi}]") from None
        values[f.name] = param.value if not isinstance(default, list) else list(param.value)
    return NodeConfig(**values).validate()


def live_config(declared: NodeConfig, running: NodeConfig) -> NodeConfig:
    """`declared` with the RECONFIGURE_ONLY values the running node was configured with."""
    return replace(declared, **{name: getattr(running, name) for name in RECONFIGURE_ONLY})


def apply_changes(config: NodeConfig, changes: dict[str, Any]) -> NodeConfig:
    """A new validated config with `changes` applied; raises ConfigError naming the offending parameter."""
    for name, value in changes.items():
        check_value(name, value)
    merged = {f.name: getattr(config, f.name) for f in fields(NodeConfig)}
    merged.update(changes)
    return NodeConfig(**merged).validate()
