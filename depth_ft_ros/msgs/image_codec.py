"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Layout (sensor_msgs/Image): `height` rows of `step` bytes each; the first width * bytes_per_pixel bytes of a
row are pixels, the rest is padding. Multi-byte channels are big-endian when `is_bigendian` is set.
Decoding builds a strided numpy view over `msg.data` (no per-pixel loop; no copy before the colour
conversion), so arrays returned may share memory with the message: copy before writing into them.

Decisions where sensor_msgs is silent:
- 16-bit colour/mono (mono16, rgb16, ...) becomes 8-bit by `>> 8` (keep the high byte, like an image viewer
  that assumes the full 16-bit range; a 12-bit sensor therefore looks dark).
- Generic OpenCV encodings are read in OpenCV's channel order: 8UC1 = mono8, 8UC3 = bgr8, 8UC4 = bgra8.
  (cv_bridge refuses 8UC3 -> rgb8; we accept it because such images come from cv::Mat, which is BGR.)
- Data longer than step * height is accepted (the tail is ignored); shorter is an error.
- cv_bridge is used only when a bridge is passed in (see `load_cv_bridge`): it is optional on robots and its
  compiled module breaks under NumPy 2 (vision_opencv#535), so the numpy path is the default everywhere.
"""

from __future__ import annotations

import sys
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from depth_ft_ros.errors import InputError
from depth_ft_ros.msgs.msg_buffer import byte_view, set_data

# encoding -> (channels, numpy type of one channel)
_LAYOUTS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "u1"), "bgr8": (3, "u1"), "rgba8": (4, "u1"), "bgra8": (4, "u1"), "mono8": (1, "u1"),
    "rgb16": (3, "u2"), "bgr16": (3, "u2"), "rgba16": (4, "u2"), "bgra16": (4, "u2"), "mono16": (1, "u2"),
    "8UC1": (1, "u1"), "8UC3": (3, "u1"), "8UC4": (4, "u1"), "16UC1": (1, "u2"), "32FC1": (1, "f4"),
    "32FC3": (3, "f4"), "64FC1": (1, "f8"),
    "bayer_rggb8": (1, "u1"), "bayer_bggr8": (1, "u1"), "bayer_gbrg8": (1, "u1"), "bayer_grbg8": (1, "u1"),
    "bayer_rggb16": (1, "u2"), "bayer_bggr16": (1, "u2"), "bayer_gbrg16": (1, "u2"), "bayer_grbg16": (1, "u2"),
    # YUV 4:2:2, two bytes per pixel. "uyvy"/"yuyv" are Jazzy's names for the same layouts.
    "yuv422": (2, "u1"), "uyvy": (2, "u1"), "yuv422_yuy2": (2, "u1"), "yuyv": (2, "u1"),
}

# encoding (after 16 -> 8 bit) -> cv2 code to RGB; None = already RGB.
# OpenCV names Bayer patterns by the 2x2 block starting at pixel (1, 1), ROS by the one at (0, 0).
_TO_RGB: dict[str, int | None] = {
    "rgb": None, "bgr": cv2.COLOR_BGR2RGB, "rgba": cv2.COLOR_RGBA2RGB, "bgra": cv2.COLOR_BGRA2RGB,
    "mono": cv2.COLOR_GRAY2RGB,
    "bayer_rggb": cv2.COLOR_BayerBG2RGB, "bayer_bggr": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg": cv2.COLOR_BayerGR2RGB, "bayer_grbg": cv2.COLOR_BayerGB2RGB,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}
_RGB_FAMILY = {
    "rgb8": "rgb", "rgb16": "rgb", "bgr8": "bgr", "bgr16": "bgr", "8UC3": "bgr",
    "rgba8": "rgba", "rgba16": "rgba", "bgra8": "bgra", "bgra16": "bgra", "8UC4": "bgra",
    "mono8": "mono", "mono16": "mono", "8UC1": "mono",
    "yuv422": "uyvy", "uyvy": "uyvy", "yuv422_yuy2": "yuyv", "yuyv": "yuyv",
    **{f"bayer_{p}{b}": f"bayer_{p}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)},
}

_NATIVE_BIGENDIAN = sys.byteorder == "big"


def image_to_array(msg: Image) -> np.ndarray:
    """The pixels of `msg` as an (H, W) or (H, W, C) array in the encoding's own type (a view when possible).

    Honours `step` (row padding) and `is_bigendian`. Raises InputError for unknown encodings, zero sizes,
    a step smaller than a row, or data shorter than step * height.
    """
    encoding = msg.encoding
    if encoding not in _LAYOUTS:
        raise InputError(
            f"sensor_msgs/Image: encoding {encoding!r} is not supported (expected one of {sorted(_LAYOUTS)})"
        )
    channels, kind = _LAYOUTS[encoding]
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0:
        raise InputError(f"sensor_msgs/Image ({encoding}): size is {width}x{height}, expected a non-empty image")
    if step < row_bytes:
        raise InputError(
            f"sensor_msgs/Image ({encoding}, {width}x{height}): step {step} is smaller than one row "
            f"(width * {channels * dtype.itemsize} bytes per pixel = {row_bytes})"
        )
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise InputError(f"sensor_msgs/Image ({encoding}): width {width} must be even for YUV 4:2:2")
    buf = byte_view(msg.data, f"sensor_msgs/Image ({encoding})")
    if buf.size < step * height:
        raise InputError(
            f"sensor_msgs/Image ({encoding}, {width}x{height}): data has {buf.size} bytes, expected "
            f"step * height = {step} * {height} = {step * height}"
        )
    # A strided view straight over the bytes: row stride = step, so padding is skipped without a copy.
    # (np.ndarray(buffer=, strides=) rather than .view(): works on NumPy < 1.23 too, e.g. Humble's 1.21.)
    shape: tuple[int, ...] = (height, width, channels)
    strides: tuple[int, ...] = (step, channels * dtype.itemsize, dtype.itemsize)
    if channels == 1:
        shape, strides = shape[:2], strides[:2]
    return np.ndarray(shape=shape, dtype=dtype, buffer=buf, strides=strides)


def image_to_rgb(msg: Image, bridge: Any = None) -> np.ndarray:
    """An (H, W, 3) uint8 RGB C-contiguous array from a colour, mono, Bayer or YUV 4:2:2 Image.

    With `bridge` (a cv_bridge.CvBridge) the conversion is cv_bridge's; otherwise numpy + cv2.cvtColor.
    The result may share memory with msg.data (rgb8 without padding): copy before modifying in place.
    """
    if bridge is not None:
        return _via_bridge(lambda: bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"), "sensor_msgs/Image")
    family = _RGB_FAMILY.get(msg.encoding)
    if family is None:
        hint = " (a depth image: use depth_image_to_metres)" if msg.encoding in ("16UC1", "32FC1") else ""
        raise InputError(
            f"sensor_msgs/Image: encoding {msg.encoding!r} cannot be converted to RGB{hint}; "
            f"expected one of {sorted(_RGB_FAMILY)}"
        )
    pixels = image_to_array(msg)
    return _to_rgb8(pixels, family)


def compressed_to_rgb(msg: CompressedImage, bridge: Any = None) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from a CompressedImage (JPEG, PNG, or anything cv2.imdecode reads).

    `format` is e.g. "jpeg", "png" or image_transport's "rgb8; jpeg compressed bgr8". The codec is found
    from the data itself; the decoded file is in standard colour order whatever the original encoding
    (image_transport converts to bgr8 before encoding). compressedDepth streams are refused.
    """
    fmt = msg.format
    if "compresseddepth" in fmt.replace(" ", "").lower():
        raise InputError(
            f"sensor_msgs/CompressedImage: format {fmt!r} is a compressedDepth stream, not a colour image"
        )
    if bridge is not None:
        return _via_bridge(
            lambda: bridge.compressed_imgmsg_to_cv2(msg, desired_encoding="rgb8"), "sensor_msgs/CompressedImage"
        )
    buf = byte_view(msg.data, "sensor_msgs/CompressedImage")
    if buf.size == 0:
        raise InputError(f"sensor_msgs/CompressedImage (format {fmt!r}): data is empty")
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise InputError(
            f"sensor_msgs/CompressedImage (format {fmt!r}): {buf.size} bytes could not be decoded "
            f"(expected a JPEG or PNG file, starting {bytes(buf[:8])!r})"
        )
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    family = {1: "mono", 3: "bgr", 4: "bgra"}.get(channels)
    if family is None or decoded.dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"sensor_msgs/CompressedImage (format {fmt!r}): decoded {decoded.dtype} image with {channels} "
            "channels, expected 8 or 16 bit with 1, 3 or 4 channels"
        )
    return _to_rgb8(decoded, family)


def depth_image_to_metres(msg: Image) -> np.ndarray:
    """An (H, W) float32 depth in metres, NaN where invalid, from a 16UC1 (mm) or 32FC1 (m) Image.

    16UC1: 0 is invalid (REP 118). 32FC1: NaN, +-inf, 0 and negative values are invalid. Always a new array.
    """
    if msg.encoding not in ("16UC1", "32FC1"):
        raise InputError(
            f"sensor_msgs/Image: depth encoding {msg.encoding!r} is not supported "
            "(expected '16UC1' in millimetres or '32FC1' in metres, REP 118)"
        )
    raw = image_to_array(msg)
    if msg.encoding == "16UC1":
        depth = np.divide(raw, np.float32(1000.0), dtype=np.float32)  # exact: mm and 1000 are exact
        depth[raw == 0] = np.nan
        return depth
    depth = raw.astype(np.float32)  # also byte-swaps a big-endian image to native order
    with np.errstate(invalid="ignore"):
        depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def depth_to_msg(depth_m: np.ndarray, header: Header | None = None, copy: bool = True) -> Image:
    """A 32FC1 Image (REP 118: metres along the optical axis, NaN invalid) from an (H, W) float array.

    copy=False: the message shares the array's memory, for publishing only (see msg_buffer.set_data)."""
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or depth.dtype.kind != "f":
        raise InputError(f"depth_to_msg: expected an (H, W) float array, got {depth.dtype} {depth.shape}")
    return array_to_image(depth.astype(np.float32, copy=False), "32FC1", header, copy=copy)


def normals_to_msg(normals: np.ndarray, header: Header | None = None, copy: bool = True) -> Image:
    """A 32FC3 Image of unit normals (x, y, z in the optical frame) from an (H, W, 3) float array."""
    arr = np.asarray(normals)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype.kind != "f":
        raise InputError(f"normals_to_msg: expected an (H, W, 3) float array, got {arr.dtype} {arr.shape}")
    return array_to_image(arr.astype(np.float32, copy=False), "32FC3", header, copy=copy)


def bgr_to_msg(bgr: np.ndarray, header: Header | None = None, copy: bool = True) -> Image:
    """A bgr8 Image from an (H, W, 3) uint8 array in OpenCV's BGR order."""
    arr = np.asarray(bgr)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"bgr_to_msg: expected an (H, W, 3) uint8 array, got {arr.dtype} {arr.shape}")
    return array_to_image(arr, "bgr8", header, copy=copy)


def array_to_image(arr: np.ndarray, encoding: str, header: Header | None = None, copy: bool = True) -> Image:
    """An Image with no row padding (step = width * bytes per pixel), in the machine's byte order.

    `arr` must be (H, W) or (H, W, C) matching `encoding`'s channel count and type (see _LAYOUTS).
    copy=False: the message shares the array's memory, for publishing only (see msg_buffer.set_data).
    """
    if encoding not in _LAYOUTS:
        raise InputError(f"array_to_image: encoding {encoding!r} is not supported")
    channels, kind = _LAYOUTS[encoding]
    arr = np.asarray(arr)
    got_channels = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    if got_channels != channels or arr.dtype.kind != np.dtype(kind).kind or arr.dtype.itemsize != int(kind[1]):
        raise InputError(
            f"array_to_image ({encoding}): expected {channels} channel(s) of {np.dtype(kind)}, "
            f"got {arr.dtype} {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"array_to_image ({encoding}): empty array {arr.shape}")
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_NATIVE_BIGENDIAN and arr.dtype.itemsize > 1)
    msg.step = int(arr.shape[1] * channels * arr.dtype.itemsize)
    set_data(msg, arr, copy=copy)
    return msg


def load_cv_bridge() -> Any | None:
    """A cv_bridge.CvBridge when the ROS 2 cv_bridge is importable and works, else None.

    Refuses the unofficial PyPI `cv-bridge` 1.x port (wrong type tables: 16UC1 mapped to 8 bit).
    """
    try:
        from importlib import metadata

        try:
            if int(metadata.version("cv-bridge").split(".")[0]) < 2:
                return None
        except metadata.PackageNotFoundError:
            pass  # a ROS install: no pip metadata
        from cv_bridge import CvBridge

        return CvBridge()
    except Exception:  # ImportError, or the compiled module failing under another NumPy ABI
        return None


def _to_rgb8(pixels: np.ndarray, family: str) -> np.ndarray:
    if pixels.dtype.itemsize == 2:
        pixels = (pixels >> 8).astype(np.uint8)  # 16 -> 8 bit: keep the high byte
    code = _TO_RGB[family]
    if code is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, code)


def _via_bridge(convert: Any, what: str) -> np.ndarray:
    try:
        rgb = convert()
    except Exception as exc:  # CvBridgeError, TypeError, ... : all mean this message is unusable
        raise InputError(f"{what}: cv_bridge could not convert to rgb8 ({exc})") from exc
    return np.ascontiguousarray(rgb)
