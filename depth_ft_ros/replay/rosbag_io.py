"""Reading any rosbag2 (MCAP or sqlite3) and writing MCAP rosbag2, with errors a person can act on.

The writer takes already-serialized CDR (what a raw rclpy subscription hands over), from several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.writer import StoragePlugin

from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.replay.messages import TYPESTORE, deserialize

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# rosbag2 metadata version 8: the newest that Humble's `ros2 bag` parses (version 9, Jazzy's, stores
# offered_qos_profiles as a YAML list, which Humble rejects with "bad conversion"); Jazzy reads 8 too.
BAG_VERSION: Final = 8


class BagError(DepthFtError):
    """A bag cannot be read or written, or lacks what was asked of it."""


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int


def keep_last_qos(depth: int = 10, *, reliable: bool = True, transient_local: bool = False) -> Qos:
    """A KEEP_LAST profile in rosbag2's metadata form (default deadline, lifespan and liveliness)."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def resolve_bag_path(path: str | Path) -> Path:
    """The rosbag2 directory for `path` (the directory itself, or a .mcap/.db3 file inside it), or a bare .mcap /
    .db3 file without metadata.yaml (rosbags reads its topics from the file itself)."""
    p = Path(path)
    if not p.exists():
        raise BagError(f"{path}: no such file or directory")
    if p.is_file() and (p.parent / "metadata.yaml").exists():
        return p.parent
    if p.is_file() and p.suffix in (".mcap", ".db3"):
        return p
    if not (p.is_dir() and (p / "metadata.yaml").exists()):
        raise BagError(f"{path}: not a rosbag2 bag (expected a directory with metadata.yaml and .mcap or .db3 "
                       "files, as `ros2 bag record` writes, or one .mcap / .db3 file)")
    return p


class BagReader:
    """A rosbag2 bag open for reading: `with BagReader(path) as bag: ...`."""

    def __init__(self, path: str | Path) -> None:
        self.path = resolve_bag_path(path)
        try:
            self._reader = AnyReader([self.path], default_typestore=TYPESTORE)
            self._reader.open()
        except Exception as exc:  # rosbags raises several types for corrupt/unsupported files
            raise BagError(f"{path}: cannot read the bag ({type(exc).__name__}: {exc})") from None
        self._connections = {c.topic: c for c in self._reader.connections}

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    def topics(self) -> list[TopicInfo]:
        return sorted((TopicInfo(name, info.msgtype or "?", info.msgcount)
                       for name, info in self._reader.topics.items()), key=lambda t: t.name)

    def describe_topics(self) -> str:
        """One line per topic: name, type, message count (for error messages)."""
        topics = self.topics()
        if not topics:
            return "  (the bag has no topics)"
        return "\n".join(f"  {t.name}  [{t.msgtype}]  {t.count} msgs" for t in topics)

    def msgtype(self, topic: str) -> str:
        return self._connections[topic].msgtype

    def offered_qos(self, topic: str) -> list[Qos]:
        """The QoS profiles the topic's publishers offered when the bag was recorded (empty when not stored)."""
        connection = self._connections.get(topic)
        profiles = getattr(getattr(connection, "ext", None), "offered_qos_profiles", None)
        return list(profiles) if isinstance(profiles, list) else []

    def first(self, topic: str) -> Any | None:
        """The first message of `topic`, deserialized (rosbags types), or None when it has none."""
        for _topic, msgtype, _time, data in self.messages([topic]):
            return deserialize(data, msgtype)
        return None

    def messages(self, topics: Iterable[str]) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log time ns, CDR bytes) of `topics` in log-time order."""
        connections = [c for c in self._reader.connections if c.topic in set(topics)]
        if not connections:
            return
        try:
            for connection, log_time_ns, data in self._reader.messages(connections=connections):
                yield connection.topic, connection.msgtype, log_time_ns, data
        except Exception as exc:
            raise BagError(f"{self.path}: cannot read messages ({type(exc).__name__}: {exc})") from None


class BagWriter:
    """rosbag2 writer (MCAP by default) for CDR bytes; connections are added on first use; thread-safe."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{path} already exists: choose another output path or remove it")
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        self._lock = threading.Lock()
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._closed = False
        try:
            self._writer.open()
        except Exception as exc:
            raise BagError(f"{path}: cannot create the bag ({exc})") from None

    def set_custom_data(self, key: str, value: str) -> None:
        self._writer.set_custom_data(key, value)

    def write(self, topic: str, msgtype: str, log_time_ns: int, data: bytes | memoryview,
              offered_qos: list[Qos] | None = None) -> None:
        """Write one message; types unknown to the typestore (no definition to embed) are skipped.
        `offered_qos`: the profiles the topic's publishers offer (stored with the topic on its first message;
        `ros2 bag play` replays with them), default reliable, volatile, keep last 10."""
        with self._lock:
            if self._closed:
                return
            connection = self._connections.get(topic)
            if connection is None:
                if msgtype not in TYPESTORE.types:
                    return
                connection = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE,
                                                         offered_qos_profiles=offered_qos or [keep_last_qos()])
                self._connections[topic] = connection
            self._writer.write(connection, int(log_time_ns), bytes(data))
            self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        """Finish the bag (index, metadata.yaml); safe to call twice and from an interrupt handler's finally."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
