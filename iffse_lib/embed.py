"""Aligned face chips -> vectors.

Two embedders compute the same network (dlib's face ResNet): ``dlib`` calls dlib's own
``compute_face_descriptor`` (the reference; about 100 ms per face on a CPU without BLAS) and
``torch`` runs the same weights in PyTorch (:mod:`iffse_lib.embed_torch`; vectors equal within
1e-4, batched, about ten times faster, and on GPUs). Both tag float32 vectors ``dlib-resnet-v1``;
the torch embedder's other precisions and test-time augmentations (:mod:`iffse_lib.tta`) have
tags of their own (``dlib-resnet-v1+bf16``, ``dlib-resnet-v1+flip``, ``dlib-resnet-v1+jit10``).

An embedder takes a batch of 150 x 150 RGB chips made by :func:`iffse_lib.faces.face_chips`
(dlib's ``get_face_chip`` alignment) and returns float32 vectors. Every vector the catalogue
stores is tagged with the embedder's ``model_tag``; vectors of different tags never mix.
:mod:`iffse_lib.embedders` picks an embedder by name, or by the tag of the vectors it makes.
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol, runtime_checkable

import numpy as np

from . import config
from .models import model_path

log = logging.getLogger(__name__)

#: The tag of float32 vectors of dlib's face ResNet, from either embedder.
MODEL_TAG = "dlib-resnet-v1"


@runtime_checkable
class Embedder(Protocol):
    """Chips in, vectors out."""

    #: Names the weights (and numeric precision) that produced a vector.
    model_tag: str
    dim: int

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips -> (N, dim) float32 vectors."""
        ...


@functools.cache
def _dlib_face_resnet(path: str):
    import dlib

    log.info("loading dlib's face ResNet from %s", path)
    return dlib.face_recognition_model_v1(path)


def check_chips(chips: np.ndarray) -> np.ndarray:
    """``chips`` as an (N, 150, 150, 3) uint8 array; ValueError if it is not one."""
    chips = np.asarray(chips)
    if chips.ndim != 4 or chips.shape[1:] != (config.CHIP_SIZE, config.CHIP_SIZE, 3) or chips.dtype != np.uint8:
        raise ValueError(
            f"expected chips of shape (N, {config.CHIP_SIZE}, {config.CHIP_SIZE}, 3) uint8, "
            f"got {chips.shape} {chips.dtype}")
    return chips


class DlibEmbedder:
    """dlib's face ResNet through ``compute_face_descriptor`` (the reference implementation)."""

    model_tag = MODEL_TAG
    dim = 128

    def __init__(self, num_jitters: int = 0):
        if num_jitters < 0:
            raise ValueError("num_jitters must be >= 0")
        self.num_jitters = num_jitters
        if num_jitters:
            self.model_tag = f"{MODEL_TAG}-jitter{num_jitters}"

    def __repr__(self) -> str:
        return f"DlibEmbedder(num_jitters={self.num_jitters})"

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = check_chips(chips)
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        net = _dlib_face_resnet(str(model_path(config.FACE_RESNET_FILE)))
        out = net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips], self.num_jitters)
        return np.asarray([np.asarray(v) for v in out], dtype=np.float32)
