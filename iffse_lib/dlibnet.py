"""dlib's networks as PyTorch modules, built from what :mod:`iffse_lib.dlib_format` reads.

:func:`build_face_resnet` gives dlib's face recognition ResNet
(``dlib_face_recognition_resnet_model_v1.dat``) as a ``torch.nn.Module`` whose ``forward`` takes
(N, 150, 150, 3) uint8 RGB chips, like dlib's ``input_rgb_image_sized<150>``, and returns (N, 128)
descriptors. :func:`build_mmod_detector` gives dlib's CNN face detector and its options. The parsed
file is cached per process; every call returns a new module. :func:`fold_affine` folds the affine
layers into the convolutions before them, for inference.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from . import config
from .dlib_format import (DnnFile, DnnLayer, MMODOptions, face_resnet_definition, match_definition,
                          mmod_definition, mmod_options, read_dnn)
from .errors import DependencyMissing, ModelFileCorrupt

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as exc:  # pragma: no cover - the venv has torch
    raise DependencyMissing(
        "iffse_lib.dlibnet needs PyTorch. Install it with `pip install torch` "
        "(CPU only: `pip install torch --index-url https://download.pytorch.org/whl/cpu`), "
        "or use the dlib embedder (`get_embedder('dlib')`).") from exc

#: Parameters of dlib's face ResNet: 29 convolutions, 29 affine layers and one fc layer.
FACE_RESNET_PARAMS = 5_614_592


# ----------------------------------------------------------------------------------------
# PyTorch modules


class _Affine(nn.Module):
    """dlib's affine_ (a frozen batch norm): y = gamma * x + beta, per channel or per element."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray):
        super().__init__()
        self.gamma = nn.Parameter(torch.from_numpy(gamma), requires_grad=False)
        self.beta = nn.Parameter(torch.from_numpy(beta), requires_grad=False)

    def forward(self, x):
        return torch.addcmul(self.beta, x, self.gamma)


class _Pool(nn.Module):
    def __init__(self, kind: str, f: dict[str, Any]):
        super().__init__()
        self.kind = kind
        self.everything = f["nr"] == 0 and f["nc"] == 0
        self.kernel = (f["nr"], f["nc"])
        self.stride = (f["stride_y"], f["stride_x"])
        self.padding = (f["padding_y"], f["padding_x"])

    def forward(self, x):
        if self.everything:  # dlib's *_pool_everything: one window over the whole map
            if self.kind == "avg_pool":
                return x.mean(dim=(2, 3), keepdim=True)
            return x.amax(dim=(2, 3), keepdim=True)
        if self.kind == "avg_pool":
            return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=False)
        return F.max_pool2d(x, self.kernel, self.stride, self.padding)


class _Linear(nn.Linear):
    """dlib's fc_: flattens its input (k, nr, nc order, as PyTorch's flatten)."""

    def forward(self, x):
        return super().forward(x.flatten(1))


class _Marker(nn.Module):
    """tag, skip and add_prev: no parameters; DlibNet.forward does the work."""

    def __init__(self, kind: str, tag: int):
        super().__init__()
        self.kind = kind
        self.tag = tag

    def extra_repr(self) -> str:
        return f"{self.kind}{self.tag}"


def _add_zero_padded(a, b):
    """dlib's add_prev (tt::add): tensors of different shapes are added as if both were
    zero-padded at the far end of each dimension to the larger shape."""
    if a.shape == b.shape:
        return a + b
    shape = [max(p, q) for p, q in zip(a.shape, b.shape)]

    def pad(t):
        widths = []
        for dim in (3, 2, 1):
            widths += [0, shape[dim] - t.shape[dim]]
        return F.pad(t, widths) if any(widths) else t

    return pad(a) + pad(b)


class DlibNet(nn.Module):
    """A dlib network as a PyTorch module, layers from the input to the output.

    ``forward`` takes (N, H, W, 3) uint8 RGB images (or floats on the same 0-255 scale) and does
    what dlib's ``input_rgb_image_sized`` does (``normalize``): subtract the per-channel means
    stored in the file and divide by 256, in float32 whatever the parameters' dtype; then runs
    the layers (``body``). Set ``channels_last`` along with moving the module to
    ``torch.channels_last``.
    """

    def __init__(self, mean: tuple[float, float, float], input_size: tuple[int, int] | None,
                 layers: list[nn.Module]):
        super().__init__()
        self.mean = tuple(float(m) for m in mean)
        self.input_size = input_size
        self.layers = nn.ModuleList(layers)
        self.channels_last = False

    def forward(self, images):
        return self.body(self.normalize(images))

    def normalize(self, images):
        """(N, H, W, 3) 0-255 RGB -> (N, 3, H, W) (rgb - mean) / 256 in the parameters' dtype."""
        if images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"expected (N, H, W, 3) RGB images, got shape {tuple(images.shape)}")
        if self.input_size is not None and tuple(images.shape[1:3]) != self.input_size:
            raise ValueError(f"this network takes {self.input_size[0]}x{self.input_size[1]} "
                             f"images, got {images.shape[1]}x{images.shape[2]}")
        # The means as Python floats: no host-to-device copy (which would wait for the GPU).
        x = images.to(torch.float32)
        x = torch.stack([x[..., c] - m for c, m in enumerate(self.mean)], dim=1) / 256.0
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(next(self.parameters()).dtype)

    def body(self, x):
        """The layers after the input layer, on an (N, 3, H, W) tensor made as dlib's input
        layer makes it."""
        tags = {}
        for layer in self.layers:
            if isinstance(layer, _Marker):
                if layer.kind == "tag":
                    tags[layer.tag] = x
                elif layer.kind == "skip":
                    x = tags[layer.tag]
                else:
                    x = _add_zero_padded(x, tags[layer.tag])
            else:
                x = layer(x)
        return x


def _to_module(kind: str, settings: dict[str, Any], layer: DnnLayer) -> nn.Module:
    f = layer.fields
    if kind in ("tag", "skip", "add_prev"):
        return _Marker(kind, settings["tag"])
    if kind == "relu":
        return nn.Identity() if f.get("disabled") else nn.ReLU()
    if kind in ("max_pool", "avg_pool"):
        return _Pool(kind, f)
    if kind == "con":
        n, k, nr, nc = f["filters"]
        conv = nn.Conv2d(k, n, (nr, nc), stride=(f["stride_y"], f["stride_x"]),
                         padding=(f["padding_y"], f["padding_x"]), bias=f["use_bias"])
        params = f["params"].reshape(-1)
        w = params[:n * k * nr * nc].reshape(n, k, nr, nc)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
            if f["use_bias"]:
                conv.bias.copy_(torch.from_numpy(params[n * k * nr * nc:]))
        conv.requires_grad_(False)
        if f["use_relu"]:
            return nn.Sequential(conv, nn.ReLU())
        return conv
    if kind == "fc":
        n_in, n_out = f["num_inputs"], f["num_outputs"]
        has_bias = f["bias_mode"] == 0 and f["use_bias"]
        fc = _Linear(n_in, n_out, bias=has_bias)
        params = f["params"].reshape(-1)
        with torch.no_grad():  # dlib: y = x W with W (inputs x outputs)
            fc.weight.copy_(torch.from_numpy(params[:n_in * n_out].reshape(n_in, n_out).T))
            if has_bias:
                fc.bias.copy_(torch.from_numpy(params[n_in * n_out:]))
        fc.requires_grad_(False)
        return fc
    if kind == "affine":
        shape = f["gamma"]
        size = math.prod(shape)
        params = f["params"].reshape(-1)
        gamma, beta = params[:size], params[size:]
        if "running_variances" in f:  # bn_ as dlib's affine_(const bn_&) converts it
            g = gamma / np.sqrt(f["running_variances"].reshape(-1) + np.float32(f["eps"]))
            beta = beta - g * f["running_means"].reshape(-1)
            gamma = g
        if f.get("disabled"):
            return nn.Identity()
        # CONV_MODE (0): one gamma per channel; FC_MODE (1): one per element (k, nr, nc).
        view = (1, shape[1], 1, 1) if f["mode"] == 0 else (1,) + tuple(shape[1:])
        return _Affine(gamma.astype(np.float32).reshape(view), beta.astype(np.float32).reshape(view))
    raise AssertionError(kind)  # match_definition only lets known kinds through


def _build(dnn: DnnFile, definition: list[tuple], loss_types: tuple[str, ...]) -> DlibNet:
    matched = match_definition(dnn, definition, loss_types)
    *body, (_, _, input_layer) = matched
    f = input_layer.fields
    mean = (f["avg_red"], f["avg_green"], f["avg_blue"])
    size = (f["nr"], f["nc"]) if "nr" in f else None
    modules = [_to_module(kind, settings, layer) for kind, settings, layer in reversed(body)]
    return DlibNet(mean, size, modules).eval()


def build_face_resnet(path: str | os.PathLike | None = None) -> DlibNet:
    """dlib's face recognition ResNet with the weights from ``path`` (default: models/).

    Returns a new float32 CPU module in eval mode each call (the parsed file is cached).
    """
    if path is None:
        from .models import model_path

        path = model_path(config.FACE_RESNET_FILE)
    dnn = read_dnn(path)
    net = _build(dnn, face_resnet_definition(), ("loss_metric_2",))
    count = sum(p.numel() for p in net.parameters())
    if count != FACE_RESNET_PARAMS:
        raise ModelFileCorrupt(f"{path}: the network has {count:,} parameters, dlib's face "
                               f"ResNet has {FACE_RESNET_PARAMS:,}; fetch it again with `make models`.")
    return net


def fold_affine(net: DlibNet) -> DlibNet:
    """A copy of ``net`` for inference: each per-channel affine layer that directly follows a
    convolution is folded into its filters and biases (gamma * (W x + b) + beta), and a ReLU that
    directly follows such a convolution runs in place on its fresh output.

    The same function in fewer passes over memory; outputs differ from ``net``'s by float32
    rounding only (about 1e-7 on the face ResNet's descriptors).
    """
    import copy

    net = copy.deepcopy(net)
    old = list(net.layers)
    new: list[nn.Module] = []
    i = 0
    while i < len(old):
        layer = old[i]
        i += 1
        if not isinstance(layer, nn.Conv2d):
            new.append(layer)
            continue
        if i < len(old) and isinstance(old[i], _Affine) and old[i].gamma.shape[2:] == (1, 1):
            gamma, beta = old[i].gamma.reshape(-1), old[i].beta.reshape(-1)
            with torch.no_grad():
                layer.weight.mul_(gamma.reshape(-1, 1, 1, 1))
                if layer.bias is None:
                    layer.bias = nn.Parameter(beta.clone(), requires_grad=False)
                else:
                    layer.bias.mul_(gamma).add_(beta)
            i += 1
        if i < len(old) and isinstance(old[i], nn.ReLU):
            layer = nn.Sequential(layer, nn.ReLU(inplace=True))
            i += 1
        new.append(layer)
    net.layers = nn.ModuleList(new)
    return net


def build_mmod_detector(path: str | os.PathLike | None = None) -> tuple[DlibNet, MMODOptions]:
    """dlib's CNN face detector (``mmod_human_face_detector.dat``, default: models/): the network
    as a float32 CPU module (``body`` takes the tiled pyramid tensor) and its options."""
    if path is None:
        from .models import model_path

        path = model_path(config.CNN_DETECTOR_FILE)
    dnn = read_dnn(path)
    net = _build(dnn, mmod_definition(), ("loss_mmod_",))
    return net, mmod_options(dnn)
