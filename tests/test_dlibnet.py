"""dlib's face ResNet in PyTorch (iffse_lib.dlib_format, iffse_lib.dlibnet, iffse_lib.embed_torch)
against dlib itself.

The reference vectors come from dlib's ``compute_face_descriptor`` on every face chip of
../shared/data/faces (about 100 ms of CPU a face), computed once per session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from iffse_lib import config
from iffse_lib.embed import DlibEmbedder
from iffse_lib.errors import IffseError, ModelFileCorrupt

from conftest import FACES

#: torch against dlib's own network on every fixture face; make test-fast leaves these out
pytestmark = pytest.mark.slow

dlib = pytest.importorskip("dlib")
torch = pytest.importorskip("torch")

from iffse_lib import dlibnet  # noqa: E402  (needs torch)
from iffse_lib.embed_torch import TorchEmbedder  # noqa: E402

RESNET = config.MODELS_DIR / config.FACE_RESNET_FILE


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """Every face dlib's HOG detector finds at upsample 1 in ../shared/data/faces, as 150 px chips."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(config.MODELS_DIR / config.SHAPE_PREDICTOR_68_FILE))
    found = []
    for path in sorted(FACES.rglob("*")):
        if path.suffix.lower() not in config.IMAGE_EXTENSIONS:
            continue
        with Image.open(path) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        for rect in detector(image, 1):
            shape = predictor(image, rect)
            found.append(np.asarray(dlib.get_face_chip(image, shape, size=config.CHIP_SIZE,
                                                       padding=config.CHIP_PADDING)))
    assert len(found) >= 100, f"only {len(found)} faces found in {FACES}"
    return np.stack(found)


@pytest.fixture(scope="module")
def dlib_vectors(chips) -> np.ndarray:
    return DlibEmbedder().embed(chips)


@pytest.fixture(scope="module")
def torch_vectors(chips) -> np.ndarray:
    return TorchEmbedder().embed(chips)


def test_parameter_count():
    net = dlibnet.build_face_resnet(RESNET)
    assert sum(p.numel() for p in net.parameters()) == dlibnet.FACE_RESNET_PARAMS == 5_614_592
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 29


def test_float32_matches_dlib_on_every_face(chips, dlib_vectors, torch_vectors):
    diff = np.abs(torch_vectors - dlib_vectors).max()
    print(f"\n{len(chips)} faces: float32 torch vs dlib, largest absolute difference {diff:.3g}")
    assert torch_vectors.dtype == np.float32 and torch_vectors.shape == (len(chips), 128)
    assert diff <= 1e-4


def test_network_as_built_matches_dlib(chips, dlib_vectors):
    """The module build_face_resnet returns, before fold_affine and channels-last: same vectors."""
    net = dlibnet.build_face_resnet(RESNET)
    with torch.inference_mode():
        out = torch.cat([net(torch.from_numpy(chips[i:i + 64])) for i in range(0, len(chips), 64)])
    assert np.abs(out.numpy() - dlib_vectors).max() <= 1e-4


def test_options_that_keep_float32(chips, torch_vectors):
    """Layout, batch size, thread count and torch input change nothing beyond float rounding."""
    few = chips[:20]
    for embedder in (TorchEmbedder(channels_last=False, batch_size=7),
                     TorchEmbedder(channels_last=True, batch_size=64, num_threads=1)):
        assert embedder.model_tag == DlibEmbedder.model_tag
        assert np.abs(embedder.embed(few) - torch_vectors[:20]).max() <= 1e-5
    threads = torch.get_num_threads()
    out = TorchEmbedder(num_threads=1).embed(torch.from_numpy(few))
    assert torch.get_num_threads() == threads
    assert np.abs(out - torch_vectors[:20]).max() <= 1e-5


def test_bfloat16_on_cpu_close_to_float32(chips, torch_vectors):
    embedder = TorchEmbedder(dtype=torch.bfloat16)
    assert embedder.model_tag == "dlib-resnet-v1+bf16"
    out = embedder.embed(chips)
    assert out.dtype == np.float32
    worst = _cosine(out, torch_vectors).min()
    print(f"\n{len(chips)} faces: bf16 vs float32 on CPU, smallest cosine {worst:.6f}")
    assert worst >= 0.999


def test_model_tags():
    assert TorchEmbedder().model_tag == DlibEmbedder.model_tag == "dlib-resnet-v1"
    assert TorchEmbedder(dtype="bf16").model_tag == "dlib-resnet-v1+bf16"
    assert TorchEmbedder(dtype=torch.float16).model_tag == "dlib-resnet-v1+fp16"
    assert TorchEmbedder(dtype="tf32").model_tag == "dlib-resnet-v1+tf32"
    with pytest.raises(ValueError, match="dtype"):
        TorchEmbedder(dtype="int8")


BLANK = np.zeros((1, config.CHIP_SIZE, config.CHIP_SIZE, 3), np.uint8)


def test_input_checks():
    embedder = TorchEmbedder()
    assert embedder.embed(BLANK[:0]).shape == (0, 128)
    with pytest.raises(ValueError, match="150"):
        embedder.embed(np.zeros((1, 100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        TorchEmbedder(batch_size=0).embed(BLANK)
    with pytest.raises(IffseError, match="device"):
        TorchEmbedder(device="tpu").embed(BLANK)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(IffseError, match="no CUDA GPU"):
        TorchEmbedder(device="cuda").embed(BLANK)


@pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="torch < 2.9")
def test_gpu_precision_settings_are_scoped():
    """On a GPU, float32 runs with TF32 off (it would move the vectors by ~1e-3) and cuDNN
    autotuning on; both go back to what they were. The settings exist without a GPU."""
    cudnn, conv, matmul = torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = (conv.fp32_precision, matmul.fp32_precision, cudnn.benchmark)
    with TorchEmbedder(device="cuda")._running(torch, "cuda"):
        assert (conv.fp32_precision, matmul.fp32_precision, cudnn.benchmark) == ("ieee", "ieee", True)
    assert (conv.fp32_precision, matmul.fp32_precision, cudnn.benchmark) == before
    with TorchEmbedder(device="cuda", dtype="tf32")._running(torch, "cuda"):
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    assert (conv.fp32_precision, matmul.fp32_precision, cudnn.benchmark) == before


def test_import_loads_neither_torch_nor_model():
    code = ("import sys, iffse_lib.embed_torch; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_reader_parses_the_resnet_without_torch():
    """dlib_format is numpy only: with torch made unimportable it reads the face ResNet's file, and
    its layers have the shapes, strides and padding of the torch module built from them."""
    code = ("import json, sys; sys.modules['torch'] = None; "
            "from iffse_lib import dlib_format as f; "
            f"dnn = f.read_dnn({str(RESNET)!r}); "
            "f.match_definition(dnn, f.face_resnet_definition(), ('loss_metric_2',)); "
            "shapes = [[l.kind, list(l.fields['filters']), [l.fields['stride_y'], l.fields['stride_x']], "
            "           [l.fields['padding_y'], l.fields['padding_x']]] if l.kind == 'con' else "
            "          [l.kind, [l.fields['num_outputs'], l.fields['num_inputs']]] if l.kind == 'fc' else "
            "          [l.kind, list(l.fields['gamma'])] for l in reversed(dnn.layers) "
            "          if l.kind in ('con', 'fc', 'affine')]; "
            "assert not [m for m, v in sys.modules.items() if m.startswith('torch') and v is not None]; "
            "print(json.dumps(shapes))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    parsed = [tuple(tuple(x) for x in layer[1:]) for layer in json.loads(out)]
    kinds = [layer[0] for layer in json.loads(out)]
    assert (kinds.count("con"), kinds.count("affine"), kinds.count("fc")) == (29, 29, 1)

    built = []
    for module in dlibnet.build_face_resnet(RESNET).layers:
        conv = module[0] if isinstance(module, torch.nn.Sequential) else module
        if isinstance(conv, torch.nn.Conv2d):
            built.append((tuple(conv.weight.shape), conv.stride, conv.padding))
        elif isinstance(module, torch.nn.Linear):
            built.append((tuple(module.weight.shape),))
        elif hasattr(module, "gamma"):
            built.append(((1, module.gamma.shape[1], 1, 1),))
    assert parsed == built


# ---- files that are not what the reader expects -------------------------------------------


def _corrupt_copy(tmp_path: Path, edit) -> Path:
    data = bytearray(RESNET.read_bytes())
    edit(data)
    path = tmp_path / config.FACE_RESNET_FILE
    path.write_bytes(bytes(data))
    return path


def _first(data: bytearray, needle: bytes) -> int:
    at = bytes(data).find(needle)
    assert at > 0
    return at


def test_truncated_file(tmp_path):
    path = _corrupt_copy(tmp_path, lambda d: d.__delitem__(slice(len(d) // 2, None)))
    with pytest.raises(ModelFileCorrupt, match=r"layer<\d+> \(con_4\), byte offset \d+: the file ends"):
        dlibnet.build_face_resnet(path)


def test_unknown_layer_type(tmp_path):
    def edit(d):  # the stem convolution, the first layer whose details the file holds
        at = _first(d, b"con_4")
        d[at:at + 5] = b"con_9"

    path = _corrupt_copy(tmp_path, edit)
    offset = _first(bytearray(path.read_bytes()), b"con_9") - 2  # length prefix: 0x01 0x05
    with pytest.raises(ModelFileCorrupt, match=rf"layer<129>, byte offset {offset}: unknown layer type 'con_9'"):
        dlibnet.build_face_resnet(path)


def test_wrong_geometry(tmp_path):
    """A stem convolution with stride 1 instead of 2 parses, but is not dlib's face ResNet."""
    def edit(d):
        # con_4: params tensor (version, n, k, nr, nc: 1 + 2 bytes each ... then 4 bytes a value),
        # then num_filters, nr, nc, stride_y: find the stem's "32, 7, 7, 2, 2" integers.
        at = _first(d, bytes([1, 32, 1, 7, 1, 7, 1, 2, 1, 2]))
        d[at + 7] = 1

    path = _corrupt_copy(tmp_path, edit)
    with pytest.raises(ModelFileCorrupt, match=r"layer<129> \(con_4\), byte offset \d+: stride_y = 1, the network has 2"):
        dlibnet.build_face_resnet(path)


def test_non_finite_weights(tmp_path):
    def edit(d):  # the stem's first filter value: after "con_4", the tensor header (11 bytes)
        at = _first(d, b"con_4") + 5 + 11
        d[at:at + 4] = np.float32(np.nan).tobytes()

    path = _corrupt_copy(tmp_path, edit)
    with pytest.raises(ModelFileCorrupt, match=r"layer<129> \(con_4\).*NaN"):
        dlibnet.build_face_resnet(path)


def test_trailing_bytes(tmp_path):
    path = _corrupt_copy(tmp_path, lambda d: d.extend(b"\x00" * 7))
    with pytest.raises(ModelFileCorrupt, match=r"7 bytes left over"):
        dlibnet.build_face_resnet(path)
