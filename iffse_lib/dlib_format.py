"""Reads dlib's ``.dat`` network files with numpy only: importing this module never imports torch.

dlib saves a trained network as one ``dlib::serialize(net)`` stream: the loss layer's details, then
the version of every layer wrapper from the output inwards, then the input layer's details and each
computational layer's details from the input outwards. ``../shared/docs/dlib-dnn-format.md`` gives
the encoding; the comments below cite dlib's ``dnn/core.h`` and ``dnn/layers.h`` where it matters.

:func:`read_dnn` parses a stream (tensor payloads through ``np.frombuffer``) into a
:class:`DnnFile`. The file does not say which tag a skip or ``add_prev`` layer refers to, so a
network is read against a *definition* (the list of layers dlib's C++ ``using net_type = ...``
spells out, output first: :func:`face_resnet_definition`, :func:`mmod_definition`), and
:func:`match_definition` checks the file against it layer by layer: kinds, filter shapes, strides,
padding, tensor sizes. Anything that does not match raises
:class:`~iffse_lib.errors.ModelFileCorrupt` naming the layer (``layer<i>`` as dlib numbers them,
from the output inwards) and the byte offset. :func:`mmod_options` gives what the CNN face
detector's file says beyond its layers.

:mod:`iffse_lib.dlibnet` builds PyTorch modules from what this module returns.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import config
from .errors import ModelFileCorrupt, ModelFileMissing

# ----------------------------------------------------------------------------------------
# The stream


class _Stream:
    """A cursor over a file's bytes that decodes dlib's primitive encodings (dlib/serialize.h)."""

    def __init__(self, data: bytes, path: str):
        self.data = data
        self.path = path
        self.pos = 0
        self.where = "the loss layer"  # names the layer being read, for error messages

    def corrupt(self, message: str, at: int | None = None) -> ModelFileCorrupt:
        at = self.pos if at is None else at
        return ModelFileCorrupt(
            f"{self.path}: {self.where}, byte offset {at}: {message}. The file is not the dlib "
            "network this reader expects; fetch it again with `make models`.")

    def _take(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.data):
            raise self.corrupt(f"the file ends ({len(self.data)} bytes) while reading {what} "
                               f"({n} bytes needed)")
        self.pos = start + n
        return start

    def integer(self, what: str, *, signed: bool = False) -> int:
        """dlib's pack_int: a control byte (low nibble: byte count; 0x80: negative), then bytes."""
        at = self.pos
        control = self.data[self._take(1, what)]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.corrupt(f"bad integer control byte 0x{control:02x} in {what}", at)
        value = int.from_bytes(self.data[self._take(size, what):self.pos], "little")
        if control & 0x80:
            if not signed:
                raise self.corrupt(f"negative value where {what} cannot be negative", at)
            value = -value
        return value

    def boolean(self, what: str) -> bool:
        at = self._take(1, what)
        byte = self.data[at]
        if byte not in (ord("0"), ord("1")):
            raise self.corrupt(f"expected '0' or '1' for {what}, found byte 0x{byte:02x}", at)
        return byte == ord("1")

    def real(self, what: str) -> float:
        """dlib's float_details: an int64 mantissa and an int16 exponent."""
        mantissa = self.integer(what, signed=True)
        at = self.pos
        exponent = self.integer(what, signed=True)
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        if exponent in special:
            return special[exponent]
        if abs(exponent) > 1100:
            raise self.corrupt(f"exponent {exponent} out of range in {what}", at)
        return math.ldexp(mantissa, exponent)

    def string(self, what: str, max_len: int = 256) -> str:
        at = self.pos
        n = self.integer(what)
        if n > max_len:
            raise self.corrupt(f"a {n}-byte string where {what} was expected", at)
        raw = self.data[self._take(n, what):self.pos]
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.corrupt(f"{what} is not ASCII text", at) from None

    def tensor(self, what: str) -> np.ndarray:
        """A resizable_tensor: version 2, n, k, nr, nc, then n*k*nr*nc little-endian float32."""
        at = self.pos
        version = self.integer(what)
        if version != 2:
            raise self.corrupt(f"tensor version {version} in {what}, expected 2", at)
        shape = tuple(self.integer(what) for _ in range(4))
        count = math.prod(shape)
        start = self._take(4 * count, f"the {shape} values of {what}")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=start)
        return values.reshape(shape).astype(np.float32)  # a copy, native byte order

    def alias_tensor(self, what: str) -> tuple[int, int, int, int]:
        at = self.pos
        version = self.integer(what)
        if version != 1:
            raise self.corrupt(f"alias_tensor version {version} in {what}, expected 1", at)
        return tuple(self.integer(what) for _ in range(4))

    def reals(self, *names: str) -> dict[str, float]:
        return {name: self.real(name) for name in names}


# ----------------------------------------------------------------------------------------
# Layer details, by the type string dlib writes first (dlib/dnn/layers.h, input.h, loss.h)

_LR = ("learning_rate_multiplier", "weight_decay_multiplier",
       "bias_learning_rate_multiplier", "bias_weight_decay_multiplier")


def _con(s: _Stream, kind: str) -> dict[str, Any]:
    d = {"params": s.tensor("params")}
    for name in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
        d[name] = s.integer(name, signed=True)
    d["filters"] = s.alias_tensor("filters")
    d["biases"] = s.alias_tensor("biases")
    d.update(s.reals(*_LR))
    d["use_bias"] = s.boolean("use_bias") if kind in ("con_5", "con_6") else True
    d["use_relu"] = s.boolean("use_relu") if kind == "con_6" else False
    return d


def _fc(s: _Stream, kind: str) -> dict[str, Any]:
    d = {"num_outputs": s.integer("num_outputs"), "num_inputs": s.integer("num_inputs"),
         "params": s.tensor("params"), "weights": s.alias_tensor("weights"),
         "biases": s.alias_tensor("biases"), "bias_mode": s.integer("bias_mode", signed=True)}
    d.update(s.reals(*_LR))
    d["use_bias"] = s.boolean("use_bias") if kind == "fc_3" else True
    return d


def _affine(s: _Stream, kind: str) -> dict[str, Any]:
    d = {"params": s.tensor("params"), "gamma": s.alias_tensor("gamma"),
         "beta": s.alias_tensor("beta"), "mode": s.integer("mode", signed=True)}
    d["disabled"] = s.boolean("disabled") if kind == "affine_2" else False
    return d


def _bn(s: _Stream, kind: str) -> dict[str, Any]:
    d = {"params": s.tensor("params"), "gamma": s.alias_tensor("gamma"),
         "beta": s.alias_tensor("beta")}
    for name in ("means", "invstds", "running_means", "running_variances"):
        d[name] = s.tensor(name)
    d["num_updates"] = s.integer("num_updates")
    d["running_stats_window_size"] = s.integer("running_stats_window_size")
    d.update(s.reals(*_LR))
    d["eps"] = s.real("eps")
    d["mode"] = 0 if kind == "bn_con2" else 1
    return d


def _pool(s: _Stream, kind: str) -> dict[str, Any]:
    return {name: s.integer(name, signed=True)
            for name in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}


def _relu(s: _Stream, kind: str) -> dict[str, Any]:
    return {"disabled": s.boolean("disabled")} if kind == "relu_2" else {}


def _nothing(s: _Stream, kind: str) -> dict[str, Any]:
    return {}


def _input_rgb_image_sized(s: _Stream, kind: str) -> dict[str, Any]:
    d = s.reals("avg_red", "avg_green", "avg_blue")
    d["nr"] = s.integer("nr")
    d["nc"] = s.integer("nc")
    return d


def _input_rgb_image_pyramid(s: _Stream, kind: str) -> dict[str, Any]:
    d = s.reals("avg_red", "avg_green", "avg_blue")
    if kind == "input_rgb_image_pyramid2":
        d["pyramid_padding"] = s.integer("pyramid_padding")
        d["pyramid_outer_padding"] = s.integer("pyramid_outer_padding")
    else:  # dlib's defaults, which the first version did not store
        d["pyramid_padding"], d["pyramid_outer_padding"] = 10, 11
    return d


def _loss_metric(s: _Stream, kind: str) -> dict[str, Any]:
    return s.reals("margin", "dist_thresh")


def _loss_mmod(s: _Stream, kind: str) -> dict[str, Any]:
    """mmod_options (dlib/dnn/loss.h); version 1 holds one detector window and no labels."""
    at = s.pos
    version = s.integer("the mmod_options version", signed=True)
    if version != 1:
        raise s.corrupt(f"mmod_options version {version}; this reader knows version 1 "
                        "(one detector window, as in mmod_human_face_detector.dat)", at)
    d = {"window_width": s.integer("detector window width"),
         "window_height": s.integer("detector window height")}
    d.update(s.reals("loss_per_false_alarm", "loss_per_missed_target",
                     "truth_match_iou_threshold", "nms_iou_thresh", "nms_percent_covered_thresh",
                     "ignore_iou_thresh", "ignore_percent_covered_thresh"))
    return d


#: type string -> (our kind, details reader)
_LAYER_READERS = {
    "con_4": ("con", _con), "con_5": ("con", _con), "con_6": ("con", _con),
    "fc_2": ("fc", _fc), "fc_3": ("fc", _fc),
    "affine_": ("affine", _affine), "affine_2": ("affine", _affine),
    "bn_con2": ("affine", _bn), "bn_fc2": ("affine", _bn),  # dlib turns a saved bn_ into affine_
    "relu_": ("relu", _relu), "relu_2": ("relu", _relu),
    "max_pool_2": ("max_pool", _pool), "avg_pool_2": ("avg_pool", _pool),
    "add_prev_": ("add_prev", _nothing),
}
_INPUT_READERS = {
    "input_rgb_image_sized": ("input", _input_rgb_image_sized),
    "input_rgb_image_pyramid": ("input", _input_rgb_image_pyramid),
    "input_rgb_image_pyramid2": ("input", _input_rgb_image_pyramid),
}
_LOSS_READERS = {"loss_metric_2": ("loss", _loss_metric), "loss_mmod_": ("loss", _loss_mmod)}


@dataclass(frozen=True)
class DnnLayer:
    """One layer as stored: ``index`` is dlib's ``layer<index>`` (0 at the output)."""

    index: int
    kind: str  # con, fc, affine, relu, max_pool, avg_pool, add_prev, tag_or_skip, input, loss
    type: str  # the type string in the file ("con_4"); "" for tag and skip layers
    offset: int  # byte offset of the layer's details (of its version, for tag and skip)
    fields: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"layer<{self.index}> ({self.type or self.kind})"


@dataclass(frozen=True)
class DnnFile:
    path: str
    loss: DnnLayer
    layers: tuple[DnnLayer, ...]  # from the output inwards; the input layer is last


def read_dnn(path: str | os.PathLike) -> DnnFile:
    """Parse a dlib network file. Raises ModelFileCorrupt with the layer and byte offset."""
    path = Path(path)
    if not path.exists():
        raise ModelFileMissing(f"{path} not found. Run `make models` (see models/README.md).")
    return _read_dnn_cached(str(path), path.stat().st_mtime_ns, path.stat().st_size)


@functools.cache
def _read_dnn_cached(path: str, mtime_ns: int, size: int) -> DnnFile:
    return _parse(Path(path).read_bytes(), path)


def _details(s: _Stream, readers: dict, what: str) -> tuple[str, str, dict[str, Any], int]:
    at = s.pos
    type_ = s.string(f"the {what} type")
    if type_ not in readers:
        raise s.corrupt(f"unknown {what} type {type_!r} (this reader knows "
                        f"{', '.join(sorted(readers))})", at)
    kind, reader = readers[type_]
    s.where = f"{s.where} ({type_})"
    return kind, type_, reader(s, type_), at


def _parse(data: bytes, path: str) -> DnnFile:
    s = _Stream(data, path)
    # add_loss_layer: version 1, the loss details, then the network.
    if s.integer("the loss layer version") != 1:
        raise s.corrupt("loss layer version is not 1", 0)
    kind, type_, fields, at = _details(s, _LOSS_READERS, "loss layer")
    loss = DnnLayer(-1, kind, type_, at, fields)

    # The wrappers' versions, from the output inwards: add_layer 2 (1 in old files), tag and skip
    # layers 1, the innermost add_layer (over the input layer) 2 or 3. The input layer's type
    # string follows the innermost one; its length (> 3) tells it from another version.
    versions: list[tuple[int, int]] = []
    while True:
        s.where = f"layer<{len(versions)}>"
        at = s.pos
        version = s.integer("a layer version")
        if version not in (1, 2, 3):
            raise s.corrupt(f"layer version {version}, expected 1, 2 or 3", at)
        versions.append((version, at))
        peek = s.pos
        if s.integer("the next layer's version or the input layer type") > 3:
            s.pos = peek
            break
        s.pos = peek
        if len(versions) > 10_000:
            raise s.corrupt("more than 10,000 nested layers")
    innermost = len(versions) - 1
    if versions[innermost][0] not in (2, 3):
        raise s.corrupt(f"layer<{innermost}> over the input layer has version "
                        f"{versions[innermost][0]}, expected 2 or 3", versions[innermost][1])

    s.where = f"layer<{innermost + 1}>"
    kind, type_, fields, at = _details(s, _INPUT_READERS, "input layer")
    input_layer = DnnLayer(innermost + 1, kind, type_, at, fields)

    layers: list[DnnLayer] = []
    for index in range(innermost, -1, -1):
        version, version_at = versions[index]
        s.where = f"layer<{index}>"
        if version == 1 and index != innermost:
            # add_tag_layer / add_skip_layer: only a version; which they are comes from the
            # definition. (An old add_layer of version 1 would also land here and then fail the
            # definition check.)
            layers.append(DnnLayer(index, "tag_or_skip", "", version_at))
            continue
        kind, type_, fields, at = _details(s, _LAYER_READERS, "layer")
        for flag in ("this_layer_setup_called", "gradient_input_is_stale",
                     "get_output_and_gradient_input_disabled"):
            s.boolean(flag)
        s.tensor("x_grad")
        s.tensor("cached_output")
        if index == innermost:
            s.tensor("grad_final")
            if version == 3:
                s.integer("sample_expansion_factor")
        elif version == 2:
            s.tensor("params_grad")
        layers.append(DnnLayer(index, kind, type_, at, fields))
    if s.pos != len(data):
        s.where = "the end of the network"
        raise s.corrupt(f"{len(data) - s.pos} bytes left over after the network")
    layers.reverse()
    return DnnFile(path, loss, tuple(layers) + (input_layer,))


# ----------------------------------------------------------------------------------------
# Network definitions: what dlib's C++ ``using net_type = ...`` spells out, output first.
# Each entry is (kind, settings); the file must agree with every setting given.


def _con_def(num_filters: int, size: int, stride: int) -> tuple:
    # dlib's con_ default padding: 0 when strided, else size/2 ("same").
    pad = 0 if stride != 1 else size // 2
    return ("con", dict(num_filters=num_filters, nr=size, nc=size, stride_y=stride,
                        stride_x=stride, padding_y=pad, padding_x=pad))


def _pool_def(kind: str, size: int, stride: int) -> tuple:
    pad = 0 if stride != 1 else size // 2
    return (kind, dict(nr=size, nc=size, stride_y=stride, stride_x=stride,
                       padding_y=pad, padding_x=pad))


_AFFINE, _RELU = ("affine", {}), ("relu", {})


def face_resnet_definition() -> list[tuple]:
    """dlib/examples/dnn_face_recognition_ex.cpp, ``anet_type``."""

    def block(n, stride):  # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
        return [_AFFINE, _con_def(n, 3, 1), _RELU, _AFFINE, _con_def(n, 3, stride)]

    def ares(n):  # relu<add_prev1<block<N,BN,1,tag1<SUBNET>>>>
        return [_RELU, ("add_prev", {"tag": 1}), *block(n, 1), ("tag", {"tag": 1})]

    def ares_down(n):  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,BN,2,tag1<SUBNET>>>>>>>
        return [_RELU, ("add_prev", {"tag": 2}), _pool_def("avg_pool", 2, 2), ("skip", {"tag": 1}),
                ("tag", {"tag": 2}), *block(n, 2), ("tag", {"tag": 1})]

    return [
        ("fc", dict(num_outputs=128, bias_mode=1)),  # fc_no_bias<128, ...>
        ("avg_pool", dict(nr=0, nc=0, stride_y=1, stride_x=1, padding_y=0, padding_x=0)),
        *ares_down(256),                                  # alevel0
        *ares(256), *ares(256), *ares_down(256),          # alevel1
        *ares(128), *ares(128), *ares_down(128),          # alevel2
        *ares(64), *ares(64), *ares(64), *ares_down(64),  # alevel3
        *ares(32), *ares(32), *ares(32),                  # alevel4
        _pool_def("max_pool", 3, 2), _RELU, _AFFINE, _con_def(32, 7, 2),
        ("input", dict(nr=config.CHIP_SIZE, nc=config.CHIP_SIZE)),
    ]


def mmod_definition() -> list[tuple]:
    """dlib/examples/dnn_mmod_face_detection_ex.cpp, ``net_type``:
    loss_mmod<con<1,9,9,1,1,rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>
    """
    def rcon5():  # relu<affine<con5<45,SUBNET>>>
        return [_RELU, _AFFINE, _con_def(45, 5, 1)]

    def downsampler():  # relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16,S>>>>>>>>>
        return [_RELU, _AFFINE, _con_def(32, 5, 2), _RELU, _AFFINE, _con_def(32, 5, 2),
                _RELU, _AFFINE, _con_def(16, 5, 2)]

    return [_con_def(1, 9, 1), *rcon5(), *rcon5(), *rcon5(), *downsampler(), ("input", {})]


def match_definition(dnn: DnnFile, definition: list[tuple], loss_types: tuple[str, ...]) -> list[tuple]:
    """Match a parsed file against a definition; return [(kind, settings, layer)] output first."""
    path = dnn.path

    def fail(layer: DnnLayer, message: str) -> ModelFileCorrupt:
        return ModelFileCorrupt(
            f"{path}: {layer.name}, byte offset {layer.offset}: {message}. The file is not the "
            "dlib network this reader expects; fetch it again with `make models`.")

    if dnn.loss.type not in loss_types:
        raise fail(dnn.loss, f"loss layer {dnn.loss.type!r}, expected {' or '.join(loss_types)}")
    if len(dnn.layers) != len(definition):
        last = dnn.layers[min(len(dnn.layers), len(definition)) - 1]
        raise fail(last, f"the file holds {len(dnn.layers)} layers (input included), the "
                         f"network has {len(definition)}")
    matched = []
    for (kind, settings), layer in zip(definition, dnn.layers):
        expected = "tag_or_skip" if kind in ("tag", "skip") else kind
        if layer.kind != expected:
            raise fail(layer, f"a {layer.kind} layer where the network has {kind}")
        for key, value in settings.items():
            if key in layer.fields and layer.fields[key] != value:
                raise fail(layer, f"{key} = {layer.fields[key]}, the network has {value}")
        _check_tensors(layer, fail)
        matched.append((kind, settings, layer))
    return matched


def _check_tensors(layer: DnnLayer, fail) -> None:
    """The params tensor must hold exactly what the alias tensors describe, all finite."""
    f = layer.fields
    if "params" not in f:
        return
    params = f["params"]
    if layer.kind == "con":
        n, k, nr, nc = f["filters"]
        if (n, nr, nc) != (f["num_filters"], f["nr"], f["nc"]):
            raise fail(layer, f"filter shape {f['filters']} does not match num_filters "
                              f"{f['num_filters']} and size {f['nr']}x{f['nc']}")
        expected = math.prod(f["filters"]) + (n if f["use_bias"] else 0)
        if f["use_bias"] and math.prod(f["biases"]) != n:
            raise fail(layer, f"bias shape {f['biases']} for {n} filters")
    elif layer.kind == "fc":
        if f["weights"] != (f["num_inputs"], f["num_outputs"], 1, 1):
            raise fail(layer, f"weight shape {f['weights']} for {f['num_inputs']} inputs and "
                              f"{f['num_outputs']} outputs")
        has_bias = f["bias_mode"] == 0 and f["use_bias"]
        expected = f["num_inputs"] * f["num_outputs"] + (f["num_outputs"] if has_bias else 0)
    elif layer.kind == "affine":
        if f["gamma"] != f["beta"]:
            raise fail(layer, f"gamma {f['gamma']} and beta {f['beta']} differ in shape")
        expected = 2 * math.prod(f["gamma"])
        if "running_variances" in f:
            for name in ("running_means", "running_variances"):
                if f[name].size != math.prod(f["gamma"]):
                    raise fail(layer, f"{name} has {f[name].size} values for "
                                      f"{math.prod(f['gamma'])} channels")
    else:
        return
    if params.size != expected:
        raise fail(layer, f"params tensor has {params.size} values, its layout needs {expected}")
    if not np.isfinite(params).all():
        raise fail(layer, "params tensor holds NaN or infinite values")


@dataclass(frozen=True)
class MMODOptions:
    """What the CNN face detector's file says beyond its layers (loss_mmod_, the input pyramid)."""

    window: tuple[int, int]  # detector window (width, height) in pyramid pixels
    nms_iou_thresh: float
    nms_percent_covered_thresh: float
    pyramid_padding: int
    pyramid_outer_padding: int
    stride: int  # output position (c, r) -> input tensor point (stride*c + offset, ...)
    offset: int


def mmod_options(dnn: DnnFile) -> MMODOptions:
    """The options of the CNN face detector's file ``dnn`` (read by :func:`read_dnn`)."""
    loss, inp = dnn.loss.fields, dnn.layers[-1].fields
    # dlib's output_tensor_to_input_tensor: each conv maps p -> p*stride - padding + size/2.
    stride, offset = 1, 0
    for layer in dnn.layers[:-1]:  # from the output inwards
        if layer.kind == "con":
            f = layer.fields
            stride, offset = stride * f["stride_x"], offset * f["stride_x"] - f["padding_x"] + f["nc"] // 2
    return MMODOptions(
        window=(loss["window_width"], loss["window_height"]),
        nms_iou_thresh=loss["nms_iou_thresh"],
        nms_percent_covered_thresh=loss["nms_percent_covered_thresh"],
        pyramid_padding=inp["pyramid_padding"], pyramid_outer_padding=inp["pyramid_outer_padding"],
        stride=stride, offset=offset)
