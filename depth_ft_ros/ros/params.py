"""Declare the node's parameters from depth_ft_ros.core.config.NodeConfig and read them back validated.

Types are checked here, not by rclpy: the parameters are declared with dynamic typing because rclpy's own
refusal of a wrong type ("Wrong parameter type, expected 'Type.DOUBLE' got 'Type.INTEGER'") does not name the
parameter, at start nor for `ros2 param set`. check_type names it and the expected type, in both places.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, replace
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_ft_ros.core.config import NodeConfig, Param
from depth_ft_ros.core.errors import ConfigError

# Parameters read only when the node configures; the flag lives in NodeConfig's table (Param.reconfigure_only).
RECONFIGURE_ONLY = frozenset(f.name for f in fields(NodeConfig) if f.metadata["param"].reconfigure_only)
CONFIG_PARAMETERS = frozenset(f.name for f in fields(NodeConfig))

_TYPE_NAMES = {Parameter.Type.BOOL: "bool", Parameter.Type.INTEGER: "integer", Parameter.Type.DOUBLE: "double",
               Parameter.Type.STRING: "string", Parameter.Type.DOUBLE_ARRAY: "double array",
               Parameter.Type.INTEGER_ARRAY: "integer array", Parameter.Type.BOOL_ARRAY: "bool array",
               Parameter.Type.STRING_ARRAY: "string array", Parameter.Type.BYTE_ARRAY: "byte array",
               Parameter.Type.NOT_SET: "no value"}


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


_DEFAULTS = {f.name: _default(f) for f in fields(NodeConfig)}


def expected_type(name: str) -> Parameter.Type:
    """The ROS parameter type of a NodeConfig field (from its default's Python type)."""
    default = _DEFAULTS[name]
    if isinstance(default, list):
        return Parameter.Type.DOUBLE_ARRAY
    return Parameter.Type.from_parameter_value(default)


def check_type(param: Parameter) -> None:
    """Raise ConfigError naming the parameter, its type and the expected one when they differ."""
    want = expected_type(param.name)
    if param.type_ == want:
        return
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
    """A parameter's value as NodeConfig holds it (arrays as lists)."""
    value = param.value
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
