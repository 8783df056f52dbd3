"""Figures for evaluation (notebook 06). Every function returns a matplotlib Figure.

They take the results of :mod:`iffse_lib.evaluate.verification` and
:mod:`iffse_lib.evaluate.retrieval`; save them with :func:`iffse_lib.plots.save`.
A function that draws one panel takes ``ax=``: it then draws on that Axes and returns its figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    from .plots import _show_figures_in_ipython

    _show_figures_in_ipython()  # displayed as a PNG in a notebook, like every plots figure
    return Figure(figsize=(width, height), layout="constrained")


def _panel(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``width`` x ``height`` inches with one panel."""
    if ax is not None:
        return ax.get_figure(), ax
    fig = _figure(width, height)
    return fig, fig.add_subplot()


def roc_curve(result, title: str | None = None, log_fpr: bool = True, ax: Axes | None = None) -> Figure:
    """The ROC curve over all pairs of an LFW result, with its AUC and the operating points of the
    fold thresholds. With ``log_fpr`` the false positive rate axis is logarithmic (where good face
    verifiers differ)."""
    fpr, tpr, _ = result.roc()
    fig, ax = _panel(ax, 5.5, 4.5)
    ax.plot(fpr, tpr, color="#0072B2", lw=1.8, label=f"{result.model_tag} (AUC {result.auc:.4f})")
    p = result.pairs
    same, diff = p["same"].to_numpy(), ~p["same"].to_numpy()
    t = float(np.mean(result.folds.thresholds))
    op_tpr = float(np.mean(p["distance"].to_numpy()[same] < t))
    op_fpr = float(np.mean(p["distance"].to_numpy()[diff] < t))
    ax.plot([op_fpr], [op_tpr], "o", color="#D55E00", label=f"mean fold threshold {t:.3f}")
    if log_fpr:
        positive = fpr[fpr > 0]
        xmin = max(positive.min() if len(positive) else 1e-4, 1e-5)
        ax.set_xscale("log")
        ax.set_xlim(xmin, 1)
        # Zoom on the curve where it is drawn (TPR at the smallest false positive rate shown).
        ax.set_ylim(max(0.0, min(0.8, float(np.interp(xmin, fpr, tpr))) - 0.02), 1.005)
    else:
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.005)
    ax.set_xlabel("false positive rate (different people called same)")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"LFW ROC, {len(p)} pairs")
    return fig


def fold_accuracy(result, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Accuracy per fold (bars) with the mean ± standard deviation, and each fold's threshold."""
    acc = 100 * result.folds.accuracies
    ths = result.folds.thresholds
    folds = np.arange(1, len(acc) + 1)
    fig, ax = _panel(ax, 7, 3.5)
    ax.bar(folds, acc, color="#56B4E9", edgecolor="#0072B2")
    mean, std = 100 * result.folds.mean, 100 * result.folds.std
    ax.axhline(mean, color="#D55E00", lw=1.5, label=f"mean {mean:.2f}% ± {std:.2f}%")
    ax.axhspan(mean - std, mean + std, color="#D55E00", alpha=0.12)
    for x, a, t in zip(folds, acc, ths):
        ax.text(x, a, f"t={t:.3f}", ha="center", va="bottom", fontsize=7)
    low = max(0.0, float(acc.min()) - max(2.0, 3 * std))
    ax.set_ylim(low, 100.5)
    ax.set_xticks(folds)
    ax.set_xlabel("fold (threshold chosen on the other folds)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"Accuracy per fold, {result.model_tag}")
    return fig


def pair_grid(result, rows, ncols: int = 4, title: str | None = None, cell: float = 2.6) -> Figure:
    """Pairs of aligned face chips (the chips the vectors were computed from), each with both
    names, the distance and its fold's threshold. ``rows`` are rows of ``result.pairs`` (e.g.
    ``result.worst("false_match")``)."""
    from .plots import display_name

    rows = list(rows.itertuples()) if hasattr(rows, "itertuples") else list(rows)
    n = max(len(rows), 1)
    nrows = (n + ncols - 1) // ncols
    fig = _figure(ncols * cell, nrows * cell * 0.62 + 0.5)
    how = result.photos.info["how"]
    for i, r in enumerate(rows):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        pair = np.concatenate([result.chip(r.file1), np.full((150, 6, 3), 255, np.uint8), result.chip(r.file2)], 1)
        ax.imshow(pair)
        ax.set_xticks([])
        ax.set_yticks([])
        mark = "".join("*" if how[f] == "fallback" else "" for f in (r.file1, r.file2))
        label = (f"{display_name(r.name1, 18)} {r.num1}\n{display_name(r.name2, 18)} {r.num2}\n"
                 f"d={r.distance:.3f} (t={r.threshold:.3f}){' ' + mark if mark else ''}")
        ax.set_title(label, fontsize=7)
    if not rows:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title or "pairs", fontsize=10)
    return fig


def retrieval_table(result, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Precision@1, precision@5 and mAP, exact search and the index side by side (grouped bars)."""
    table = result.table
    fig, ax = _panel(ax, 5.5, 3.2)
    x = np.arange(len(table.index))
    for j, (col, colour) in enumerate(zip(table.columns, ("#0072B2", "#E69F00"))):
        vals = table[col].to_numpy()
        bars = ax.bar(x + (j - 0.5) * 0.38, vals, 0.38, color=colour, label=col)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, list(table.index))
    ax.set_ylim(0, 1.08)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"Retrieval, {result.counts.get('queries', '?')} queries ({result.model_tag})")
    return fig
