"""`pip install .` (not editable) gives a working package: every subpackage and the schema are in the wheel, and the
workflow plans with it from a folder that holds no copy of the package."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

WORKFLOW_FILES = ["Snakefile", "rules", "config", "workflow_scripts", "report", "envs"]


def _run(args, cwd, **kwargs):
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy so that setuptools' build/ folder never lands in the checkout; config/ comes along because
    # matprobe/resources/schema.yaml links into it.
    source = tmp_path_factory.mktemp("source")
    for name in ["pyproject.toml", "README.md", "matprobe", "config"]:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source], cwd=source)
    (built,) = out.glob("matprobe-*.whl")
    return built


def test_the_wheel_holds_every_subpackage_and_the_schema(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(str(p.parent.relative_to(REPO)) for p in (REPO / "matprobe").rglob("__init__.py"))
    assert len(packages) > 1, "the test must see subpackages to mean anything"
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"subpackages missing from the wheel: {missing}"
    assert "matprobe/resources/schema.yaml" in names
    schema = zipfile.ZipFile(wheel).read("matprobe/resources/schema.yaml")
    assert schema == (REPO / "config" / "schema.yaml").read_bytes(), "the wheel must carry the schema's text, not a link"


def test_an_installed_wheel_imports_every_module_and_plans_the_workflow(wheel, tmp_path):
    env = tmp_path / "env"
    _run([sys.executable, "-m", "venv", env], cwd=tmp_path)
    python = env / "bin" / "python"
    _run([python, "-m", "pip", "install", "--no-deps", "-q", wheel], cwd=tmp_path)
    # The dependencies come from this interpreter's site-packages, added as a plain path after the environment's own:
    # a plain path is not scanned for .pth files, so an editable install of matprobe there stays invisible.
    own_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
                    .stdout.strip())
    (own_site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "matprobe").rglob("*.py")
                     if p.name != "__init__.py")
    check = ("import importlib, matprobe, pathlib, sys\n"
             "assert pathlib.Path(matprobe.__file__).is_relative_to(sys.prefix), matprobe.__file__\n"
             f"for name in {modules!r}: importlib.import_module(name)\n"
             "from matprobe.config import SCHEMA_PATH\n"
             "assert SCHEMA_PATH.is_file() and not SCHEMA_PATH.is_symlink()\n")
    _run([python, "-c", check], cwd=tmp_path)

    workflow = tmp_path / "workflow"
    workflow.mkdir()
    for name in WORKFLOW_FILES:
        path = REPO / name
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, workflow / name)
    assert importlib.util.find_spec("snakemake") is not None
    planned = _run([python, "-m", "snakemake", "-n", "--quiet", "rules"], cwd=workflow)
    assert "train_model" in planned.stdout, planned.stdout[-2000:]
