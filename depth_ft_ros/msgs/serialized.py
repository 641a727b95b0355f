"""Serialized (CDR) ROS messages: the header read from the bytes, the message deserialized once, on demand.

A subscription created with raw=True hands its callback the message's bytes as the middleware delivered them.
Storing those is nearly free; deserializing a 640x480 image costs the executor thread a copy per message, and
under an input flood most images are superseded before the worker takes one. So the callbacks keep the bytes
(and read the stamp straight from them: every message this node subscribes to starts with std_msgs/Header)
and only the frame the worker takes is deserialized.

Layout (OMG DDS-XTypes 1.3, 7.6.3.1.2 and 7.4; eProsima Fast CDR's EncodingAlgorithmFlag): a 4-byte
encapsulation header, 2 bytes representation identifier (byte 0 = 0x00, byte 1 = encoding flag | endianness
bit, 1 = little endian) and 2 bytes options, then the message. For PLAIN_CDR (XCDR1, what ROS 2 middlewares
send) and PLAIN_CDR2 (XCDR2 of final types) a top-level Header is laid out as int32 sec, uint32 nanosec,
uint32 frame_id length (NUL included), the characters. Parameter-list and delimited encodings put member or
size headers before the stamp: refused, not guessed.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from depth_ft_ros.errors import InputError

ENCAPSULATION_BYTES = 4
# representation identifier, byte 1 -> (name, byte order for struct) for the encodings read here
PLAIN_ENCODINGS = {0x00: ("CDR_BE", ">"), 0x01: ("CDR_LE", "<"), 0x06: ("CDR2_BE", ">"), 0x07: ("CDR2_LE", "<")}
REFUSED_ENCODINGS = {0x02: "PL_CDR_BE", 0x03: "PL_CDR_LE", 0x08: "D_CDR2_BE", 0x09: "D_CDR2_LE",
                     0x0A: "PL_CDR2_BE", 0x0B: "PL_CDR2_LE"}
MAX_FRAME_ID_BYTES = 4096  # a frame_id length beyond this is a corrupt message, not a name


@dataclass(frozen=True)
class SerializedHeader:
    stamp_ns: int
    frame_id: str
    encoding: str  # CDR_LE, CDR_BE, CDR2_LE or CDR2_BE


def _byte_order(data: bytes | memoryview, topic: str) -> tuple[str, str]:
    if len(data) < ENCAPSULATION_BYTES:
        raise InputError(f"{topic}: serialized message of {len(data)} bytes, shorter than the 4-byte CDR "
                         "encapsulation header")
    if data[0] != 0x00:
        raise InputError(f"{topic}: unknown CDR representation identifier 0x{data[0]:02x}{data[1]:02x} "
                         "(first byte must be 0x00)")
    kind = data[1]
    if kind in PLAIN_ENCODINGS:
        return PLAIN_ENCODINGS[kind]
    if kind in REFUSED_ENCODINGS:
        raise InputError(f"{topic}: CDR encoding {REFUSED_ENCODINGS[kind]} (0x00{kind:02x}) is not read here: only "
                         "plain CDR / CDR2 (what ROS 2 middlewares send for ROS messages)")
    raise InputError(f"{topic}: unknown CDR representation identifier 0x00{kind:02x}")


def read_stamp_ns(data: bytes | memoryview, topic: str) -> int:
    """header.stamp of a serialized message whose first field is a std_msgs/Header, in ns; InputError naming
    `topic` when the bytes are too short or not an encoding read here."""
    _, order = _byte_order(data, topic)
    if len(data) < ENCAPSULATION_BYTES + 8:
        raise InputError(f"{topic}: serialized message of {len(data)} bytes ends before header.stamp "
                         f"(needs {ENCAPSULATION_BYTES + 8})")
    sec, nanosec = struct.unpack_from(order + "iI", data, ENCAPSULATION_BYTES)
    if nanosec >= 1_000_000_000:
        raise InputError(f"{topic}: header.stamp.nanosec = {nanosec} is not below 1e9 (corrupt message?)")
    return sec * 1_000_000_000 + nanosec


def read_header(data: bytes | memoryview, topic: str) -> SerializedHeader:
    """header.stamp and header.frame_id read from the bytes (see read_stamp_ns)."""
    encoding, order = _byte_order(data, topic)
    stamp_ns = read_stamp_ns(data, topic)
    start = ENCAPSULATION_BYTES + 8
    if len(data) < start + 4:
        raise InputError(f"{topic}: serialized message of {len(data)} bytes ends before header.frame_id")
    (length,) = struct.unpack_from(order + "I", data, start)
    if length == 0 or length > MAX_FRAME_ID_BYTES or len(data) < start + 4 + length:
        raise InputError(f"{topic}: header.frame_id length {length} does not fit the {len(data)}-byte message "
                         "(truncated or corrupt)")
    raw = bytes(data[start + 4:start + 4 + length])
    if raw[-1] != 0:
        raise InputError(f"{topic}: header.frame_id is not NUL-terminated (corrupt message)")
    try:
        frame_id = raw[:-1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{topic}: header.frame_id is not UTF-8 ({exc})") from exc
    return SerializedHeader(stamp_ns, frame_id, encoding)


def _one_line(exc: BaseException) -> str:
    """The middleware's error without rmw's C source locations (", at /project/src/x.cpp:118")."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    return re.sub(r"(, at [^,]+:\d+)+$", "", text)


class SerializedMessage:
    """The bytes of one message as a raw subscription delivered them, and when they arrived.

    `stamp_ns` reads the header from the bytes (cheap, cached); `message()` deserializes once and caches the
    result, so the worker pays for the one frame it processes. Both raise InputError naming the topic."""

    __slots__ = ("_message", "_stamp_ns", "arrival_s", "data", "msg_type", "topic")

    def __init__(self, data: bytes, msg_type: Any, topic: str, arrival_s: float) -> None:
        self.data = data
        self.msg_type = msg_type
        self.topic = topic
        self.arrival_s = arrival_s  # time.monotonic() when the callback stored it
        self._stamp_ns: int | None = None
        self._message: Any = None

    @property
    def stamp_ns(self) -> int:
        if self._stamp_ns is None:
            self._stamp_ns = read_stamp_ns(self.data, self.topic)
        return self._stamp_ns

    def header(self) -> SerializedHeader:
        return read_header(self.data, self.topic)

    def message(self) -> Any:
        """The deserialized message (rclpy.serialization.deserialize_message), computed once."""
        if self._message is None:
            from rclpy.serialization import deserialize_message

            self.stamp_ns  # noqa: B018 - the clear message for what the header check refuses
            try:
                self._message = deserialize_message(self.data, self.msg_type)
            except Exception as exc:  # rclpy raises its C layer's errors (RCLError, RuntimeError) as they come
                raise InputError(f"{self.topic}: cannot deserialize {len(self.data)} bytes as "
                                 f"{self.msg_type.__name__} ({_one_line(exc)})") from exc
        return self._message

    def __len__(self) -> int:
        return len(self.data)
