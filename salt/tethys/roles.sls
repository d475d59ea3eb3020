{%- from "map.jinja" import tethys with context %}
{%- set db = tethys.db %}
{%- set app = tethys.app %}
# Setup only (the one-shot `setup` service, which holds POSTGRES_PASSWORD): the portal's roles
# and database, and the app's persistent store database, made as the server's admin. Neither
# role may create roles or databases (LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE), so the
# portal serves requests without any of those powers. Each state looks first (portal_setup
# inspect): a run that finds everything in place is a couple of quick logins.
include:
  - tethys.database

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

# Tethys names the database <app package>_<setting>; its own store sync then finds it in place.
tethys-database-store-{{ app.ps_setting }}:
  tethys_portal.store_database:
    - name: {{ (app.package ~ '_' ~ app.ps_setting) | json }}
    - host: {{ db.host | json }}
    - port: {{ db.port }}
    - owner: {{ db.superuser | json }}
    - admin_user: {{ db.admin_user | json }}
    - failhard: True
    - require:
      - tethys_portal: tethys-database-roles

# The role backups dump as (the backup service's, images/backup): reads, never writes.
tethys-database-backup-role:
  tethys_portal.backup_role:
    - name: {{ db.backup_user | json }}
    - host: {{ db.host | json }}
    - port: {{ db.port }}
    - admin_user: {{ db.admin_user | json }}
    - failhard: True
    - require:
      - tethys_portal: tethys-database-ready
{%- else %}

# SKIP_DB_SETUP (official image's name): roles and databases are someone else's job.
tethys-database-roles:
  test.nop:
    - name: SKIP_DB_SETUP is set, roles and databases are not managed here
    - require:
      - tethys_portal: tethys-database-ready
{%- endif %}
