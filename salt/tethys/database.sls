{%- from "map.jinja" import tethys with context %}
{%- set db = tethys.db %}
# The portal's database server, roles and database. Each state looks first (portal_setup
# inspect), so a restart that finds them in place is a couple of quick logins.
tethys-database-ready:
  tethys_portal.database_ready:
    - name: {{ db.host | json }}
    - port: {{ db.port }}
    - username: {{ db.username | json }}
    - dbname: {{ db.name | json }}
    - timeout: {{ db.wait_timeout }}
    - failhard: True

{%- if not db.skip_setup %}

tethys-database-roles:
  tethys_portal.database_roles:
    - name: {{ db.name | json }}
    - host: {{ db.host | json }}
    - port: {{ db.port }}
    - username: {{ db.username | json }}
    - superuser: {{ db.superuser | json }}
    - admin_user: {{ db.admin_user | json }}
    - failhard: True
    - require:
      - tethys_portal: tethys-database-ready
{%- else %}

# SKIP_DB_SETUP (official image's name): roles and database are someone else's job.
tethys-database-roles:
  test.nop:
    - name: SKIP_DB_SETUP is set, roles and databases are not managed here
    - require:
      - tethys_portal: tethys-database-ready
{%- endif %}
