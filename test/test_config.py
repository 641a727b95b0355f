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


def test_choices_are_enum_members_parsed_from_the_parameter_strings() -> None:
    from dataclasses import replace

    from depth_ft_ros.enums import AlignmentMethod, Reliability, SparseInput, TextEnum

    config = NodeConfig(depth_model="x", alignment="global", sparse_input="none", image_qos="best_effort").validate()
    assert config.alignment is AlignmentMethod.GLOBAL and config.sparse_input is SparseInput.NONE
    assert config.image_qos is Reliability.BEST_EFFORT
    assert config.alignment == "global" and {"global": 1}[config.alignment] == 1  # still its text for callers
    assert replace(config, alignment="off").alignment is AlignmentMethod.OFF  # a change is parsed too
    # Every choice field holds a member of its enum, and every member is an allowed value (the table is the enum).
    for f in fields(NodeConfig):
        spec = f.metadata["param"]
        if spec.choices:
            value = getattr(NodeConfig(), f.name)
            assert isinstance(value, TextEnum) and spec.enum is type(value), f.name
            assert sorted(spec.choices) == sorted(m.value for m in spec.enum), f.name
