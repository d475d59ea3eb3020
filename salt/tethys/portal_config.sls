{%- from "map.jinja" import tethys with context %}
# The portal's settings, rendered from env at every start so a changed ALLOWED_HOSTS,
# CHANNEL_LAYERS_* or SECRET_KEY takes effect on restart.
include:
  - tethys.dirs

{%- if not tethys.secret_key %}
{{ raise('SECRET_KEY is empty: set SECRET_KEY or SECRET_KEY_FILE (python -m stackctl env writes one)') }}
{%- endif %}
{#- OTHER_SETTINGS is checked here too, so a bad value stops the start naming it (the file
    state below would report a template error). -#}
{%- do salt['tethys_settings.parse'](tethys.other_settings) %}
{%- if tethys.email.use_tls and tethys.email.use_ssl %}
{{ raise('EMAIL_USE_TLS and EMAIL_USE_SSL are both on: use one (587 with TLS, 465 with SSL)') }}
{%- endif %}
{%- if tethys.frontend_assets not in ['self-hosted', 'cdn'] %}
{{ raise('FRONTEND_ASSETS must be self-hosted or cdn, got: ' ~ tethys.frontend_assets) }}
{%- endif %}

tethys-portal-config-file:
  file.managed:
    - name: {{ tethys.home }}/portal_config.yml
    - source: salt://tethys/files/portal_config.yml.jinja
    - template: jinja
    - mode: '0600'
    # the file holds SECRET_KEY and database passwords: never print a diff of it
    - show_changes: False
    - require:
      - file: tethys-dirs-home
