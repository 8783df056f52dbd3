"""Page through every cluster of the face vectors (notebook 04): largest or least pure first,
with its faces, size, majority identity and purity, where that person splits across other
clusters and who else merged in.

For scripts and tests: ``table`` (:func:`iffse_lib.reduce.cluster_table` in the chosen order),
``current`` (the row on show), :meth:`ClusterBrowser.show` and ``text``.
"""

from __future__ import annotations

import html

from .widgets import _View

ORDERS = {"largest first": (["size", "cluster"], [False, True]),
          "least pure first": (["purity", "size", "cluster"], [True, False, True])}


class ClusterBrowser(_View):
    def __init__(self, faces, labels, identities=None, order: str = "largest first", min_size: int = 2):
        import ipywidgets as w
        import numpy as np

        from . import reduce

        self.faces = faces.reset_index(drop=True)
        self.labels = np.asarray(labels)
        identities = self.faces["identity"].to_numpy() if identities is None else identities
        self._all = reduce.cluster_table(identities, self.labels)
        self._all = self._all[self._all["size"] >= min_size].reset_index(drop=True)
        self.order = w.Dropdown(options=list(ORDERS), value=order, description="order")
        self.page = w.IntSlider(value=1, min=1, max=max(len(self._all), 1), description="cluster",
                                continuous_update=False, layout=w.Layout(width="420px"))
        self.info = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(max_width="950px"))
        self.order.observe(lambda ch: self._sort(), names="value")
        self.page.observe(lambda ch: self.show(ch["new"] - 1), names="value")
        self.widget = w.VBox([w.HBox([self.order, self.page]), self.info, self.image])
        self.widget.add_class("iffse-clusters")
        self._sort()

    @property
    def text(self) -> str:
        import re

        return html.unescape(re.sub(r"<[^>]+>", " ", self.info.value)).strip()

    def _sort(self) -> None:
        by, ascending = ORDERS[self.order.value]
        self.table = self._all.sort_values(by, ascending=ascending, na_position="last").reset_index(drop=True)
        if self.page.value != 1:
            self.page.value = 1  # the observer shows it
        else:
            self.show(0)

    def show(self, i: int) -> None:
        """Show the i-th cluster (0-based) of the current order."""
        import numpy as np

        from . import plots
        from .plots import display_name
        from .plots_clusters import cluster_page

        if self.table.empty:
            self.info.value = "no cluster of two faces or more"
            return
        row = self.table.iloc[int(i)]
        self.current = row
        members = np.flatnonzero(self.labels == row["cluster"])
        self.image.value = plots.to_png(cluster_page(self.faces, members, row), dpi=80)
        who = display_name(row["majority"])
        parts = [f"<b>{i + 1} of {len(self.table)}</b>: cluster {row['cluster']}, {row['size']} faces, "
                 f"majority <b>{html.escape(who)}</b>"
                 + ("" if np.isnan(row["purity"]) else f", purity {row['purity']:.2f}")
                 + (f", {row['unlabelled']} unlabelled" if row["unlabelled"] else "")]
        if row["splits"]:
            parts.append(f"{html.escape(who)} splits: also in " + ", ".join(
                f"cluster {c} ({n} faces)" for c, n in list(row["splits"].items())[:5]))
        if row["merged"]:
            parts.append("merged in: " + ", ".join(
                f"{html.escape(display_name(n))} ({k})" for n, k in list(row["merged"].items())[:5]))
        self.info.value = "<br>".join(parts)
