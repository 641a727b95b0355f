"""sensor_msgs/PointCloud2 <-> numpy structured arrays, without sensor_msgs_py and without per-point loops.

Layout (sensor_msgs/PointCloud2): `height` rows of `row_step` bytes; each row holds `width` points of
`point_step` bytes; a point's field `f` is `count` values of PointField type `datatype` at byte `offset`,
big-endian when `is_bigendian`. A numpy structured dtype with those offsets and itemsize = point_step, laid
over the bytes with strides (row_step, point_step), reads any such layout as a zero-copy view.

Decisions where the definition is silent:
- Arrays keep the message's 2-D shape: (height, width); an unorganized cloud is (1, N).
- Data longer than row_step * height is accepted (tail ignored); shorter is an error.
- Padding fields with an empty or repeated name (older PCL writes "_") are skipped; the first wins.
- Fields with count 0 (some old drivers) are read as count 1.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from depth_ft_ros.errors import InputError
from depth_ft_ros.msgs.msg_buffer import byte_view, set_data

# PointField datatype constants (sensor_msgs/PointField.msg) <-> numpy type of one value.
_DATATYPE_TO_NUMPY: dict[int, str] = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}
_NUMPY_TO_DATATYPE: dict[str, int] = {v: k for k, v in _DATATYPE_TO_NUMPY.items()}
_NATIVE_BIGENDIAN = sys.byteorder == "big"


def pointcloud2_to_structured(msg: PointCloud2, fields: Sequence[str] | None = None) -> np.ndarray:
    """A (height, width) structured view of the cloud's points with the named `fields` (default: all).

    Field types, offsets and byte order are the message's; the view shares memory with msg.data.
    Raises InputError when a requested field is missing or of an unknown datatype, when a field does not
    fit in point_step, when row_step < point_step * width, or when data is shorter than row_step * height.
    """
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    height, width = int(msg.height), int(msg.width)
    layout = f"point_step={point_step}, row_step={row_step}, {width}x{height}"
    by_name: dict[str, PointField] = {}
    for field in msg.fields:
        if field.name and field.name not in by_name:
            by_name[field.name] = field
    if fields is None:
        wanted = [name for name, f in by_name.items() if f.datatype in _DATATYPE_TO_NUMPY]
    else:
        wanted = list(fields)
        missing = [name for name in wanted if name not in by_name]
        if missing:
            raise InputError(
                f"sensor_msgs/PointCloud2: no field(s) {missing}; the cloud has {[f.name for f in msg.fields]}"
            )
    order = ">" if msg.is_bigendian else "<"
    formats: list[np.dtype] = []
    for name in wanted:
        field = by_name[name]
        if field.datatype not in _DATATYPE_TO_NUMPY:
            raise InputError(
                f"sensor_msgs/PointCloud2: field {name!r} has datatype {field.datatype}, expected one of "
                f"the PointField constants 1..8 (INT8..FLOAT64)"
            )
        base = np.dtype(order + _DATATYPE_TO_NUMPY[field.datatype])
        count = max(int(field.count), 1)
        if field.offset + base.itemsize * count > point_step:
            raise InputError(
                f"sensor_msgs/PointCloud2: field {name!r} ({count} x {base}) at offset {field.offset} does "
                f"not fit in point_step {point_step}"
            )
        formats.append(base if count == 1 else np.dtype((base, (count,))))
    if point_step <= 0:
        raise InputError(f"sensor_msgs/PointCloud2: point_step must be > 0 ({layout})")
    dtype = np.dtype(
        {"names": wanted, "formats": formats, "offsets": [by_name[n].offset for n in wanted],
         "itemsize": point_step}
    )
    if height * width == 0:
        return np.zeros((height, width), dtype=dtype)
    if row_step < point_step * width:
        raise InputError(f"sensor_msgs/PointCloud2: row_step is smaller than point_step * width ({layout})")
    buf = byte_view(msg.data, "sensor_msgs/PointCloud2")
    if buf.size < row_step * height:
        raise InputError(
            f"sensor_msgs/PointCloud2: data has {buf.size} bytes, expected row_step * height = "
            f"{row_step * height} ({layout})"
        )
    # np.ndarray(buffer=, strides=) skips row padding without a copy and works on NumPy < 1.23.
    return np.ndarray(shape=(height, width), dtype=dtype, buffer=buf, strides=(row_step, point_step))


def pointcloud2_to_xyz(msg: PointCloud2, skip_nans: bool = False) -> np.ndarray:
    """An (N, 3) float64 array of the x, y, z fields in row-major point order; N = height * width.

    Any numeric x/y/z datatype is accepted (count > 1: the first value). Invalid points (NaN) are kept
    unless `skip_nans`, so an organized cloud's rows stay at index v * width + u.
    """
    points = pointcloud2_to_structured(msg, ("x", "y", "z"))
    xyz = np.empty((*points.shape, 3), dtype=np.float64)
    for i, name in enumerate("xyz"):
        column = points[name]
        xyz[..., i] = column[..., 0] if column.ndim > points.ndim else column  # count > 1: first value
    xyz = xyz.reshape(-1, 3)
    if skip_nans:
        xyz = xyz[np.isfinite(xyz).all(axis=1)]
    return xyz


def structured_to_pointcloud2(
    points: np.ndarray, header: Header | None = None, is_dense: bool = False, copy: bool = True
) -> PointCloud2:
    """A PointCloud2 from a structured array: (H, W) -> organized H x W, (N,) -> 1 x N.

    Each dtype field becomes a PointField at the dtype's own offset (padding in the dtype is kept, so
    point_step = dtype.itemsize); sub-array fields, e.g. ("rgb", "u1", (3,)), get count > 1. Byte order is
    the machine's; row_step = point_step * width. Supported field types: (u)int8/16/32, float32/64.
    copy=False: the message shares the array's memory, for publishing only (see msg_buffer.set_data).
    """
    points = np.asarray(points)
    names = points.dtype.names
    if not names:
        raise InputError(f"structured_to_pointcloud2: expected a structured array, got dtype {points.dtype}")
    if points.ndim == 1:
        height, width = 1, points.shape[0]
    elif points.ndim == 2:
        height, width = points.shape
    else:
        raise InputError(f"structured_to_pointcloud2: expected shape (N,) or (H, W), got {points.shape}")
    fields: list[PointField] = []
    native_formats: list[np.dtype] = []
    offsets: list[int] = []
    field_table: Mapping[str, Any] = points.dtype.fields or {}
    for name in names:
        field_dtype, offset = field_table[name][:2]
        base = field_dtype.base
        key = base.kind + str(base.itemsize)
        if key not in _NUMPY_TO_DATATYPE or base.fields is not None:
            raise InputError(
                f"structured_to_pointcloud2: field {name!r} has type {field_dtype}, which PointField cannot "
                "express (supported: int8/16/32, uint8/16/32, float32/64)"
            )
        count = int(np.prod(field_dtype.shape)) if field_dtype.shape else 1
        fields.append(PointField(name=name, offset=int(offset), datatype=_NUMPY_TO_DATATYPE[key], count=count))
        native = np.dtype("=" + key)
        native_formats.append(native if count == 1 else np.dtype((native, field_dtype.shape)))
        offsets.append(int(offset))
    native_dtype = np.dtype(
        {"names": list(names), "formats": native_formats, "offsets": offsets, "itemsize": points.dtype.itemsize}
    )
    if native_dtype != points.dtype:  # only when some field is byte-swapped
        points = points.astype(native_dtype)
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = sorted(fields, key=lambda f: f.offset)
    msg.is_bigendian = _NATIVE_BIGENDIAN
    msg.point_step = int(points.dtype.itemsize)
    msg.row_step = int(points.dtype.itemsize * width)
    msg.is_dense = bool(is_dense)
    set_data(msg, points, copy=copy)
    return msg
