"""The wheel built from a copy of app/ WITHOUT .git (as a Docker COPY sees it) must carry the
templates, the static files and the JS client, not only the .py files."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory):
    src = tmp_path_factory.mktemp("src") / "app"
    shutil.copytree(APP, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__"))
    assert not (src / ".git").exists()
    out = tmp_path_factory.mktemp("dist")
    # With build isolation, as an image build does: pip fetches the pinned setuptools
    # (app/pyproject.toml) into a temporary environment.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
    )
    wheels = list(out.glob("tethysapp_dam_inventory-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        return set(zf.namelist())


@pytest.mark.parametrize(
    "path",
    [
        "tethysapp/dam_inventory/app.py",
        "tethysapp/dam_inventory/consumers.py",
        "tethysapp/dam_inventory/templates/dam_inventory/home.html",
        "tethysapp/dam_inventory/templates/dam_inventory/add_dam.html",
        "tethysapp/dam_inventory/templates/dam_inventory/_client.html",
        "tethysapp/dam_inventory/public/js/dam_inventory.js",
        "tethysapp/dam_inventory/public/css/main.css",
        "tethysapp/dam_inventory/public/images/icon.gif",
    ],
)
def test_wheel_contains(wheel_names, path):
    assert path in wheel_names


def test_every_template_and_static_file_is_in_the_wheel(wheel_names):
    pkg = APP / "tethysapp" / "dam_inventory"
    expected = {
        str(p.relative_to(APP))
        for sub in ("templates", "public")
        for p in (pkg / sub).rglob("*")
        if p.is_file()
    }
    assert expected and expected <= wheel_names, expected - wheel_names


def test_no_namespace_init_shadows_other_apps(wheel_names):
    # tethysapp is a namespace shared by every installed app: an __init__.py would hide them.
    assert "tethysapp/__init__.py" not in wheel_names
