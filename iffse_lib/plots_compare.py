"""The figure of a face comparison (:mod:`iffse_lib.compare`); returns a matplotlib Figure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _crop_with_landmarks(ax, s, size: int = 200, margin: float = 0.25) -> None:
    from .plots import _draw_landmarks, face_crop

    b = s.box
    ax.imshow(face_crop(s.photo, b, size=size, margin=margin))
    side = max(b.width, b.height) * (1 + 2 * margin)
    x0 = (b.left + b.right) / 2 - side / 2
    y0 = (b.top + b.bottom) / 2 - side / 2
    _draw_landmarks(ax, (np.asarray(s.landmarks) - [x0, y0]) * (size / side), size=6)


def comparison(cmp, same=None, different=None, title: str | None = None) -> Figure:
    """Two faces: photo crops with their 68 landmarks, the aligned chips (the embedder's input),
    the occlusion maps over the chips when computed, and the distance against the threshold among
    same-person and different-person distances (``same`` / ``different``, if given)."""
    from .plots import _figure, display_name

    occl = cmp.a.occlusion is not None
    fig = _figure(11 if occl else 9, 5.2)
    mosaic = [["a0", "a1"] + (["a2"] if occl else []) + ["d"], ["b0", "b1"] + (["b2"] if occl else []) + ["d"]]
    axes = fig.subplot_mosaic(mosaic, width_ratios=[1, 1] + ([1] if occl else []) + [2.2])
    if occl:
        vmax = max(float(np.abs(cmp.a.occlusion).max()), float(np.abs(cmp.b.occlusion).max()), 1e-6)
    for key, s in (("a", cmp.a), ("b", cmp.b)):
        _crop_with_landmarks(axes[f"{key}0"], s)
        axes[f"{key}0"].set_title(f"{display_name(s.label, 22)}\nface {s.face_id}", fontsize=9)
        axes[f"{key}1"].imshow(s.chip)
        axes[f"{key}1"].set_title("aligned chip", fontsize=9)
        if occl:
            ax = axes[f"{key}2"]
            ax.imshow(s.chip, alpha=0.55)
            h, w = s.chip.shape[:2]
            im = ax.imshow(s.occlusion, cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=0.6,
                           extent=(0, s.occlusion.shape[1] * cmp.patch, s.occlusion.shape[0] * cmp.patch, 0),
                           interpolation="nearest")
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_title("greyed patch: distance change", fontsize=9)
        for j in range(3 if occl else 2):
            axes[f"{key}{j}"].axis("off")
    if occl:
        cb = fig.colorbar(im, ax=[axes["a2"], axes["b2"]], shrink=0.6, location="bottom")
        cb.set_label("red: held the likeness; blue: a difference", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    ax = axes["d"]
    bins = np.linspace(0, 1.3, 53)
    if same is not None and len(same):
        ax.hist(same, bins=bins, density=True, alpha=0.55, color="#0072B2", label=f"same person ({len(same):,} pairs)")
    if different is not None and len(different):
        ax.hist(different, bins=bins, density=True, alpha=0.55, color="#D55E00",
                label=f"different people ({len(different):,} pairs)")
    ax.axvline(cmp.threshold, color="black", ls="--", lw=1.2, label=f"threshold {cmp.threshold:.2f}")
    colour = "#009E73" if cmp.same else "#CC79A7"
    ax.axvline(cmp.distance, color=colour, lw=2.5, label=f"these two: {cmp.distance:.3f}")
    ax.set_xlabel("euclidean distance between face vectors")
    ax.set_yticks([])
    ax.legend(fontsize=8, loc="upper right")
    verdict = "same person" if cmp.same else "different people"
    ax.set_title(f"{cmp.distance:.3f} {'≤' if cmp.same else '>'} {cmp.threshold:.2f}: {verdict}", fontsize=10,
                 color=colour)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
