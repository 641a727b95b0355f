"""Declare the node's parameters from depth_ft_ros.config.NodeConfig and read them back validated.

Types are checked here, not by rclpy: the parameters are declared with dynamic typing because rclpy's own
refusal of a wrong type ("Wrong parameter type, expected 'Type.DOUBLE' got 'Type.INTEGER'") does not name the
parameter, at start nor for `ros2 param set`. check_type names it and the expected type, in both places.
Choices travel as strings over ROS and become their enum members in NodeConfig (config.py, __post_init__).
"""

from __future__ import annotations

from dataclasses import MISSING, fields, replace
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_ft_ros.config import PER_CAMERA_PARAMETERS, NodeConfig, Param, check_camera_value, param_spec
from depth_ft_ros.enums import TextEnum
from depth_ft_ros.errors import ConfigError

# Parameters read only when the node configures; the flag lives in NodeConfig's table (Param.reconfigure_only).
RECONFIGURE_ONLY = frozenset(f.name for f in fields(NodeConfig) if f.metadata["param"].reconfigure_only)
CONFIG_PARAMETERS = frozenset(f.name for f in fields(NodeConfig))

_TYPE_NAMES = {Parameter.Type.BOOL: "bool", Parameter.Type.INTEGER: "integer", Parameter.Type.DOUBLE: "double",
               Parameter.Type.STRING: "string", Parameter.Type.DOUBLE_ARRAY: "double array",
               Parameter.Type.INTEGER_ARRAY: "integer array", Parameter.Type.BOOL_ARRAY: "bool array",
               Parameter.Type.STRING_ARRAY: "string array", Parameter.Type.BYTE_ARRAY: "byte array",
               Parameter.Type.NOT_SET: "no value"}


def _default(f: Any) -> Any:
    """A field's default as a ROS parameter value: a choice (TextEnum member) as its plain text."""
    default = f.default_factory() if f.default is MISSING else f.default
    return default.value if isinstance(default, TextEnum) else default


_DEFAULTS = {f.name: _default(f) for f in fields(NodeConfig)}


_STRING_LISTS = frozenset(f.name for f in fields(NodeConfig) if f.metadata["param"].string_list)


def expected_type(name: str) -> Parameter.Type:
    """The ROS parameter type of a NodeConfig field (from its default's Python type)."""
    default = _DEFAULTS[name]
    if name in _STRING_LISTS:
        return Parameter.Type.STRING_ARRAY
    if isinstance(default, list):
        return Parameter.Type.DOUBLE_ARRAY
    return Parameter.Type.from_parameter_value(default)


def check_type(param: Parameter) -> None:
    """Raise ConfigError naming the parameter, its type and the expected one when they differ."""
    want = expected_type(param.name)
    if param.type_ == want:
        return
    if param.name in _STRING_LISTS and (param.type_ == Parameter.Type.STRING or not param.value):
        return  # "front,left" (a launch argument) or an empty list, which rclpy types as a byte array
    hint = ""
    if want == Parameter.Type.DOUBLE and param.type_ == Parameter.Type.INTEGER:
        hint = " (write floats with a decimal point, e.g. 10.0)"
    elif want == Parameter.Type.DOUBLE_ARRAY:
        hint = f" of {len(_DEFAULTS[param.name])} (write floats with a decimal point, e.g. [0.0, 1.5, 2.0])"
    raise ConfigError(f"parameter {param.name}: wrong type {_TYPE_NAMES.get(param.type_, str(param.type_))}, "
                      f"expected {_TYPE_NAMES[want]}{hint}")


def _descriptor(name: str, spec: Param, default: Any) -> ParameterDescriptor:
    text = spec.description
    if spec.choices:
        text += f" (one of: {', '.join(spec.choices)})"
    if spec.reconfigure_only:
        text += " [read at configure]"
    # dynamic_typing: check_type refuses a wrong type with the parameter's name (see the module docstring).
    descriptor = ParameterDescriptor(name=name, description=text, dynamic_typing=True)
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


def parameter_value(param: Parameter) -> Any:
    """A parameter's value as NodeConfig holds it (arrays as lists; a name list from "a,b" too)."""
    value = param.value
    if param.name in _STRING_LISTS:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return [str(v) for v in value] if value else []
    return list(value) if isinstance(value, (list, tuple)) or hasattr(value, "tolist") else value


def declare_parameters(node: Node) -> NodeConfig:
    """Declare every NodeConfig field as a parameter; return the validated config or raise ConfigError."""
    values: dict[str, Any] = {}
    for f in fields(NodeConfig):
        spec: Param = f.metadata["param"]
        default = _default(f)
        try:
            param = node.declare_parameter(f.name, default, _descriptor(f.name, spec, default))
        except InvalidParameterValueException:
            lo, hi = spec.min_value, spec.max_value
            raise ConfigError(f"parameter {f.name}: value out of range, allowed range is [{lo}, {hi}]") from None
        check_type(param)
        values[f.name] = parameter_value(param)
    return NodeConfig(**values).validate()


CameraParams = dict[str, list[float]]  # PER_CAMERA_PARAMETERS name -> value


def split_camera_parameter(name: str) -> tuple[str, str] | None:
    """`front.static_rotation` -> ("front", "static_rotation"); None for any other name."""
    camera, _, field_name = name.rpartition(".")
    return (camera, field_name) if camera and field_name in PER_CAMERA_PARAMETERS else None


def camera_parameter_value(param: Parameter) -> list[float]:
    """A per-camera parameter's value, type and value checked (ConfigError names the parameter)."""
    split = split_camera_parameter(param.name)
    assert split is not None
    camera, field_name = split
    if param.type_ != Parameter.Type.DOUBLE_ARRAY:
        length = param_spec(field_name).length
        raise ConfigError(f"parameter {param.name}: wrong type {_TYPE_NAMES.get(param.type_, str(param.type_))}, "
                          f"expected double array of {length} (write floats with a decimal point, e.g. "
                          "[0.0, 1.5, 2.0])")
    return check_camera_value(camera, field_name, list(param.value))


def declare_camera_parameters(node: Node, config: NodeConfig) -> dict[str, CameraParams]:
    """Declare C.static_translation / C.static_rotation for each camera C (default: the node-level value; kept
    when already declared by an earlier configure); return the checked values per camera."""
    out: dict[str, CameraParams] = {}
    for camera in config.cameras:
        values: CameraParams = {}
        for field_name in PER_CAMERA_PARAMETERS:
            name = f"{camera}.{field_name}"
            if node.has_parameter(name):
                param = node.get_parameter(name)
            else:
                default = list(getattr(config, field_name))
                spec = param_spec(field_name)
                descriptor = ParameterDescriptor(name=name, description=f"{spec.description} (camera {camera})",
                                                 dynamic_typing=True)
                param = node.declare_parameter(name, default, descriptor)
            values[field_name] = camera_parameter_value(param)
        out[camera] = values
    return out


def live_config(declared: NodeConfig, running: NodeConfig) -> NodeConfig:
    """`declared` with the RECONFIGURE_ONLY values the running node was configured with."""
    return replace(declared, **{name: getattr(running, name) for name in RECONFIGURE_ONLY})


def apply_changes(config: NodeConfig, params: list[Parameter]) -> NodeConfig:
    """A new config with the changed parameters (types checked, then each value validated once, with the
    cross-field rules, by NodeConfig.validate); raises ConfigError naming the offending parameter."""
    for param in params:
        check_type(param)
    merged = {f.name: getattr(config, f.name) for f in fields(NodeConfig)}
    merged.update({p.name: parameter_value(p) for p in params})
    return NodeConfig(**merged).validate()
