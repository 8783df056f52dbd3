"""A page of one cluster's faces (the cluster browser of notebook 04); returns a Figure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def cluster_page(faces, members, row, max_faces: int = 24, ncols: int = 8, cell: float = 1.15) -> Figure:
    """The faces of one cluster (rows of ``faces`` at positions ``members``), each named and
    coloured: black the cluster's majority person, red another person, grey unlabelled. ``row``:
    the cluster's row of :func:`iffse_lib.reduce.cluster_table`."""
    from .plots import _grid, display_name, face_crop

    members = list(members)[:max_faces]
    fig, axes = _grid(max(len(members), 1), ncols, cell, label_height=0.25)
    for ax, i in zip(axes, members):
        f = faces.iloc[int(i)]
        ax.imshow(face_crop(f["path"], f, size=80, margin=0.1))
        ident = f["identity"]
        colour = "grey" if not isinstance(ident, str) else "black" if ident == row["majority"] else "#D55E00"
        ax.set_title(display_name(ident, 16), fontsize=6, color=colour)
    purity = "" if np.isnan(row["purity"]) else f", purity {row['purity']:.2f}"
    fig.suptitle(f"cluster {row['cluster']}: {row['size']} faces, {display_name(row['majority'], 30)}{purity}",
                 fontsize=10)
    return fig
