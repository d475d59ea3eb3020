{%- from "map.jinja" import tethys with context %}
{%- set app = tethys.app %}
# The app's settings from env, applied by web at every start (a changed DAM_INVENTORY_MAX_DAMS
# or DAM_INVENTORY_BASE_MAP takes effect on restart). One row of the portal database, written as the portal role only
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

{#- The base map: "offline", "osm", or an XYZ tile URL template (the app checks it the same way). #}
{%- set base_map = app.base_map %}
{%- set is_template = base_map.startswith(('https://', 'http://')) and '{z}' in base_map
                      and '{x}' in base_map and '{y}' in base_map and ' ' not in base_map %}
{%- if base_map not in ['offline', 'osm'] and not is_template %}
{{ raise('DAM_INVENTORY_BASE_MAP must be offline, osm, or a tile URL with {z}, {x} and {y} '
         '(e.g. https://tile.example.org/{z}/{x}/{y}.png), got: ' ~ base_map) }}
{%- endif %}

tethys-app-setting-base-map:
  tethys_portal.app_setting:
    - name: base_map
    - app: {{ app.package | json }}
    - value: {{ base_map | json }}
    - failhard: True
    - require:
      - sls: tethys.portal_config
      - sls: tethys.database
