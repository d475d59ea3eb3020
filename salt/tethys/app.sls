{%- from "map.jinja" import tethys with context %}
{%- set app = tethys.app %}
# The app's persistent store (service, link, database) and its settings from env. Each step
# is skipped when the facts (tethys.portal) show it done, and re-checks before acting anyway.
tethys-app-persistent-service:
  cmd.run:
    - name: tethys-ensure persistent-service --name {{ app.persistent_service }}
    - unless: tethys-ensure fact persistent_service_current
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-portal-migrate

tethys-app-link-{{ app.ps_setting }}:
  cmd.run:
    - name: tethys-ensure link-persistent --app {{ app.package }} --setting {{ app.ps_setting }} --service {{ app.persistent_service }}
    - unless: tethys-ensure fact linked
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-app-persistent-service

tethys-app-syncstores-{{ app.ps_setting }}:
  cmd.run:
    - name: tethys-ensure syncstores --app {{ app.package }} --setting {{ app.ps_setting }}
    # all must hold to skip: a link or service changed in this run voids store_ready
    - unless:
      - tethys-ensure fact linked
      - tethys-ensure fact persistent_service_current
      - tethys-ensure fact store_ready
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-app-link-{{ app.ps_setting }}

{%- if app.max_dams %}
{%- if not (app.max_dams | string).isdigit() %}
{{ raise('DAM_INVENTORY_MAX_DAMS must be a whole number, got: ' ~ app.max_dams) }}
{%- endif %}

tethys-app-setting-max-dams:
  cmd.run:
    - name: tethys-ensure app-setting --app {{ app.package }} --name max_dams --value {{ app.max_dams | int }}
    - unless: tethys-ensure fact --setting max_dams --value {{ app.max_dams | int }}
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-portal-migrate
{%- endif %}
