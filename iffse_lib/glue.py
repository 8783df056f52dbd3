"""Values a notebook records, for the tests and scripts that read the executed notebook.

:func:`record` shows a line of text, as ``print`` would, and attaches the values behind it to
the same output under the MIME type :data:`RECORD_MIME` (scrapbook's "glue", without the
dependency). JupyterLab shows the text; :func:`read` gives every recorded value of an executed
notebook, so that nothing has to parse what was printed::

    glue.record(f"trustworthiness: {trust:.3f}", trustworthiness=trust)
    glue.read("04-umap-clusters.out.ipynb")["trustworthiness"]        # 0.933…
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECORD_MIME = "application/vnd.iffse.record+json"


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON values (their ``tolist``)."""
    return value.tolist() if hasattr(value, "tolist") else value


def record(text: str, **values: Any) -> None:
    """Show ``text`` and record ``values`` (JSON-serialisable; numpy scalars are converted) with it."""
    from IPython.display import display

    display({"text/plain": text, RECORD_MIME: {k: _plain(v) for k, v in values.items()}}, raw=True)


def read(notebook: str | Path | Any) -> dict[str, Any]:
    """Every value recorded in an executed notebook (a path or an ``nbformat`` notebook); a name
    recorded twice keeps its last value."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    out: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            out.update(output.get("data", {}).get(RECORD_MIME, {}))
    return out
