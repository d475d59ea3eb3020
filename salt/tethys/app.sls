{%- from "map.jinja" import tethys with context %}
{%- set app = tethys.app %}
# The app's persistent store (service, link, database) and its settings from env.
tethys-app-persistent-service:
  cmd.run:
    - name: tethys-ensure persistent-service --name {{ app.persistent_service }}
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-portal-migrate

tethys-app-link-{{ app.ps_setting }}:
  cmd.run:
    - name: tethys-ensure link-persistent --app {{ app.package }} --setting {{ app.ps_setting }} --service {{ app.persistent_service }}
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-app-persistent-service

tethys-app-syncstores-{{ app.ps_setting }}:
  cmd.run:
    - name: tethys-ensure syncstores --app {{ app.package }} --setting {{ app.ps_setting }}
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
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-portal-migrate
{%- endif %}
