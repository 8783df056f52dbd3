"""Test-time augmentation: a face's vector as the mean over augmented copies of its chip.

- ``none``: the chip itself.
- ``flip``: the mean of the chip's vector and its mirror image's. The mirrored chips go through
  the network in the same batches as the chips, so a batch costs one more forward pass's worth
  of chips, not one pass per face.
- ``jitter:N``: the mean over N randomly jittered copies, as dlib's
  ``compute_face_descriptor(img, num_jitters=N)`` computes it (the chip itself is not one of the
  copies). Each copy follows dlib's ``jitter_image`` (``dlib/image_transforms/interpolation.h``):
  the square ``shrink_rect(chip, 3)`` (144 px of a 150 px chip) moved by up to 2% of its size in
  x and y (rounded to whole pixels), grown to ``144 / s`` with s uniform in [0.97, 0.99999]
  (whole pixels), turned by up to 3 degrees, cut back out at 150 x 150 with bilinear sampling
  (black outside the chip), and mirrored left to right with probability 1/2. The cut is done on
  tensors (``affine_grid``/``grid_sample``) on the embedder's device.

  Unlike dlib, whose random generator runs on from call to call, each copy's draws are seeded by
  ``seed`` and the chip's own pixels, so a face gets the same vector whatever batch it is in and
  whenever it is embedded again (``iffse check --repair``). ``jitter:1`` is one jittered copy
  (dlib takes ``num_jitters=1`` as none).

Model tags: augmented vectors differ from plain ones (on 12 LFW faces flip moved them by 0.08 to
0.12 and ``jitter:10`` by 0.10 to 0.15, against the 0.6 same-person distance; this ``jitter:10``
lands 0.04 to 0.08 from dlib's own ``num_jitters=10`` vectors, as far as two seeds are from each
other), so each augmentation appends
its own suffix: ``+flip``, ``+jit10`` (``+jit10s3`` for a seed other than 0), after the precision
suffix: ``dlib-resnet-v1+bf16+flip``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

#: dlib's jitter_image bounds.
MAX_ROTATION_DEGREES = 3.0
MIN_OBJECT_HEIGHT = 0.97
MAX_OBJECT_HEIGHT = 0.99999
TRANSLATE_AMOUNT = 0.02
SHRINK = 3
#: The most jittered copies one face may ask for (each costs a forward pass of the network).
MAX_JITTERS = 100

_SPEC = re.compile(r"(none|flip|jitter:(\d+))")
_TAG = re.compile(r"\+(flip|jit(\d+)(?:s(\d+))?)$")


@dataclass(frozen=True)
class TTA:
    """An augmentation: ``kind`` ``none``, ``flip`` or ``jitter`` with ``n`` copies and ``seed``."""

    kind: str = "none"
    n: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("none", "flip", "jitter"):
            raise ValueError(f"tta must be none, flip or jitter:N, not {self.kind!r}")
        if self.kind == "jitter" and not (isinstance(self.n, int) and 1 <= self.n <= MAX_JITTERS):
            raise ValueError(f"jitter needs 1 to {MAX_JITTERS} copies, not {self.n!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"the jitter seed must be an integer >= 0, not {self.seed!r}")

    @property
    def copies(self) -> int:
        """Forward passes per face."""
        return {"none": 1, "flip": 2, "jitter": self.n}[self.kind]

    @property
    def suffix(self) -> str:
        """What the model tag gains: ``""``, ``+flip``, ``+jit10``, ``+jit10s3``."""
        if self.kind == "none":
            return ""
        if self.kind == "flip":
            return "+flip"
        return f"+jit{self.n}" + (f"s{self.seed}" if self.seed else "")

    def __str__(self) -> str:
        return self.kind if self.kind != "jitter" else f"jitter:{self.n}"


def parse(spec: "str | TTA | None", seed: int = 0) -> TTA:
    """A TTA from ``none``, ``flip``, ``jitter:N`` (or a TTA, or None for none)."""
    if spec is None:
        return TTA()
    if isinstance(spec, TTA):
        return spec
    m = _SPEC.fullmatch(str(spec).strip())
    if m is None:
        raise ValueError(f"tta must be none, flip or jitter:N (N from 1 to {MAX_JITTERS}), not {spec!r}")
    if m[2] is not None:
        return TTA("jitter", int(m[2]), seed)
    return TTA(m[1])


def split_tag(tag: str) -> tuple[str, TTA]:
    """A model tag without its augmentation suffix, and the augmentation:
    ``dlib-resnet-v1+bf16+jit10`` -> (``dlib-resnet-v1+bf16``, TTA("jitter", 10))."""
    m = _TAG.search(tag)
    if m is None:
        return tag, TTA()
    base = tag[:m.start()]
    if m[1] == "flip":
        return base, TTA("flip")
    return base, TTA("jitter", int(m[2]), int(m[3] or 0))


# -- on tensors -------------------------------------------------------------------------------------

def _chip_keys(torch, chips) -> list[int]:
    """A number per chip from its pixels (a weighted sum, on the chips' device), so that a chip's
    jitter draws do not depend on the batch it is in."""
    n = len(chips)
    flat = chips.reshape(n, -1)
    gen = torch.Generator().manual_seed(0x1FF5E)
    weights = torch.randint(1, 1 << 20, (flat.shape[1],), generator=gen, dtype=torch.int64).to(chips.device)
    return (flat.to(torch.int64) * weights).sum(dim=1).cpu().tolist()


def jitter_thetas(key: int, n: int, seed: int, size: int) -> np.ndarray:
    """(n, 2, 3) ``affine_grid`` maps (align_corners=True) of dlib's jitter_image for one chip."""
    rng = np.random.default_rng([seed, key & 0xFFFFFFFFFFFFFFFF])
    left = top = SHRINK
    right = bottom = size - 1 - SHRINK
    width = right - left + 1
    cx, cy = (left + right + 1) // 2, (top + bottom + 1) // 2  # dlib's center(rect)
    out = np.zeros((n, 2, 3))
    half = (size - 1) / 2.0
    for i in range(n):
        tx, ty = rng.uniform(-TRANSLATE_AMOUNT, TRANSLATE_AMOUNT, 2) * width
        tx, ty = math.floor(tx + 0.5), math.floor(ty + 0.5)  # dpoint -> point rounds
        box = int(width / rng.uniform(MIN_OBJECT_HEIGHT, MAX_OBJECT_HEIGHT))
        angle = math.radians(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
        flip = rng.random() > 0.5
        # centered_rect(p, box, box): left = p.x - box/2, right = left + box - 1
        bl = cx + tx - box // 2
        bt = cy + ty - box // 2
        mx, my = bl + (box - 1) / 2.0, bt + (box - 1) / 2.0
        s = (box - 1) / (size - 1)
        c, sn = math.cos(angle), math.sin(angle)
        f = -1.0 if flip else 1.0
        # output (xn, yn) in [-1, 1] -> source pixel m + R @ (s * half * (f xn, yn)) -> normalised
        out[i] = [[s * c * f, -s * sn, mx / half - 1.0],
                  [s * sn * f, s * c, my / half - 1.0]]
    return out


def augment(torch, chips, tta: TTA):
    """(N, S, S, 3) uint8 chips -> (N * copies, S, S, 3) uint8, the copies of chip i at rows
    i * copies ... (i + 1) * copies - 1, on the chips' device."""
    if tta.kind == "none" or len(chips) == 0:
        return chips
    if tta.kind == "flip":
        return torch.stack([chips, chips.flip(2)], dim=1).reshape(-1, *chips.shape[1:])
    import torch.nn.functional as F

    n, size = len(chips), chips.shape[1]
    thetas = np.concatenate([jitter_thetas(k, tta.n, tta.seed, size) for k in _chip_keys(torch, chips)])
    theta = torch.as_tensor(thetas, dtype=torch.float32, device=chips.device)
    source = chips.permute(0, 3, 1, 2).float().repeat_interleave(tta.n, dim=0)
    grid = F.affine_grid(theta, (n * tta.n, 3, size, size), align_corners=True)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def mean_of_copies(vectors, copies: int):
    """(N * copies, D) -> (N, D): each face's mean over its copies."""
    if copies == 1:
        return vectors
    return vectors.reshape(-1, copies, vectors.shape[-1]).mean(dim=1)
