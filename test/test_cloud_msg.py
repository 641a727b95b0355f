"""PointCloud2 reading and writing, checked against the message definition with struct.

Clouds are packed by hand at known offsets (extra fields, padding, float64, big-endian, organized rows with
padding); written clouds are unpacked by hand at their PointField offsets using the datatype table of
sensor_msgs/PointField.msg, independent of the code under test.
"""

from __future__ import annotations

import array
import math
import struct
import sys

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not importable (needs the ROS 2 wheels or a ROS install)")

from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from depth_ft_ros.errors import InputError
from depth_ft_ros.msgs import convert

pytestmark = pytest.mark.ros

# sensor_msgs/PointField.msg: INT8=1 UINT8=2 INT16=3 UINT16=4 INT32=5 UINT32=6 FLOAT32=7 FLOAT64=8
STRUCT_CHAR = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}


def field(name: str, offset: int, datatype: int, count: int = 1) -> PointField:
    return PointField(name=name, offset=offset, datatype=datatype, count=count)


def cloud(fields: list[PointField], point_step: int, points: list[bytes], height: int = 1, row_pad: int = 0,
          bigendian: bool = False) -> PointCloud2:
    """A cloud of `points` (each exactly point_step bytes) in `height` rows, each row followed by row_pad bytes."""
    width = len(points) // height
    rows = [b"".join(points[r * width:(r + 1) * width]) + b"\xab" * row_pad for r in range(height)]
    msg = PointCloud2(height=height, width=width, point_step=point_step, row_step=point_step * width + row_pad,
                      is_bigendian=bigendian, is_dense=False)
    msg.fields = fields
    msg.data = array.array("B", b"".join(rows))
    return msg


XYZ = [(1.0, 2.0, 3.0), (-4.5, 0.25, 8.0), (math.nan, math.nan, math.nan), (1e3, -1e-3, 0.5), (7.0, 7.5, -8.0)]


def test_xyz_with_extra_fields_and_padding() -> None:
    # PCL PointXYZI-like: x y z, 4 padding bytes, intensity at 16, ring (uint16) at 20, point_step 32.
    fields = [field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("intensity", 16, 7), field("ring", 20, 4)]
    points = [struct.pack("<fff4xfH10x", *p, 0.5 * i, i) for i, p in enumerate(XYZ)]
    xyz = convert.pointcloud2_to_xyz(cloud(fields, 32, points))
    assert xyz.shape == (5, 3) and xyz.dtype == np.float64
    np.testing.assert_array_equal(xyz, np.array(XYZ, dtype=np.float32).astype(np.float64))
    structured = convert.pointcloud2_to_structured(cloud(fields, 32, points), ["ring", "intensity"])
    assert structured.shape == (1, 5)
    np.testing.assert_array_equal(structured["ring"][0], range(5))
    np.testing.assert_array_equal(structured["intensity"][0], [0.0, 0.5, 1.0, 1.5, 2.0])


def test_float64_fields_in_odd_order() -> None:
    # z first, then x, then y; a uint8 field between; doubles.
    fields = [field("z", 0, 8), field("label", 8, 2), field("x", 9, 8), field("y", 17, 8)]
    points = [struct.pack("<dBdd3x", p[2], 5, p[0], p[1]) for p in XYZ]
    xyz = convert.pointcloud2_to_xyz(cloud(fields, 28, points))
    np.testing.assert_array_equal(xyz, np.array(XYZ))


def test_big_endian() -> None:
    fields = [field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)]
    points = [struct.pack(">fff", *p) for p in XYZ]
    xyz = convert.pointcloud2_to_xyz(cloud(fields, 12, points, bigendian=True))
    np.testing.assert_array_equal(xyz, np.array(XYZ, dtype=np.float32))


def test_organized_with_row_padding() -> None:
    h, w = 3, 4
    coords = [(u * 0.1, v * 0.2, 1.0 + u + 10 * v) for v in range(h) for u in range(w)]
    fields = [field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("rgb", 12, 7)]
    points = [struct.pack("<ffff", *c, 0.0) for c in coords]
    msg = cloud(fields, 16, points, height=h, row_pad=8)
    xyz = convert.pointcloud2_to_xyz(msg)
    np.testing.assert_array_equal(xyz, np.array(coords, dtype=np.float32))  # row-major: index v * w + u
    assert convert.pointcloud2_to_structured(msg).shape == (h, w)


def test_integer_xyz_and_count() -> None:
    # int16 millimetre-like coordinates; an x field with count 2 (the first value is x).
    fields = [field("x", 0, 3, count=2), field("y", 4, 5), field("z", 8, 6)]
    points = [struct.pack("<hhiI", -3, 99, 40000, 7), struct.pack("<hhiI", 5, 99, -2, 4000000000)]
    xyz = convert.pointcloud2_to_xyz(cloud(fields, 12, points))
    np.testing.assert_array_equal(xyz, [[-3, 40000, 7], [5, -2, 4000000000]])


def test_skip_nans_and_empty() -> None:
    fields = [field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)]
    msg = cloud(fields, 12, [struct.pack("<fff", *p) for p in XYZ])
    assert convert.pointcloud2_to_xyz(msg, skip_nans=True).shape == (4, 3)
    empty = PointCloud2(height=1, width=0, point_step=12, row_step=0)
    empty.fields = fields
    assert convert.pointcloud2_to_xyz(empty).shape == (0, 3)
    assert convert.pointcloud2_to_xyz(PointCloud2(height=0, width=0, point_step=12, fields=fields)).shape == (0, 3)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: setattr(m, "fields", m.fields[:2]), r"no field\(s\) \['z'\]"),
        (lambda m: setattr(m, "data", m.data[:-1]), "data has 59 bytes, expected row_step \\* height = 60"),
        (lambda m: setattr(m, "point_step", 8), "field 'z'.*does not fit in point_step 8"),
        (lambda m: setattr(m, "row_step", 59), "row_step is smaller than point_step \\* width"),
        (lambda m: setattr(m.fields[0], "datatype", 9), "field 'x' has datatype 9"),
        (lambda m: setattr(m, "point_step", 0), "does not fit in point_step 0"),
    ],
)
def test_read_errors(edit, match: str) -> None:
    msg = cloud([field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)], 12, [struct.pack("<fff", *p) for p in XYZ])
    edit(msg)
    with pytest.raises(InputError, match=match):
        convert.pointcloud2_to_xyz(msg)


def unpack_cloud(msg: PointCloud2) -> dict[str, list]:
    """Decode every field of every point by hand, at row_step/point_step/offset, per PointField datatype."""
    order = ">" if msg.is_bigendian else "<"
    data = bytes(msg.data)
    out: dict[str, list] = {f.name: [] for f in msg.fields}
    for v in range(msg.height):
        for u in range(msg.width):
            base = v * msg.row_step + u * msg.point_step
            for f in msg.fields:
                vals = struct.unpack_from(order + STRUCT_CHAR[f.datatype] * f.count, data, base + f.offset)
                out[f.name].append(vals[0] if f.count == 1 else vals)
    return out


def test_structured_to_pointcloud2_all_types_organized() -> None:
    dtype = np.dtype([("x", "f4"), ("y", "f4"), ("z", "f4"), ("r", "u1"), ("label", "u2"), ("id", "i4"),
                      ("t", "f8"), ("rgba", "u4"), ("small", "i1"), ("depth_mm", "i2")])
    h, w = 2, 3
    pts = np.zeros((h, w), dtype)
    rng = np.random.default_rng(0)
    for name in dtype.names:
        kind = dtype[name]
        pts[name] = rng.normal(size=(h, w)) if kind.kind == "f" else rng.integers(
            np.iinfo(kind).min, np.iinfo(kind).max, size=(h, w), dtype=kind)
    header = Header(frame_id="camera_optical")
    msg = convert.structured_to_pointcloud2(pts, header, is_dense=True)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (h, w, dtype.itemsize, dtype.itemsize * w)
    assert bool(msg.is_bigendian) == (sys.byteorder == "big")
    assert msg.is_dense and msg.header.frame_id == "camera_optical"
    expected_types = {"x": 7, "y": 7, "z": 7, "r": 2, "label": 4, "id": 5, "t": 8, "rgba": 6, "small": 1, "depth_mm": 3}
    assert {f.name: f.datatype for f in msg.fields} == expected_types
    assert {f.name: f.offset for f in msg.fields} == {n: dtype.fields[n][1] for n in dtype.names}
    assert len(msg.data) == msg.row_step * msg.height
    decoded = unpack_cloud(msg)
    for name in dtype.names:
        np.testing.assert_array_equal(decoded[name], pts[name].ravel(), err_msg=name)


def test_structured_with_padding_subarray_and_big_endian_input() -> None:
    dtype = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": [">f4", ">f4", ">f4", ("u1", (3,))],
                      "offsets": [0, 4, 8, 16], "itemsize": 24})
    pts = np.zeros(4, dtype)
    pts["x"], pts["y"], pts["z"] = [1, 2, 3, 4], [5, 6, 7, 8], [0.5, 1.5, 2.5, np.nan]
    pts["rgb"] = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    msg = convert.structured_to_pointcloud2(pts)
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (1, 4, 24, 96, False)
    assert [(f.name, f.offset, f.count) for f in msg.fields] == [("x", 0, 1), ("y", 4, 1), ("z", 8, 1), ("rgb", 16, 3)]
    decoded = unpack_cloud(msg)
    np.testing.assert_array_equal(decoded["x"], [1, 2, 3, 4])
    np.testing.assert_array_equal(decoded["z"], [0.5, 1.5, 2.5, np.nan])
    assert decoded["rgb"][3] == (10, 11, 12)


@pytest.mark.parametrize(
    ("points", "match"),
    [
        (np.zeros((2, 3), np.float32), "expected a structured array"),
        (np.zeros((2, 2, 2), [("x", "f4")]), r"expected shape \(N,\) or \(H, W\)"),
        (np.zeros(3, [("x", "f4"), ("stamp", "i8")]), "field 'stamp' has type int64"),
        (np.zeros(3, [("x", "f2")]), "field 'x' has type float16"),
    ],
)
def test_write_errors(points: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        convert.structured_to_pointcloud2(points)
