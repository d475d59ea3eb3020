{%- from "map.jinja" import tethys with context %}
# The portal's site and branding (SITE_TITLE, PRIMARY_COLOR... the official image's names, listed
# in images/web/portal_setup.py), applied by web at every start like the app's settings: rows of
# the portal database, written only when they differ, under portal_setup's apply lock. And the
# sign-in providers of ADD_BACKENDS, checked importable (a typo would break every login).
include:
  - tethys.portal_config
  - tethys.database

tethys-portal-site:
  tethys_portal.site_settings:
    - name: site and branding settings from the environment
    - failhard: True
    - require:
      - sls: tethys.portal_config
      - sls: tethys.database

{%- if tethys.auth.backends %}

tethys-portal-auth-backends:
  tethys_portal.backends_importable:
    - name: ADD_BACKENDS
    - backends: {{ tethys.auth.backends | json }}
    - failhard: True
    - require:
      - sls: tethys.portal_config
{%- endif %}
