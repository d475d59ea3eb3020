{%- from "map.jinja" import tethys with context %}
{%- set app = tethys.app %}
# The app's settings from env, applied by web at every start (a changed DAM_INVENTORY_MAX_DAMS
# takes effect on restart). One row of the portal database, written as the portal role only
# when it differs, under portal_setup's apply lock: web containers starting at once are safe.
include:
  - tethys.portal_config
  - tethys.database

{%- if app.max_dams %}
{%- if not app.max_dams.isdigit() %}
{{ raise('DAM_INVENTORY_MAX_DAMS must be a whole number, got: ' ~ app.max_dams) }}
{%- endif %}

tethys-app-setting-max-dams:
  tethys_portal.app_setting:
    - name: max_dams
    - app: {{ app.package | json }}
    - value: {{ app.max_dams | int }}
    - failhard: True
    - require:
      - sls: tethys.portal_config
      - sls: tethys.database
{%- else %}

tethys-app-setting-max-dams:
  test.nop:
    - name: DAM_INVENTORY_MAX_DAMS not set, max_dams keeps its stored value
{%- endif %}
