"""NodeConfig: every invalid value fails with a message naming the parameter and what it allows."""

from __future__ import annotations

from dataclasses import fields

import pytest
import yaml

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import ConfigError

CONFIG_YAML = "config/depth_ft.yaml"


def test_defaults_need_a_model() -> None:
    with pytest.raises(ConfigError, match="depth_model and normals_model"):
        NodeConfig().validate()
    assert NodeConfig(normals_model="x").validate().normals_model == "x"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("alignment", "median", "alignment='median': allowed values are off, global, local"),
        ("device", "tpu", "device='tpu': allowed values are auto, cuda, cpu"),
        ("dtype", "int8", "dtype='int8': allowed values are auto, fp16, bf16, fp32"),
        ("cloud_stride", 0, r"cloud_stride=0: allowed range is \[1, 64\]"),
        ("cpu_threads", -1, r"cpu_threads=-1: allowed range is \[0, 1024\]"),
        ("min_depth", -1.0, r"min_depth=-1.0: allowed range"),
        ("hold_seconds", float("nan"), "hold_seconds=nan: must be finite"),
        ("processing_resolution", 500, "processing_resolution=500: must be 0 or a multiple of 8"),
        ("static_translation", [1.0, 2.0], r"static_translation=\[1.0, 2.0\]: needs 3 finite numbers"),
        ("static_rotation", [0.0, 0.0, 0.0, 0.0], "static_rotation=.*not a quaternion"),
        ("max_depth", 0.05, "max_depth must be greater than min_depth"),
    ],
)
def test_invalid_values_name_parameter_and_allowed_values(name: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        NodeConfig(depth_model="m", **{name: value}).validate()


def test_params_yaml_lists_every_parameter_with_a_valid_value() -> None:
    with open(CONFIG_YAML) as f:
        params = yaml.safe_load(f)["/**"]["ros__parameters"]
    assert set(params) == {f.name for f in fields(NodeConfig)}
    config = NodeConfig(**params).validate()
    for f in fields(NodeConfig):  # types match the declared ones: ROS parameters are typed
        assert type(getattr(config, f.name)) is type(getattr(NodeConfig(), f.name)), f.name
