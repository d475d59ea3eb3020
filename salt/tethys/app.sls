{%- from "map.jinja" import tethys with context %}
{%- set app = tethys.app %}
# The app's persistent store (service, link, database) and its settings from env.
include:
  - tethys.portal

# The service logs in as the database superuser role, which creates the app's database and
# its PostGIS extension.
tethys-app-persistent-service:
  tethys_portal.persistent_store_service:
    - name: {{ app.persistent_service | json }}
    - host: {{ tethys.db.host | json }}
    - port: {{ tethys.db.port }}
    - username: {{ tethys.db.superuser | json }}
    - failhard: True
    - require:
      - sls: tethys.portal

tethys-app-link-{{ app.ps_setting }}:
  tethys_portal.persistent_store_linked:
    - name: {{ app.ps_setting | json }}
    - app: {{ app.package | json }}
    - service: {{ app.persistent_service | json }}
    - failhard: True
    - require:
      - tethys_portal: tethys-app-persistent-service

tethys-app-store-{{ app.ps_setting }}:
  tethys_portal.persistent_store_synced:
    - name: {{ app.ps_setting | json }}
    - app: {{ app.package | json }}
    - failhard: True
    - require:
      - tethys_portal: tethys-app-link-{{ app.ps_setting }}

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
      - sls: tethys.portal
{%- endif %}
