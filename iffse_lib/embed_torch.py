"""dlib's face ResNet in PyTorch: dlib's descriptors, batched, on a CPU or a GPU.

:class:`TorchEmbedder` runs the network :func:`iffse_lib.dlibnet.build_face_resnet` builds from
dlib's own model file, on the same 150 px chips and with the same preprocessing as
:class:`iffse_lib.embed.DlibEmbedder` ((rgb - (122.782, 117.001, 104.298)) / 256, the means read
from the file).

Model tags
----------
A model tag names the weights and the numeric precision that made a vector, not the code that ran
them:

- float32, on any device, with or without ``channels_last`` or ``compile``: ``dlib-resnet-v1``,
  the tag :class:`~iffse_lib.embed.DlibEmbedder` uses. These vectors match dlib's
  ``compute_face_descriptor`` to within 1e-4 (``tests/test_dlibnet.py`` checks it on every face
  of ``../shared/data/faces``), far below the 0.6 same-person distance, so a catalogue embedded
  with either embedder can be searched with the other. On a GPU this means IEEE float32:
  TensorFloat-32 is switched off while the embedder runs (PyTorch allows it for cuDNN
  convolutions by default; its 10-bit mantissa is float16's, and float16 moves the vectors by
  up to 7e-4).
- ``tf32`` (float32 storage, TensorFloat-32 products on GPUs that have them),
  bfloat16 and float16: ``dlib-resnet-v1+tf32``, ``dlib-resnet-v1+bf16`` and
  ``dlib-resnet-v1+fp16``. Measured on a CPU, bfloat16 vectors differ from float32 ones by up
  to 4e-3 and float16 ones by up to 7e-4, so they get their own tags and never mix silently
  with float32 vectors.
- Test-time augmentation (``tta``, :mod:`iffse_lib.tta`) appends its own suffix after the
  precision's: ``dlib-resnet-v1+flip``, ``dlib-resnet-v1+jit10``, ``dlib-resnet-v1+bf16+flip``.

Torch is imported when the work starts, not when this module is imported.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import numpy as np

from . import config
from . import tta as _tta
from .embed import MODEL_TAG, check_chips
from .errors import DependencyMissing, IffseError
from .models import model_path

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "fp32": "float32", "float": "float32", "tf32": "tf32",
           "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16"}
_TAG_SUFFIX = {"float32": "", "tf32": "+tf32", "bfloat16": "+bf16", "float16": "+fp16"}
#: The torch dtype of the parameters and activations for each precision.
_STORAGE = {"float32": "float32", "tf32": "float32", "bfloat16": "bfloat16", "float16": "float16"}

#: Chips per forward pass when ``batch_size`` is None. On a CPU small batches stay in the caches:
#: one thread of this project's machine, channels-last, ran 206 faces/s in batches of 16, 167 in
#: batches of 64 and 120 in batches of 256.
_DEFAULT_BATCH = {"cpu": 32, "cuda": 256}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise DependencyMissing(
            "the torch embedder needs PyTorch. Install it with `pip install torch` (CPU only: "
            "`pip install torch --index-url https://download.pytorch.org/whl/cpu`), or use "
            "get_embedder('dlib').") from exc
    return torch


def _dtype_name(dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype must be float32, tf32, bfloat16 or float16, not {dtype!r}") from None


class TorchEmbedder:
    """dlib's face ResNet in PyTorch (see the module docstring for the model tags).

    - ``device``: ``"cpu"`` or ``"cuda"`` (``"cuda:1"`` etc.).
    - ``batch_size``: chips per forward pass; None picks 32 on a CPU and 256 on a GPU.
    - ``dtype``: float32, bfloat16 or float16 (a ``torch.dtype`` or its name, or bf16/fp16), or
      ``"tf32"``: float32 with TensorFloat-32 convolutions and matrix products on a GPU.
    - ``channels_last``: NHWC memory layout; None uses it on a CPU, where it measured faster.
    - ``compile``: run the network through ``torch.compile`` (slow to start: minutes on a CPU;
      a short last batch is zero-padded so that one batch shape is ever compiled).
    - ``num_threads``: torch's intra-op threads while embedding (None leaves torch's setting).
    - ``tta``: test-time augmentation, ``none``, ``flip`` or ``jitter:N`` (or a
      :class:`iffse_lib.tta.TTA`; ``tta_seed`` seeds jitter): each vector is the mean over the
      chip's augmented copies, made on the device. A pass then holds ``batch_size // copies``
      chips with all their copies.
    """

    dim = 128

    def __init__(self, device: str = "cpu", batch_size: int | None = None, dtype="float32",
                 channels_last: bool | None = None, compile: bool = False,
                 num_threads: int | None = None, tta="none", tta_seed: int = 0):
        self.device = str(device)
        self.batch_size = batch_size
        self.dtype = _dtype_name(dtype)
        self.channels_last = channels_last
        self.compile = compile
        self.num_threads = num_threads
        self.tta = _tta.parse(tta, tta_seed)
        self.model_tag = MODEL_TAG + _TAG_SUFFIX[self.dtype] + self.tta.suffix

    def __repr__(self) -> str:
        return (f"TorchEmbedder(device={self.device!r}, batch_size={self.batch_size}, "
                f"dtype={self.dtype!r}, channels_last={self.channels_last}, "
                f"compile={self.compile}, num_threads={self.num_threads}, tta={str(self.tta)!r}"
                + (f", tta_seed={self.tta.seed}" if self.tta.seed else "") + ")")

    def _settings(self):
        """Check the settings; return (torch, device type, batch size, channels_last)."""
        torch = _torch()
        kind = self.device.split(":")[0]
        if kind not in _DEFAULT_BATCH:
            raise IffseError(f"device must be 'cpu' or 'cuda', not {self.device!r}")
        if kind == "cuda" and not torch.cuda.is_available():
            raise IffseError(
                f"device={self.device!r} asked for, but this PyTorch ({torch.__version__}) sees "
                "no CUDA GPU. Use device='cpu', or install a CUDA build of torch on a GPU machine.")
        batch = self.batch_size if self.batch_size is not None else _DEFAULT_BATCH[kind]
        if batch < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, not {self.num_threads}")
        channels_last = (kind == "cpu") if self.channels_last is None else bool(self.channels_last)
        return torch, kind, batch, channels_last

    def network(self):
        """The torch module ``embed`` runs (built on first use, shared by embedders with the same
        settings): (N, 150, 150, 3) uint8 tensors on the embedder's device -> (N, 128)."""
        torch, kind, batch, channels_last = self._settings()
        path = str(model_path(config.FACE_RESNET_FILE))
        return _prepared_net(path, self.device, _STORAGE[self.dtype], channels_last, self.compile)

    def embed(self, chips) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float32 descriptors.

        ``chips`` is a numpy array, or a torch tensor on any device (chips made on the GPU stay
        there)."""
        torch, kind, batch, channels_last = self._settings()
        images = _as_tensor(torch, chips)
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        net = self.network()
        copies = self.tta.copies
        per_pass = max(1, batch // copies)  # chips per forward pass, each with its copies
        out = []
        with self._running(torch, kind), torch.inference_mode():
            for start in range(0, len(images), per_pass):
                part = images[start:start + per_pass]
                if kind == "cuda" and part.device.type == "cpu":
                    part = part.pin_memory()  # pinned: copied while the GPU works
                n = len(part) * copies
                part = _tta.augment(torch, part.to(self.device, non_blocking=True), self.tta)
                short = per_pass * copies - n if self.compile else 0
                if short:  # one shape only: no recompiling for the tail
                    part = torch.cat([part, part.new_zeros((short,) + part.shape[1:])])
                out.append(_tta.mean_of_copies(net(part)[:n].float(), copies))
            return torch.cat(out).cpu().numpy()

    @contextlib.contextmanager
    def _running(self, torch, kind: str):
        """Thread count on the CPU; on a GPU, cuDNN autotuning, and TF32 off unless asked for.
        Torch's global settings are restored afterwards."""
        threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
        conv = getattr(cudnn, "conv", None)
        new_api = hasattr(conv, "fp32_precision")  # torch >= 2.9; mixing the two APIs raises
        saved = ((conv.fp32_precision, matmul.fp32_precision) if new_api
                 else (cudnn.allow_tf32, matmul.allow_tf32))
        benchmark = cudnn.benchmark
        try:
            if kind == "cuda":
                cudnn.benchmark = True
                if new_api:
                    conv.fp32_precision = matmul.fp32_precision = (
                        "tf32" if self.dtype == "tf32" else "ieee")
                else:
                    cudnn.allow_tf32 = matmul.allow_tf32 = self.dtype == "tf32"
            yield
        finally:
            torch.set_num_threads(threads)
            cudnn.benchmark = benchmark
            if new_api:
                conv.fp32_precision, matmul.fp32_precision = saved
            else:
                cudnn.allow_tf32, matmul.allow_tf32 = saved


def _as_tensor(torch, chips):
    if not isinstance(chips, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(check_chips(chips)))
    size = config.CHIP_SIZE
    if chips.ndim != 4 or tuple(chips.shape[1:]) != (size, size, 3) or chips.dtype != torch.uint8:
        raise ValueError(f"expected chips of shape (N, {size}, {size}, 3) uint8, "
                         f"got {tuple(chips.shape)} {chips.dtype}")
    return chips


@functools.cache
def _prepared_net(path: str, device: str, dtype: str, channels_last: bool, compile: bool):
    """The network for one set of settings, built once per process and shared."""
    torch = _torch()
    from . import dlibnet

    log.info("loading the face ResNet into PyTorch from %s (%s, %s)", path, device, dtype)
    net = dlibnet.fold_affine(dlibnet.build_face_resnet(path))
    net = net.to(device=device, dtype=getattr(torch, dtype))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        net.channels_last = True
    net.eval()
    if compile:
        net = torch.compile(net, dynamic=False)
    return net
