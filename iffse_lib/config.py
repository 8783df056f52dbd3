"""Paths and defaults only. Nothing here reads files or logs."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The catalogue folder; every command takes ``--data DIR`` to override it.
DATA_DIR = Path(os.environ.get("IFFSE_DATA", PROJECT_ROOT / "data"))
#: Where `make models` puts dlib's model files.
MODELS_DIR = Path(os.environ.get("IFFSE_MODELS", PROJECT_ROOT / "models"))

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
