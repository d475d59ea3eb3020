{%- from "map.jinja" import tethys with context %}
{%- set gs = tethys.geoserver %}
# GeoServer as a spatial dataset service, only when GEOSERVER_URL is set (the geoserver
# compose profile); without it the app runs on its own database.
{%- if gs.url %}
tethys-geoserver-service:
  cmd.run:
    - name: tethys-ensure spatial-service --name {{ gs.service_name }}{% if gs.app_setting %} --app {{ tethys.app.package }} --setting {{ gs.app_setting }}{% endif %}
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-portal-migrate
{%- else %}
tethys-geoserver-service:
  test.nop:
    - name: GEOSERVER_URL not set, no spatial dataset service
{%- endif %}
