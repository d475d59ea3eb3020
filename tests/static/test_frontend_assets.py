"""The vendored front end (images/web/frontend/): every file Tethys' templates ask for when its
STATICFILES_USE_NPM switch is on exists in the tree vendor.py builds from the pinned packages,
and a package that does not match its pinned hash is refused."""

import shutil
import subprocess
import sys

import pytest

from stackctl import images

VENDOR = images.IMAGES_DIR / "web" / "frontend" / "vendor.py"
# The dependencies the portal's and the app's pages load (Tethys' base templates, the app
# library, the app's map).
USED = ["bootstrap", "bootstrap_icons", "jquery", "select2", "openlayers", "doc_cookies"]


def assemble(wheelhouse, out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(VENDOR), "assemble", str(wheelhouse), str(out)],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def wheelhouse():
    """The pinned packages, as `make images` downloads them (a current image needs no build,
    so the wheelhouse may not be there yet)."""
    return images.download_frontend()


@pytest.fixture(scope="module")
def tree(wheelhouse, tmp_path_factory):
    out = tmp_path_factory.mktemp("frontend") / "node_modules"
    proc = assemble(wheelhouse, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def tethys_paths(name: str) -> list[str]:
    """Every path Tethys may ask for: css and js, minified and (DEBUG) not."""
    from tethys_portal.dependencies import vendor_static_dependencies

    dependency = vendor_static_dependencies[name]
    paths = [p for p in (dependency.css_path, dependency.js_path) if p] + list(dependency.js_paths or [])
    return [f"{dependency.npm_name}/{p}" for path in paths
            for p in {path, dependency.debug_path_converter(path)}]


@pytest.mark.parametrize("name", USED)
def test_every_file_tethys_asks_for_is_vendored(tree, name):
    missing = [path for path in tethys_paths(name) if not (tree / path).is_file()]
    assert not missing, f"{name}: not in the vendored tree: {missing}"


def test_base_map_and_fonts_are_vendored_with_their_provenance(tree):
    for path in ("dam-inventory-basemap/countries.geojson", "dam-inventory-basemap/lakes.geojson",
                 "open-sans/OpenSans-Regular.woff2", "bootstrap-icons/font/fonts/bootstrap-icons.woff2"):
        assert (tree / path).stat().st_size > 10_000, path
    manifest = (tree / "VENDORED.txt").read_text()
    assert "openlayers-dist/ol.js  <- pyopenlayersqt-0.21.0" in manifest, manifest


def test_a_package_that_does_not_match_its_pin_is_refused(wheelhouse, tmp_path):
    tampered = tmp_path / "wheels"
    shutil.copytree(wheelhouse, tampered)
    victim = next(tampered.glob("xstatic_jquery-*.whl"))
    victim.write_bytes(victim.read_bytes() + b"tampered")
    proc = assemble(tampered, tmp_path / "out")
    assert proc.returncode != 0
    assert f"{victim.name} (sha256" in proc.stderr and "refusing it" in proc.stderr, proc.stderr
