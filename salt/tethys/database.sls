{%- from "map.jinja" import tethys with context %}
# The portal's database server, roles and database. Every step checks first (tethys-ensure),
# so a restart that finds them in place is a couple of quick logins.
{%- if not tethys.db.skip_setup %}
tethys-database-wait:
  cmd.run:
    - name: tethys-ensure wait-db --timeout {{ tethys.db.wait_timeout }}
    - stateful: True
    - failhard: True

tethys-database-roles:
  cmd.run:
    - name: tethys-ensure db-roles
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-database-wait
{%- else %}
# SKIP_DB_SETUP (official image's name): roles and database are someone else's job.
tethys-database-wait:
  test.nop: []
tethys-database-roles:
  test.nop: []
{%- endif %}
