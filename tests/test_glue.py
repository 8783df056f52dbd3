"""Values a notebook records (iffse_lib.glue) come back from the executed notebook, in a real kernel,
and the reader sees the line of text they belong to."""

from __future__ import annotations

import nbformat


def test_recorded_values_come_back_from_the_executed_notebook(tmp_path):
    import papermill

    from iffse_lib import glue

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import numpy as np\n"
        "from iffse_lib import glue\n"
        "glue.record('purity: 0.951', purity=np.float64(0.951), faces=np.int64(2668), names=['a', 'b'])\n"
        "glue.record('again', faces=3)")]
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    papermill.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    values = glue.read(out)
    assert values == {"purity": 0.951, "faces": 3, "names": ["a", "b"]}  # the last value of a name wins
    shown = [o["data"]["text/plain"] for o in nbformat.read(out, as_version=4).cells[0].outputs]
    assert shown == ["purity: 0.951", "again"]
    assert glue.read(nbformat.read(out, as_version=4)) == values
