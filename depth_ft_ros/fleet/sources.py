"""Which bags a fleet run reads: local folders and files, globs, and object-store URIs (s3://...), each with an
identity (every file's size and modification time) that the manifest of its outputs records.

Filesystems are pyarrow's (LocalFileSystem, S3FileSystem: credentials and endpoint from the usual AWS_* variables,
AWS_ENDPOINT_URL for an S3-compatible server). A bag on an object store is copied to a local folder, streamed in
chunks, before rosbags reads it (rosbags reads local files); a local bag is read where it is.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pyarrow import fs as pafs

BAG_FILE_SUFFIXES = (".mcap", ".db3")
CHUNK_BYTES = 8 << 20
WILDCARDS = "*?["


@dataclass(frozen=True)
class BagSource:
    """One input bag: a rosbag2 folder (metadata.yaml + storage files) or one bare .mcap / .db3 file."""

    uri: str  # a local path or scheme://bucket/key, as the run names it
    name: str  # the folder its outputs go to under --out
    is_dir: bool
    files: tuple[tuple[str, int, int], ...] = field(default=())  # (name relative to the bag, size bytes, mtime ns)

    def identity(self) -> dict[str, Any]:
        """What the manifest compares to decide that a bag is unchanged since its outputs were written."""
        return {"uri": self.uri, "files": [{"name": n, "size": s, "mtime_ns": t} for n, s, t in self.files]}

    @property
    def size_bytes(self) -> int:
        return sum(size for _n, size, _t in self.files)


@dataclass(frozen=True)
class InputProblem:
    """An input that names no readable bag (reported like a failed bag)."""

    uri: str
    reason: str


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI pyarrow knows (s3://, gs://, hdfs://, file://)."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).resolve())
    return pafs.FileSystem.from_uri(uri)


def _join(uri: str, path: str, base: str) -> str:
    """The URI of `path` (a path inside the filesystem of `uri`, whose own path is `base`)."""
    if not is_remote(uri):
        return path
    scheme = uri.split("://", 1)[0]
    return f"{scheme}://{path}" if path != base else uri


def _info(fs: pafs.FileSystem, path: str) -> pafs.FileInfo:
    return fs.get_file_info(path)


def _bag_files(fs: pafs.FileSystem, path: str, is_dir: bool) -> tuple[tuple[str, int, int], ...]:
    if not is_dir:
        info = _info(fs, path)
        return ((PurePosixPath(path).name, int(info.size or 0), int(info.mtime_ns or 0)),)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return tuple(sorted((PurePosixPath(i.path).name, int(i.size or 0), int(i.mtime_ns or 0))
                        for i in infos if i.type == pafs.FileType.File))


def _bags_under(fs: pafs.FileSystem, path: str) -> list[tuple[str, bool]]:
    """Every bag below a folder that is not a bag itself: folders with metadata.yaml, and bare storage files
    outside them."""
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    files = [i.path for i in infos if i.type == pafs.FileType.File]
    bag_dirs = sorted({str(PurePosixPath(f).parent) for f in files if PurePosixPath(f).name == "metadata.yaml"})
    found: list[tuple[str, bool]] = [(d, True) for d in bag_dirs]
    for f in sorted(files):
        if f.endswith(BAG_FILE_SUFFIXES) and not any(f.startswith(d + "/") for d in bag_dirs):
            found.append((f, False))
    return found


def _resolve(fs: pafs.FileSystem, path: str) -> list[tuple[str, bool]] | str:
    """The bags `path` names, or why it names none."""
    try:
        info = _info(fs, path)
    except OSError as exc:  # permissions, a bucket that does not exist, an unreachable endpoint
        return f"cannot read it ({type(exc).__name__}: {exc})"
    if info.type == pafs.FileType.NotFound:
        return "no such file, folder or object"
    if info.type == pafs.FileType.File:
        parent = str(PurePosixPath(path).parent)
        if PurePosixPath(path).name == "metadata.yaml" or (
                path.endswith(BAG_FILE_SUFFIXES) and _info(fs, f"{parent}/metadata.yaml").type == pafs.FileType.File):
            return [(parent, True)]
        if path.endswith(BAG_FILE_SUFFIXES):
            return [(path, False)]
        return "not a rosbag2 bag (a folder with metadata.yaml, or a .mcap / .db3 file)"
    if _info(fs, f"{path}/metadata.yaml").type == pafs.FileType.File:
        return [(path, True)]
    bags = _bags_under(fs, path)
    return bags or "a folder with no rosbag2 bag in it (no metadata.yaml, .mcap or .db3 below it)"


def _expand_glob(pattern: str) -> list[str]:
    if not is_remote(pattern):
        return sorted(glob.glob(pattern))
    fs, path = filesystem(pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0].rsplit("/", 1)[0] + "/")
    base = path.rstrip("/")
    scheme = pattern.split("://", 1)[0]
    wanted = pattern.split("://", 1)[1]
    depth = wanted.count("/")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(f"{scheme}://{i.path}" for i in infos
                  if i.path.count("/") == depth and fnmatch.fnmatchcase(i.path, wanted))


def expand_inputs(patterns: list[str]) -> tuple[list[BagSource], list[InputProblem]]:
    """The bags the command line names (each once, in the order given), and the inputs that name none."""
    found: dict[str, tuple[str, bool, pafs.FileSystem, str]] = {}
    problems: list[InputProblem] = []
    for pattern in patterns:
        uris = _expand_glob(pattern) if any(c in pattern for c in WILDCARDS) else [pattern]
        if not uris:
            problems.append(InputProblem(pattern, "the pattern matches nothing"))
        for uri in uris:
            fs, path = filesystem(uri)
            resolved = _resolve(fs, path)
            if isinstance(resolved, str):
                problems.append(InputProblem(uri, resolved))
                continue
            for bag_path, is_dir in resolved:
                bag_uri = _join(uri, bag_path, path)
                found.setdefault(bag_uri, (bag_uri, is_dir, fs, bag_path))
    sources = []
    names = _unique_names([uri for uri in found])
    for (uri, is_dir, fs, path), name in zip(found.values(), names, strict=True):
        try:
            files = _bag_files(fs, path, is_dir)
        except OSError as exc:
            problems.append(InputProblem(uri, f"cannot list it ({type(exc).__name__}: {exc})"))
            continue
        sources.append(BagSource(uri, name, is_dir, files))
    return sources, problems


def bag_name(uri: str) -> str:
    name = PurePosixPath(uri.split("://", 1)[-1].rstrip("/")).name
    for suffix in BAG_FILE_SUFFIXES:
        name = name.removesuffix(suffix)
    return name or "bag"


def _unique_names(uris: list[str]) -> list[str]:
    """Each bag's output folder: its own name, with a short hash of its URI where two bags share a name
    (robot1/bag_0 and robot2/bag_0)."""
    names = [bag_name(u) for u in uris]
    return [n if names.count(n) == 1 else f"{n}-{hashlib.sha1(u.encode()).hexdigest()[:8]}"
            for n, u in zip(names, uris, strict=True)]


@contextlib.contextmanager
def staged(source: BagSource, workdir: Path | None = None) -> Iterator[Path]:
    """A local path rosbags can open for `source`: the bag itself when local, else a copy made here (streamed in
    chunks, removed afterwards)."""
    if not is_remote(source.uri):
        yield Path(source.uri)
        return
    fs, path = filesystem(source.uri)
    with tempfile.TemporaryDirectory(prefix="fleet-bag-", dir=workdir) as tmp:
        local = Path(tmp) / (bag_name(source.uri) if source.is_dir else PurePosixPath(path).name)
        names = [n for n, _s, _t in source.files]
        if source.is_dir:
            local.mkdir()
        for name in names:
            remote = f"{path}/{name}" if source.is_dir else path
            target = local / name if source.is_dir else local
            with fs.open_input_stream(remote) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_BYTES)
        yield local
