"""The embedders by name, and the embedder that makes vectors of a given model tag.

Two embedders compute dlib's face ResNet: ``dlib`` (:class:`iffse_lib.embed.DlibEmbedder`, the
reference) and ``torch`` (:class:`iffse_lib.embed_torch.TorchEmbedder`, the same weights in
PyTorch). This module sits above both; neither imports it.
"""

from __future__ import annotations

import importlib.util

from .embed import MODEL_TAG, DlibEmbedder, Embedder
from .embed_torch import TorchEmbedder
from .errors import IffseError
from .tta import split_tag


#: name -> class; ``TorchEmbedder`` imports torch when it starts work, not before.
EMBEDDERS = {"dlib": DlibEmbedder, "torch": TorchEmbedder}


def default_embedder_name() -> str:
    """``torch`` when PyTorch is installed (same vectors as dlib's, about 10x faster), else ``dlib``."""
    return "torch" if importlib.util.find_spec("torch") is not None else "dlib"


def get_embedder(name: str | None = None, **kwargs) -> Embedder:
    """An embedder by name (``dlib``, ``torch``); None gives the default (see default_embedder_name)."""
    name = name or default_embedder_name()
    try:
        factory = EMBEDDERS[name]
    except KeyError:
        raise IffseError(f"unknown embedder {name!r}; choose one of {sorted(EMBEDDERS)}") from None
    return factory(**kwargs)


def query_embedder() -> Embedder:
    """The default embedder set for a few chips at a time, a person waiting (searches, the compare
    widget): the torch embedder on ONE thread (``num_threads=1``); its vectors are the same.

    On a CPU whose cores other work shares, torch's threads wait for each other at every layer:
    measured on 2 cores at a load average of 4.6, 2 chips took 0.77 s on two threads and 0.03 s on
    one, the occlusion map's 50 chips 2.1 s and 0.37 s. Batch work (``iffse index``) keeps the
    default threads."""
    if default_embedder_name() == "torch":
        return get_embedder("torch", num_threads=1)
    return get_embedder()


def embedder_for_tag(tag: str) -> Embedder:
    """The embedder that makes vectors of model ``tag`` (to compute lost vectors again): the
    precision suffix (``+bf16``) and the test-time augmentation's (``+flip``, ``+jit10``) are read
    back into a torch embedder's settings."""
    if tag.startswith(MODEL_TAG + "-jitter") and tag[len(MODEL_TAG) + 7:].isdigit():
        return DlibEmbedder(num_jitters=int(tag[len(MODEL_TAG) + 7:]))
    try:
        base, tta = split_tag(tag)
    except ValueError:
        base, tta = "", None
    if base == MODEL_TAG and tta.kind == "none":
        return get_embedder()
    if base == MODEL_TAG or (base.startswith(MODEL_TAG + "+") and "+" not in base[len(MODEL_TAG) + 1:]):
        dtype = base[len(MODEL_TAG) + 1:] or "float32"
        try:
            embedder = get_embedder("torch", dtype=dtype, tta=tta)
        except ValueError:
            embedder = None
        if embedder is not None and embedder.model_tag == tag:
            return embedder
    raise IffseError(f"no embedder makes vectors of model {tag!r}; embedders here: {sorted(EMBEDDERS)}")
