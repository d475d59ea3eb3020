{%- from "map.jinja" import tethys with context %}
{%- set gs = tethys.geoserver %}
# GeoServer as a spatial dataset service, only when GEOSERVER_URL is set (the geoserver
# compose profile); without it the app runs on its own database.
include:
  - tethys.portal

{%- if gs.url %}

tethys-geoserver-service:
  tethys_portal.spatial_dataset_service:
    - name: {{ gs.service_name | json }}
    - endpoint: {{ gs.url | json }}
    - public_endpoint: {{ gs.public_url | json }}
    - username: {{ gs.username | json }}
{%- if gs.app_setting %}
    - app: {{ tethys.app.package | json }}
    - setting: {{ gs.app_setting | json }}
{%- endif %}
    - failhard: True
    - require:
      - sls: tethys.portal
{%- else %}

tethys-geoserver-service:
  test.nop:
    - name: GEOSERVER_URL not set, no spatial dataset service
{%- endif %}
