{%- from "map.jinja" import tethys with context %}
{%- set app = tethys.app %}
# Migrations and the portal admin. What a restart finds already in place is skipped: the
# facts state looks at the database once (one Django boot) and each `unless` reads its answer.
tethys-portal-facts:
  cmd.run:
    - name: tethys-ensure facts --app {{ app.package }} --setting {{ app.ps_setting }} --service {{ app.persistent_service }}
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-database-roles
      - file: tethys-portal-config-file

tethys-portal-migrate:
  cmd.run:
    - name: {{ tethys.venv }}/bin/python -m django migrate --noinput
    - unless: tethys-ensure fact migrations_applied
    - failhard: True
    - require:
      - cmd: tethys-portal-facts

tethys-portal-admin:
  cmd.run:
    - name: tethys-ensure portal-admin
    - unless: tethys-ensure fact admin_exists
    - stateful: True
    - failhard: True
    - require:
      - cmd: tethys-portal-migrate
