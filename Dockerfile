# The web image: Tethys Platform 4.6.1 portal with the dam inventory app, served by nginx in
# front of ASGI_PROCESSES daphne workers (one unix socket each) sharing a Redis channel layer,
# configured at every start by masterless Salt states (salt/). Non-root throughout.
#
# Build with `make images` (python3 -m stackctl images): it fills build/wheels/ on the host
# first, so no stage below downloads a Python package (HTTPS from inside a build does not
# trust this machine's egress proxy; an air-gapped builder needs only the wheelhouse), and
# passes BASE_IMAGE: the registry's Debian slim image, or the locally built bookworm where no
# registry answers (images/versions.env names both).
ARG BASE_IMAGE

# ---------------------------------------------------------------------------------------------
# Python environments, built once and cached: nothing under app/ invalidates these layers.
FROM ${BASE_IMAGE} AS venvs
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv binutils \
 && rm -rf /var/lib/apt/lists/*
# (python3 and python3-venv follow bookworm's python3.11 security updates; their version is
# the distribution's, which is why DL3008 (pin apt versions) is ignored above and below.
# binutils gives `strip`, for this stage only: the final image copies the venvs, not it.)

# pip leaves the compiled bytecode in place, on purpose: without it every Salt and Django
# process of a start recompiles thousands of modules (measured: 5-7 s per Django boot instead
# of about 1 s), and the service user could not write it back anyway.
# Salt in its own venv: its pins (PyYAML >= 6, tornado, pyzmq...) must not steer the portal's.
COPY build/wheels/salt/ /wheels/salt/
COPY images/web/salt-requirements.txt /tmp/salt-requirements.txt
RUN python3 -m venv /opt/salt \
 && /opt/salt/bin/pip install --no-cache-dir --no-index --find-links /wheels/salt \
      -r /tmp/salt-requirements.txt \
 && /opt/salt/bin/pip uninstall --yes --quiet apache-libcloud pip
# Size: apache-libcloud (40 MB, salt's cloud drivers) serves no state of a masterless
# `salt-call --local`; pip is not needed at run time. Salt's loader skips what is absent.

COPY build/wheels/web/ /wheels/web/
COPY images/web/requirements.txt /tmp/web.txt
COPY images/web/web-constraints.txt /tmp/web-constraints.txt
RUN python3 -m venv /opt/tethys-venv \
 && /opt/tethys-venv/bin/pip install --no-cache-dir --no-index --find-links /wheels/web \
      -r /tmp/web.txt -c /tmp/web-constraints.txt \
 && /opt/tethys-venv/bin/pip uninstall --yes --quiet setuptools pip \
 && for venv in /opt/salt /opt/tethys-venv; do \
      site="$venv/lib/python3.11/site-packages"; \
      if [ -d "$site/twisted" ]; then find "$site/twisted" -type d -name test -prune -exec rm -rf {} +; fi; \
      rm -rf "$site/tornado/test" "$site/zope/interface/tests" "$site/zope/interface/common/tests" \
             "$site/cherrypy/test" "$site/guardian/testapp" "$site/social_core/tests"; \
      find "$site" -name '*.po' -delete; \
    done \
 && strip --strip-unneeded /opt/tethys-venv/lib/python3.11/site-packages/uvloop/*.so
# Size (the image must stay under 600 MB): the test suites these libraries ship (~38 MB;
# twisted alone 20) are never imported at run time, nor is setuptools (8 MB, from the venv's
# creation; only build-time hooks of cffi and incremental mention it). Named one by one: a
# blanket `-name test` would also delete modules that are code, such as django/test.
# Translations are read from the compiled .mo files; their .po sources (12 MB, Django's
# mostly) are not. uvloop's wheel ships its extension with debugging symbols: 13.6 MB, 1.6 MB
# stripped.

# ---------------------------------------------------------------------------------------------
# The app as a wheel (templates and static files included as package data).
# Installed into a separate directory (--target) that the final stage copies into the venv's
# site-packages: the final image needs no pip.
FROM venvs AS app
COPY build/wheels/build/ /wheels/build/
COPY app/ /src/app/
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-index \
      --find-links /wheels/build --wheel-dir /dist /src/app \
 && /opt/build/bin/pip install --no-cache-dir --no-deps --no-index --target /app-site /dist/*.whl

# ---------------------------------------------------------------------------------------------
# Front-end assets (Bootstrap, icons, jQuery, Select2, OpenLayers, Open Sans, the offline base
# map) unpacked from the pinned, hash-checked packages of images/web/frontend/requirements.txt
# into the tree Tethys serves when STATICFILES_USE_NPM is on. Nothing is installed.
FROM venvs AS frontend
COPY build/wheels/frontend/ /wheels/frontend/
COPY images/web/frontend/ /src/frontend/
RUN python3 /src/frontend/vendor.py assemble /wheels/frontend /node_modules

# ---------------------------------------------------------------------------------------------
# Static files, collected at build time into the image (not the persist volume), so a new
# image never serves an older image's assets. Tethys finds an app's static files only once the
# app loaded, which needs a migrated database: a throwaway SQLite one. No secret is involved:
# the key Django generates for these commands dies with this stage. Collected through Tethys'
# own STATICFILES_USE_NPM switch, so the vendored tree is found exactly where Tethys looks
# (tethys_portal/static/node_modules; --ignore keeps that folder from being collected twice).
# Tethys' stylesheet then gets the local Open Sans instead of Google's font URLs.
FROM venvs AS static
ARG SITE=/opt/tethys-venv/lib/python3.11/site-packages
ENV STATIC_ROOT=/usr/share/tethys/static
COPY --from=app /app-site/ ${SITE}/
COPY --from=frontend /node_modules/ ${SITE}/tethys_portal/static/node_modules/
COPY images/web/frontend/vendor.py /usr/local/bin/vendor-frontend
RUN mkdir -p /tmp/collect \
 && printf 'settings:\n  TETHYS_PORTAL_CONFIG:\n    STATIC_ROOT: %s\n    STATICFILES_USE_NPM: true\n' "$STATIC_ROOT" \
      > /tmp/collect/portal_config.yml \
 && export TETHYS_HOME=/tmp/collect DJANGO_SETTINGS_MODULE=tethys_portal.settings \
 && /opt/tethys-venv/bin/python -m django migrate --noinput -v 0 >/dev/null \
 && /opt/tethys-venv/bin/python -m django collectstatic --noinput -v 0 --ignore node_modules \
 && test -d "$STATIC_ROOT/dam_inventory" && test -f "$STATIC_ROOT/openlayers-dist/ol.js" \
 && python3 /usr/local/bin/vendor-frontend local-fonts "$STATIC_ROOT/tethys_portal/css/tethys_main.min.css" ../../open-sans

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

# Runtime packages only: no compilers, no python3-venv. procps (ps), iproute2 (ss) and
# netcat-openbsd (nc) are there for the testinfra container suite and for operators.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 nginx supervisor ca-certificates procps iproute2 netcat-openbsd \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
 && groupadd --system --gid 10001 tethys \
 && useradd --system --uid 10001 --gid tethys --home-dir /var/lib/tethys --shell /usr/sbin/nologin tethys \
 && install -d -o tethys -g tethys /var/lib/tethys /var/lib/tethys_persist /run/tethys
# Only those three directories are writable by the service user; code, state templates and
# static files stay root-owned.

# The configuration's defaults live in salt/defaults.yaml (the env contract of the official
# tethys-core image, same names); the Salt states merge the environment over them at start.
# Set here only what is needed outside Salt: the paths Django, the entrypoint and the
# healthcheck read (TETHYS_HOME, TETHYS_RUN_DIR), the build's STATIC_ROOT, and the worker
# count and channel layer, visible in the image's config as the official image shows them.
# tests/unit/test_defaults_agree.py keeps these equal to defaults.yaml.
ENV TETHYS_HOME=/var/lib/tethys \
    TETHYS_RUN_DIR=/run/tethys \
    STATIC_ROOT=/usr/share/tethys/static \
    ASGI_PROCESSES=2 \
    CHANNEL_LAYERS_BACKEND=channels_redis.core.RedisChannelLayer \
    CHANNEL_LAYERS_CONFIG="{'hosts':[{'host': 'redis', 'port': 6379}]}" \
    DJANGO_SETTINGS_MODULE=tethys_portal.settings \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/tethys-venv/bin:/opt/salt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

VOLUME ["/var/lib/tethys_persist"]
EXPOSE 8080
# Fails unless nginx and every ASGI worker answer. start_period covers a slow first start on a
# loaded machine (the one-shot setup service migrates before web starts); a restart is healthy
# in seconds.
HEALTHCHECK --interval=2s --timeout=15s --start-period=120s --retries=3 \
  CMD ["/usr/local/bin/tethys-healthcheck"]
# supervisord (PID 1 after the entrypoint's exec) stops the workers first on SIGTERM, then nginx.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tethys-entrypoint"]
CMD ["start"]

# (Metadata above the big layers: on this engine's storage every build step costs a commit.)
COPY --from=venvs /opt/salt/ /opt/salt/
COPY --from=venvs /opt/tethys-venv/ /opt/tethys-venv/

# The vendored front-end tree stays where Tethys' STATICFILES_USE_NPM switch looks for it;
# nginx serves the collected copy.
COPY --from=frontend /node_modules/ /opt/tethys-venv/lib/python3.11/site-packages/tethys_portal/static/node_modules/
# The app last: a change under app/ rebuilds only the layers from here on.
COPY --from=app /app-site/ /opt/tethys-venv/lib/python3.11/site-packages/
COPY --from=static /usr/share/tethys/static/ /usr/share/tethys/static/

COPY salt/ /srv/salt/
COPY images/web/ /opt/tethys-web/
COPY images/file_env.sh /usr/local/lib/
RUN install -D -m 0644 /opt/tethys-web/salt-minion.conf /etc/tethys/salt/minion \
 && ln -s /opt/tethys-web/entrypoint.sh /usr/local/bin/tethys-entrypoint \
 && ln -s /opt/tethys-web/healthcheck.py /usr/local/bin/tethys-healthcheck \
 && ln -s /opt/tethys-web/portal_setup.py /usr/local/bin/tethys-portal-setup \
 && ln -s /opt/tethys-web/tethys_daphne.py /usr/local/bin/tethys-daphne

USER 10001:10001
WORKDIR /var/lib/tethys
