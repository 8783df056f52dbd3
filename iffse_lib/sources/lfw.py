"""Labeled Faces in the Wild, in its official layout: ``<Name>/<Name>_NNNN.jpg``.

With a directory (``lfw_dir`` or ``IFFSE_LFW_DIR``) the photos are read from it. Without one,
scikit-learn's :func:`sklearn.datasets.fetch_lfw_people` downloads LFW into its standard cache
(``~/scikit_learn_data/lfw_home``, or ``data_home``) and the photos are read from the extracted
``lfw_funneled`` folder there; a second call reuses the cache. The download calls
scikit-learn's private ``_check_fetch_lfw`` (download and extract, nothing decoded); should a
scikit-learn release change or drop it, the public ``fetch_lfw_people`` does the same download
(and decodes every photo once, which takes longer), with a logged warning.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterator

from ..errors import DependencyMissing, SourceError
from ..records import PhotoRecord

log = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(?P<name>.+)_(?P<num>\d{4})\.jpg$")


def download_lfw(data_home: str | Path | None = None, parameter: str = "--lfw-dir") -> Path:
    """Download LFW through scikit-learn (its standard download and cache) and return the folder.

    ``parameter`` is what the caller sets to give a local copy instead (named in the error)."""
    try:
        import sklearn.datasets
    except ImportError:
        raise DependencyMissing("scikit-learn is needed to download LFW: pip install scikit-learn") from None
    try:
        try:
            from sklearn.datasets import _lfw

            # The download-and-extract step of fetch_lfw_people, without decoding 13,233 photos
            # into an in-memory array that iffse does not use.
            _, folder = _lfw._check_fetch_lfw(data_home=data_home, funneled=True, download_if_missing=True)
        except (ImportError, AttributeError, TypeError) as exc:
            log.warning("scikit-learn %s changed its private LFW download step (%s: %s); downloading through "
                        "the public sklearn.datasets.fetch_lfw_people instead, which also decodes every photo "
                        "once (slower)", sklearn.__version__, type(exc).__name__, exc)
            sklearn.datasets.fetch_lfw_people(data_home=data_home, funneled=True, download_if_missing=True)
            folder = Path(sklearn.datasets.get_data_home(data_home)) / "lfw_home" / "lfw_funneled"
    except (OSError, ValueError) as exc:
        raise SourceError(f"could not download LFW through scikit-learn: {exc}. "
                          f"Set {parameter} or IFFSE_LFW_DIR to a local copy of LFW.") from None
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"scikit-learn finished but {folder} is missing")
    return folder


def lfw_folder(lfw_dir: str | Path | None = None, data_home: str | Path | None = None,
               parameter: str = "--lfw-dir") -> Path:
    """The LFW folder to read: ``lfw_dir``, else ``$IFFSE_LFW_DIR`` (``make lab`` and ``make demo``
    set it to ``../shared/data/lfw`` when there is one), else scikit-learn's download. A notebook
    passes ``parameter="LFW_DIR"`` so that a failed download names its parameter."""
    if lfw_dir is None:
        lfw_dir = os.environ.get("IFFSE_LFW_DIR") or None
    return Path(lfw_dir).expanduser().resolve() if lfw_dir else download_lfw(data_home, parameter)


class LFWSource:
    """LFW photos with their identities; ``source_id`` is the file name (``Aaron_Eckhart_0001.jpg``)."""

    kind = "lfw"

    def __init__(self, lfw_dir: str | Path | None = None, data_home: str | Path | None = None,
                 limit: int | None = None):
        self.root = lfw_folder(lfw_dir, data_home)
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a folder (expected LFW's <Name>/<Name>_NNNN.jpg layout)")
        files = []
        for person in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for path in sorted(person.glob("*.jpg")):
                m = _FILE_RE.match(path.name)
                if m and m["name"] == person.name:
                    files.append(path)
        if not files:
            raise SourceError(f"{self.root} holds no LFW photos (expected <Name>/<Name>_NNNN.jpg)")
        self._files = files[:limit] if limit else files

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[PhotoRecord]:
        for path in self._files:
            m = _FILE_RE.match(path.name)
            yield PhotoRecord(kind=self.kind, source_id=path.name, path=path, identity=path.parent.name,
                              meta={"image_num": int(m["num"])})
