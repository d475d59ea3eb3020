{%- from "map.jinja" import tethys with context %}
{%- set db = tethys.db %}
# The portal's database server answers (web and setup both wait for it; nothing is changed).
tethys-database-ready:
  tethys_portal.database_ready:
    - name: {{ db.host | json }}
    - port: {{ db.port }}
    - username: {{ db.username | json }}
    - dbname: {{ db.name | json }}
    - timeout: {{ db.wait_timeout }}
    - failhard: True
