"""Where a run's outputs go (--out: a local folder or an object-store URI), one folder per bag, each published
whole or not at all.

A bag's outputs are made in a local work folder; then
- local --out: the folder is built as `<out>/<name>.partial-<token>` and renamed to `<out>/<name>` (one
  atomic rename; an older output of the same bag is renamed aside first, then removed);
- object store: the files are uploaded under `<out>/<name>.partial-<token>/`, copied server-side to
  `<out>/<name>/`, manifest.json last, then the partial prefix is deleted.
Either way manifest.json is in place only when everything else is, so a bag counts as done exactly when its
manifest is there. Leftover `*.partial-*` folders (a run killed part-way) are removed when the next run starts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from pyarrow import fs as pafs

from depth_ft_ros.fleet.sources import filesystem, is_remote

MANIFEST = "manifest.json"
PARTIAL = ".partial-"
REPLACED = ".replaced-"


class OutputStore:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.remote = is_remote(uri)
        self.fs, self.root = filesystem(self.uri)
        if not self.remote:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def manifest(self, name: str) -> dict[str, Any] | None:
        """The manifest of a bag's published outputs, or None when there are none (or it is unreadable)."""
        try:
            with self.fs.open_input_stream(self._path(name, MANIFEST)) as handle:
                doc = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def remove_partials(self) -> list[str]:
        """Remove what an interrupted run left (partial and replaced folders); returns their names."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False, allow_not_found=True))
        stale = [i.path for i in infos if i.type == pafs.FileType.Directory
                 and (PARTIAL in PurePosixPath(i.path).name or REPLACED in PurePosixPath(i.path).name)]
        for path in stale:
            self.fs.delete_dir(path)
        return [PurePosixPath(p).name for p in stale]

    def work_dir(self, name: str) -> Path:
        """A fresh local folder to build `name`'s outputs in (beside the final one when --out is local)."""
        token = uuid.uuid4().hex[:8]
        if self.remote:
            return Path(tempfile.mkdtemp(prefix=f"{name}{PARTIAL}{token}-"))
        path = Path(self.root) / f"{name}{PARTIAL}{token}"
        path.mkdir()
        return path

    def discard(self, work: Path) -> None:
        shutil.rmtree(work, ignore_errors=True)

    def publish(self, name: str, work: Path, manifest: dict[str, Any]) -> None:
        """Make `work` the published outputs of `name`, with `manifest`, replacing older ones."""
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        if self.remote:
            self._publish_remote(name, work)
            return
        final = Path(self.root) / name
        aside = None
        if final.exists():
            aside = final.with_name(f"{name}{REPLACED}{uuid.uuid4().hex[:8]}")
            os.rename(final, aside)
        os.rename(work, final)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def _publish_remote(self, name: str, work: Path) -> None:
        partial = self._path(f"{name}{PARTIAL}{uuid.uuid4().hex[:8]}")
        files = sorted(p for p in work.rglob("*") if p.is_file())
        try:
            for file in files:  # manifest.json is uploaded like the others: the partial prefix is no output
                with file.open("rb") as src, self.fs.open_output_stream(
                        f"{partial}/{file.relative_to(work).as_posix()}") as dst:
                    shutil.copyfileobj(src, dst, 8 << 20)
            final = self._path(name)
            self.fs.delete_dir_contents(final, missing_dir_ok=True)
            for file in sorted(files, key=lambda p: p.name == MANIFEST):  # the manifest last
                rel = file.relative_to(work).as_posix()
                self.fs.copy_file(f"{partial}/{rel}", f"{final}/{rel}")
        finally:
            self.fs.delete_dir(partial)
            shutil.rmtree(work, ignore_errors=True)

    def write_json(self, name: str, doc: dict[str, Any]) -> None:
        """A small JSON file at the root of --out (the run summary), replaced atomically where the FS can."""
        text = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8")
        if self.remote:
            with self.fs.open_output_stream(self._path(name)) as handle:
                handle.write(text)
            return
        tmp = Path(self.root) / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(text)
        os.replace(tmp, Path(self.root) / name)

    def read_json(self, name: str) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self._path(name)) as handle:
                doc = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None
