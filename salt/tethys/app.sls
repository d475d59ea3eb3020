{%- from "map.jinja" import tethys with context %}
{%- set app = tethys.app %}
# Setup only: the app's persistent store (service, link, database initialized).
include:
  - tethys.portal

# The service logs in as the store role (TETHYS_DB_SUPERUSER, no PostgreSQL superuser), which
# owns the app's database that tethys.roles made with its PostGIS extension.
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
