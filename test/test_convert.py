"""Image, CompressedImage, depth and CameraInfo conversions, checked against the message definitions.

Messages are built byte by byte (struct) in the layout sensor_msgs/Image documents: `height` rows of `step`
bytes, pixels first, padding after, multi-byte channels big-endian when is_bigendian. Expected pixels come
from formulas, cv2 codecs or colour-space definitions, never from the code under test.
"""

from __future__ import annotations

import array
import math
import struct
import sys

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not importable (needs the ROS 2 wheels or a ROS install)")
cv2 = pytest.importorskip("cv2")

from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depth_ft_ros.errors import InputError  # noqa: E402
from depth_ft_ros.msgs import convert  # noqa: E402

pytestmark = pytest.mark.ros
W, H, PAD = 5, 4, 7  # odd sizes and a padding that breaks any alignment assumption


def pixel(u: int, v: int) -> tuple[int, int, int, int]:
    """A distinct (r, g, b, a) per pixel."""
    return (3 * u + 50 * v) % 256, (7 * u + 11 * v + 100) % 256, (200 - 13 * u - 5 * v) % 256, (u * v + 9) % 256


def make_image(encoding: str, rows: list[bytes], width: int, pad: int = PAD, bigendian: bool = False) -> Image:
    """An Image whose rows are `rows` (pixel bytes), each followed by `pad` filler bytes."""
    msg = Image(height=len(rows), width=width, encoding=encoding, is_bigendian=int(bigendian))
    msg.step = len(rows[0]) + pad
    msg.data = array.array("B", b"".join(r + b"\xee" * pad for r in rows))
    return msg


def expected_rgb() -> np.ndarray:
    return np.array([[pixel(u, v)[:3] for u in range(W)] for v in range(H)], dtype=np.uint8)


# --------------------------------------------------------------------------------------------- raw images
@pytest.mark.parametrize(
    ("encoding", "order"),
    [("rgb8", "rgb"), ("bgr8", "bgr"), ("rgba8", "rgba"), ("bgra8", "bgra"), ("8UC3", "bgr"), ("8UC4", "bgra")],
)
def test_colour_8bit_with_row_padding(encoding: str, order: str) -> None:
    rows = []
    for v in range(H):
        row = b""
        for u in range(W):
            r, g, b, a = pixel(u, v)
            row += bytes({"r": r, "g": g, "b": b, "a": a}[c] for c in order)
        rows.append(row)
    rgb = convert.image_to_rgb(make_image(encoding, rows, W))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, expected_rgb())


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_repeats_grey(encoding: str) -> None:
    rows = [bytes(pixel(u, v)[0] for u in range(W)) for v in range(H)]
    rgb = convert.image_to_rgb(make_image(encoding, rows, W))
    grey = expected_rgb()[..., 0]
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_keeps_high_byte(bigendian: bool) -> None:
    values = [[(u * 9000 + v * 4000 + 255) % 65536 for u in range(W)] for v in range(H)]
    fmt = (">" if bigendian else "<") + "H" * W
    rows = [struct.pack(fmt, *row) for row in values]
    rgb = convert.image_to_rgb(make_image("mono16", rows, W, pad=3, bigendian=bigendian))
    expected = np.array(values) // 256
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], expected)


@pytest.mark.parametrize("bigendian", [False, True])
def test_bgr16(bigendian: bool) -> None:
    fmt = ">HHH" if bigendian else "<HHH"
    rows = [b"".join(struct.pack(fmt, *(257 * c + 1 for c in pixel(u, v)[2::-1])) for u in range(W)) for v in range(H)]
    rgb = convert.image_to_rgb(make_image("bgr16", rows, W, bigendian=bigendian))
    np.testing.assert_array_equal(rgb, expected_rgb())  # (257 c + 1) >> 8 == c for c < 255


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_constant_colour(pattern: str) -> None:
    # A uniform scene sampled through the colour filter: pattern names the 2x2 block at pixel (0, 0).
    colour = {"r": 200, "g": 100, "b": 30}
    w, h = 8, 6
    rows = [bytes(colour[pattern[2 * (v % 2) + (u % 2)]] for u in range(w)) for v in range(h)]
    rgb = convert.image_to_rgb(make_image(f"bayer_{pattern}8", rows, w))
    np.testing.assert_array_equal(rgb[2:-2, 2:-2], np.broadcast_to([200, 100, 30], (h - 4, w - 4, 3)))


@pytest.mark.parametrize(("encoding", "order"), [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv")])
def test_yuv422_bt601(encoding: str, order: str) -> None:
    y, cb, cr = 100, 90, 170
    macro = bytes({"u": cb, "y": y, "v": cr}[c] for c in order)  # 2 pixels
    rows = [macro * 3 for _ in range(2)]
    rgb = convert.image_to_rgb(make_image(encoding, rows, 6))
    # ITU-R BT.601, video range (what YUV 4:2:2 cameras send)
    ref = [1.164 * (y - 16) + 1.596 * (cr - 128), 1.164 * (y - 16) - 0.392 * (cb - 128) - 0.813 * (cr - 128),
           1.164 * (y - 16) + 2.017 * (cb - 128)]
    assert np.abs(rgb.astype(float) - ref).max() <= 2.0


def test_rgb8_without_padding_is_a_view() -> None:
    rows = [bytes(c for u in range(W) for c in pixel(u, v)[:3]) for v in range(H)]
    msg = make_image("rgb8", rows, W, pad=0)
    rgb = convert.image_to_rgb(msg)
    assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(rgb, expected_rgb())


def test_image_to_array_types() -> None:
    row = struct.pack(">3f", 1.5, -2.0, float("nan"))
    arr = convert.image_to_array(make_image("32FC1", [row, row], 3, pad=1, bigendian=True))
    assert arr.shape == (2, 3)
    np.testing.assert_array_equal(arr[1, :2], [1.5, -2.0])
    assert math.isnan(arr[0, 2])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"encoding": "nv12"}, "'nv12' cannot be converted to RGB"),
        ({"encoding": "16UC1"}, "depth_image_to_metres"),
        ({"width": 0, "height": 0, "step": 0}, "0x0"),
        ({"step": W * 3 - 1}, "step 14 is smaller than one row"),
        ({"height": H + 1}, "data has"),
    ],
)
def test_image_errors(change: dict, match: str) -> None:
    rows = [bytes(W * 3) for _ in range(H)]
    msg = make_image("rgb8", rows, W, pad=0)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(InputError, match=match):
        convert.image_to_rgb(msg)


def test_truncated_data_names_sizes() -> None:
    msg = make_image("bgr8", [bytes(W * 3)] * H, W, pad=2)
    msg.data = msg.data[:-1]
    with pytest.raises(InputError, match=r"bgr8.*data has 67 bytes, expected step \* height = 17 \* 4 = 68"):
        convert.image_to_rgb(msg)


def test_yuv_odd_width_refused() -> None:
    with pytest.raises(InputError, match="must be even"):
        convert.image_to_rgb(make_image("yuv422", [bytes(6)], 3, pad=0))


# --------------------------------------------------------------------------------------------- compressed
def smooth_bgr(h: int = 48, w: int = 64) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w]
    return np.stack([u * 3, v * 4, 255 - u * 2], axis=-1).clip(0, 255).astype(np.uint8)


def encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, enc = cv2.imencode(ext, image, params or [])
    assert ok
    return enc.tobytes()


def compressed(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    return msg


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"])
def test_jpeg(fmt: str) -> None:
    bgr = smooth_bgr()
    rgb = convert.compressed_to_rgb(compressed(encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]), fmt))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - bgr[..., ::-1]).mean() < 3.0


def test_png_lossless_colour_grey_alpha_and_16bit() -> None:
    bgr = smooth_bgr()
    for image, expected in [
        (bgr, bgr[..., ::-1]),
        (bgr[..., 1], np.repeat(bgr[..., 1:2], 3, axis=2)),
        (np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)]), bgr[..., ::-1]),
        (bgr.astype(np.uint16) * 256 + 255, bgr[..., ::-1]),
    ]:
        np.testing.assert_array_equal(convert.compressed_to_rgb(compressed(encode(".png", image), "png")), expected)


@pytest.mark.parametrize(
    ("data", "fmt", "match"),
    [
        (b"", "jpeg", "data is empty"),
        (b"not an image at all", "jpeg", "could not be decoded"),
        (b"\x00" * 12 + b"\x89PNG", "16UC1; compressedDepth png", "compressedDepth"),
    ],
)
def test_compressed_errors(data: bytes, fmt: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        convert.compressed_to_rgb(compressed(data, fmt))


# --------------------------------------------------------------------------------------------- depth
@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_16uc1_millimetres(bigendian: bool) -> None:
    fmt = (">" if bigendian else "<") + "4H"
    rows = [struct.pack(fmt, 0, 1, 1000, 65535), struct.pack(fmt, 1234, 0, 2, 500)]
    depth = convert.depth_image_to_metres(make_image("16UC1", rows, 4, pad=3, bigendian=bigendian))
    assert depth.dtype == np.float32 and depth.shape == (2, 4)
    expected = np.array([[np.nan, 0.001, 1.0, 65.535], [1.234, np.nan, 0.002, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(depth, expected)  # NaN positions equal too


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_32fc1_invalid_values(bigendian: bool) -> None:
    fmt = (">" if bigendian else "<") + "6f"
    row = struct.pack(fmt, float("nan"), 0.0, float("inf"), float("-inf"), -1.0, 2.5)
    depth = convert.depth_image_to_metres(make_image("32FC1", [row], 6, pad=2, bigendian=bigendian))
    np.testing.assert_array_equal(depth, [[np.nan] * 5 + [2.5]])
    assert depth.dtype.isnative


@pytest.mark.parametrize("encoding", ["mono16", "rgb8", "32FC3"])
def test_depth_other_encodings_refused(encoding: str) -> None:
    with pytest.raises(InputError, match=r"16UC1.*32FC1"):
        convert.depth_image_to_metres(make_image(encoding, [bytes(12)], 1, pad=0))


def unpack_image(msg: Image, fmt_char: str, channels: int) -> list[list[tuple]]:
    """Decode an Image by hand: rows at `step`, `channels` values of struct type `fmt_char` per pixel."""
    order = ">" if msg.is_bigendian else "<"
    size = struct.calcsize(fmt_char)
    data = bytes(msg.data)
    return [
        [struct.unpack_from(order + fmt_char * channels, data, v * msg.step + u * channels * size)
         for u in range(msg.width)]
        for v in range(msg.height)
    ]


def test_depth_to_msg_rep118() -> None:
    depth = np.array([[0.5, np.nan, 2.0], [3.25, 10.0, 0.125]], dtype=np.float32)
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = convert.depth_to_msg(depth, header)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("32FC1", 2, 3, 12)
    assert bool(msg.is_bigendian) == (sys.byteorder == "big")
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.nanosec == 345
    values = np.array(unpack_image(msg, "f", 1))[..., 0]
    np.testing.assert_array_equal(values, depth)
    # float64 input is accepted and stored as float32
    from_double = convert.depth_to_msg(depth.astype(np.float64))
    np.testing.assert_array_equal(np.array(unpack_image(from_double, "f", 1))[..., 0], depth)


def test_normals_and_bgr_to_msg() -> None:
    normals = np.random.default_rng(1).normal(size=(3, 4, 3)).astype(np.float32)
    msg = convert.normals_to_msg(normals, Header(frame_id="f"))
    assert (msg.encoding, msg.step) == ("32FC3", 4 * 12)
    np.testing.assert_array_equal(np.array(unpack_image(msg, "f", 3)), normals)
    bgr = smooth_bgr(3, 5)
    msg = convert.bgr_to_msg(bgr)
    assert (msg.encoding, msg.step, msg.is_bigendian) == ("bgr8", 15, 0)
    np.testing.assert_array_equal(np.array(unpack_image(msg, "B", 3)), bgr)


@pytest.mark.parametrize(
    ("func", "arr"),
    [
        (convert.depth_to_msg, np.zeros((2, 2, 1), np.float32)),
        (convert.depth_to_msg, np.zeros((2, 2), np.uint16)),
        (convert.normals_to_msg, np.zeros((2, 2), np.float32)),
        (convert.bgr_to_msg, np.zeros((2, 2, 3), np.float32)),
        (convert.bgr_to_msg, np.zeros((0, 2, 3), np.uint8)),
    ],
)
def test_to_msg_errors(func, arr) -> None:
    with pytest.raises(InputError):
        func(arr)


# --------------------------------------------------------------------------------------------- camera info
def camera_info() -> CameraInfo:
    msg = CameraInfo(width=1280, height=960, distortion_model="plumb_bob", binning_x=2, binning_y=2)
    msg.k = np.array([600.0, 0, 640, 0, 610, 480, 0, 0, 1])
    msg.p = np.array([590.0, 0, 630, 0, 0, 595, 470, 0, 0, 0, 1, 0])
    msg.d = array.array("d", [0.1, -0.05, 0.001, 0.002, 0.01])
    msg.roi = RegionOfInterest(x_offset=100, y_offset=50, height=600, width=800, do_rectify=False)
    return msg


def test_camera_info_to_camera_fields() -> None:
    cam = convert.camera_info_to_camera(camera_info())
    assert (cam.width, cam.height, cam.binning_x, cam.binning_y) == (1280, 960, 2, 2)
    np.testing.assert_array_equal(cam.k, [[600, 0, 640], [0, 610, 480], [0, 0, 1]])
    np.testing.assert_array_equal(cam.p, [[590, 0, 630, 0], [0, 595, 470, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(cam.d, [0.1, -0.05, 0.001, 0.002, 0.01])
    assert cam.distortion_model == "plumb_bob"
    assert cam.roi == (100, 50, 600, 800, False)  # RegionOfInterest field order


def test_camera_info_round_trip() -> None:
    original = camera_info()
    back = convert.camera_to_camera_info(convert.camera_info_to_camera(original), Header(frame_id="cam"))
    assert back.header.frame_id == "cam"
    for name in ("width", "height", "distortion_model", "binning_x", "binning_y", "roi"):
        assert getattr(back, name) == getattr(original, name), name
    for name in ("k", "p", "d"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)), np.asarray(getattr(original, name)))
    np.testing.assert_array_equal(back.r, np.eye(3).ravel())


def test_camera_info_zero_p_uses_k_and_empty_model() -> None:
    msg = CameraInfo(width=640, height=480)
    msg.k = np.array([500.0, 0, 320, 0, 500, 240, 0, 0, 1])
    cam = convert.camera_info_to_camera(msg)
    np.testing.assert_array_equal(cam.p, [[500, 0, 320, 0], [0, 500, 240, 0], [0, 0, 1, 0]])
    assert cam.distortion_model == "plumb_bob"


def test_camera_info_uncalibrated() -> None:
    with pytest.raises(InputError, match=r"k\[0\] == 0: camera is uncalibrated"):
        convert.camera_info_to_camera(CameraInfo(width=640, height=480))


def test_camera_info_invalid_roi() -> None:
    msg = camera_info()
    msg.roi.width = 2000
    with pytest.raises(InputError, match=r"CameraInfo.*roi"):
        convert.camera_info_to_camera(msg)


# --------------------------------------------------------------------------------------------- cv_bridge
def test_cv_bridge_agrees() -> None:
    bridge = convert.load_cv_bridge()
    if bridge is None:
        pytest.skip("cv_bridge (ROS 2) not importable here; it is compared on machines with a ROS install")
    rng = np.random.default_rng(2)
    cases = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 1, "bgr16": 3}
    for encoding, channels in cases.items():
        wide = encoding.endswith("16")
        raw = rng.integers(0, 65535 if wide else 255, (H, W * channels), dtype=np.uint16 if wide else np.uint8)
        rows = [r.astype("<u2" if wide else "u1").tobytes() for r in raw]
        msg = make_image(encoding, rows, W, pad=4)
        ours = convert.image_to_rgb(msg).astype(int)
        theirs = convert.image_to_rgb(msg, bridge=bridge).astype(int)
        assert np.abs(ours - theirs).max() <= (1 if wide else 0), encoding  # 16->8 bit rounding may differ
    msg = compressed(encode(".png", smooth_bgr()), "png")
    np.testing.assert_array_equal(convert.compressed_to_rgb(msg), convert.compressed_to_rgb(msg, bridge=bridge))


def test_image_to_array_unknown_encoding() -> None:
    with pytest.raises(InputError, match="Image: encoding 'nv21' is not supported"):
        convert.image_to_array(make_image("nv21", [bytes(6)], 2, pad=0))
