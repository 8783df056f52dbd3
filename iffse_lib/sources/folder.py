"""Every image under a directory, recursively."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

from .. import config
from ..errors import SourceError
from ..records import PhotoRecord, text_of_name

log = logging.getLogger(__name__)


class FolderSource:
    """Images under ``root`` (by extension, case-insensitive), in sorted path order.

    With ``identity_from_folder=True`` the name of each file's parent folder is its identity
    label (``people/<identity>/photo.jpg``); files directly under ``root`` get none.
    ``source_id`` is the path relative to ``root`` (a name that is not valid UTF-8 is stored
    percent-encoded, its exact bytes in ``meta["name_hex"]``). Hidden files and everything in
    hidden folders are left out. Each record carries the file's size and mtime, so that a
    rerun reads a file again when it changed.
    """

    kind = "folder"

    def __init__(self, root: str | Path, identity_from_folder: bool = False,
                 extensions: tuple[str, ...] = config.IMAGE_EXTENSIONS):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a folder")
        self.identity_from_folder = identity_from_folder
        self.extensions = tuple(e.lower() for e in extensions)
        files = [p for p in self.root.rglob("*") if p.is_file()]
        self._files = sorted(p for p in files if p.suffix.lower() in self.extensions
                             and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
        log.info("%s: %d image files (%d other files skipped by extension or as hidden)", self.root,
                 len(self._files), len(files) - len(self._files))

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[PhotoRecord]:
        for path in self._files:
            rel = path.relative_to(self.root)
            identity = None
            if self.identity_from_folder and len(rel.parts) > 1:
                identity = text_of_name(rel.parts[-2])
            meta = {"root": text_of_name(str(self.root))}
            source_id = text_of_name(rel.as_posix())
            if source_id != rel.as_posix():
                meta["name_hex"] = os.fsencode(rel.as_posix()).hex()
            try:
                st = path.stat()
                stamp = (st.st_size, st.st_mtime_ns)
            except OSError:  # gone since it was listed: reading it fails, and is retried next time
                stamp = None
            yield PhotoRecord(kind=self.kind, source_id=source_id, path=path, identity=identity, meta=meta,
                              stamp=stamp)
