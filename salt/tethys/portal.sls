{%- from "map.jinja" import tethys with context %}
# Migrations and the portal admin. `migrate --check` is the idempotence test: a restart with
# nothing to apply runs no migration.
tethys-portal-migrate:
  cmd.run:
    - name: {{ tethys.venv }}/bin/python -m django migrate --noinput
    - unless: {{ tethys.venv }}/bin/python -m django migrate --check --noinput
    - failhard: True
    - require:
      - cmd: tethys-database-roles
      - file: tethys-portal-config-file

tethys-portal-admin:
  cmd.run:
    - name: tethys-ensure portal-admin
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-portal-migrate
