"""GeoServer: checked where it can exist; on this machine kind it cannot (no registry to pull
tethysplatform/geoserver from, no Debian or PyPI package carries it), which is the one skip
the suites allow."""

import pytest

from stackctl import docker, images

REASON = ("GeoServer cannot exist on this machine: no container registry to pull "
          "tethysplatform/geoserver and no Debian/PyPI package carries it")


@pytest.fixture(scope="module")
def geoserver(stack):
    containers = stack.containers()
    if "geoserver" in containers:
        return containers["geoserver"]
    image = images.compose_variables()["GEOSERVER_IMAGE"]
    if docker.image_exists(image):
        pytest.fail(f"the GeoServer image {image} is here but the stack runs no geoserver service")
    pytest.skip(REASON)


def test_geoserver_is_healthy_and_unpublished(stack, geoserver):
    info = stack.inspect("geoserver")
    assert (info["State"].get("Health") or {}).get("Status") == "healthy"
    ports = info["NetworkSettings"].get("Ports") or {}
    assert not any(ports.values()), f"geoserver publishes {ports}"


def test_geoserver_admin_password_is_not_the_default(stack, geoserver):
    password = stack.secret("geoserver", "GEOSERVER_ADMIN_PASSWORD")
    assert password and password != "geoserver"
