"""`make lab`: the notebooks get the demo's LFW folder, and JupyterLab works on a copy of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import LFW, ROOT

sys.path.insert(0, str(ROOT / "tools"))
import lab_copy  # noqa: E402


def test_make_lab_passes_the_lfw_folder_and_opens_the_working_copy():
    env = {k: v for k, v in os.environ.items() if k != "IFFSE_LFW_DIR"}
    out = subprocess.run(["make", "-n", "lab", f"VENV={os.path.dirname(os.path.dirname(sys.executable))}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    # Without IFFSE_LFW_DIR, ../shared/data/lfw (what `make demo` uses), as an absolute path: the
    # kernels run in lab/, where the relative one would point nowhere.
    if (ROOT.parent / "shared" / "data" / "lfw").is_dir():
        assert f"IFFSE_LFW_DIR={(ROOT.parent / 'shared' / 'data' / 'lfw').resolve()}" in out, out
    assert "tools/lab_copy.py notebooks lab" in out and "--ServerApp.root_dir=lab" in out
    env["IFFSE_LFW_DIR"] = str(LFW)
    out = subprocess.run(["make", "-n", "lab", f"VENV={os.path.dirname(os.path.dirname(sys.executable))}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert f"IFFSE_LFW_DIR={LFW.resolve()}" in out, out
    ignored = subprocess.run(["git", "check-ignore", "lab/01-collect-photos.ipynb"], cwd=ROOT,
                             capture_output=True, text=True)
    assert ignored.returncode == 0  # nothing saved in the copy can be committed


def test_the_working_copy_keeps_outputs_out_of_the_committed_notebooks(tmp_path):
    src, dest = tmp_path / "notebooks", tmp_path / "lab"
    src.mkdir()
    for f in (ROOT / "notebooks").iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    done = lab_copy.sync(src, dest)
    assert len(done) == len(list(src.iterdir())) == 13
    assert lab_copy.sync(src, dest) == []  # up to date: nothing copied again
    # JupyterLab saves outputs into the copy: the committed notebook does not change.
    nb = dest / "03-embed-and-index.ipynb"
    data = json.loads(nb.read_text())
    data["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "saved\n"}]
    nb.write_text(json.dumps(data))
    assert lab_copy.sync(src, dest) == []
    assert "saved" in nb.read_text() and "saved" not in (src / nb.name).read_text()
    sys.path.insert(0, str(ROOT / "tools"))
    import check_notebooks

    assert check_notebooks.problems(src / nb.name) == []
    assert check_notebooks.problems(nb)  # the copy has outputs: it would fail the check
    # A newer committed notebook (a pull) replaces the copy, which is kept beside it.
    os.utime(nb, (1, 1))
    (src / nb.name).write_text((src / nb.name).read_text().replace("Embed and index", "Embed, index"))
    done = lab_copy.sync(src, dest)
    assert len(done) == 1 and "replaced" in done[0]
    backups = list(dest.glob("03-embed-and-index.ipynb.*.bak"))
    assert len(backups) == 1 and "saved" in backups[0].read_text()
    assert nb.read_text() == (src / nb.name).read_text()


def test_a_failed_lfw_download_names_the_notebook_parameter(monkeypatch, tmp_path):
    from sklearn.datasets import _lfw

    from iffse_lib.errors import SourceError
    from iffse_lib.sources.lfw import lfw_folder

    monkeypatch.delenv("IFFSE_LFW_DIR", raising=False)

    def offline(**kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(_lfw, "_check_fetch_lfw", offline)
    with pytest.raises(SourceError, match="Set LFW_DIR or IFFSE_LFW_DIR to a local copy"):
        lfw_folder(None, data_home=tmp_path, parameter="LFW_DIR")
    monkeypatch.setenv("IFFSE_LFW_DIR", str(LFW))
    assert lfw_folder(None, parameter="LFW_DIR") == LFW.resolve()
    assert lfw_folder(str(LFW), parameter="LFW_DIR") == LFW.resolve()
