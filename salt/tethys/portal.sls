{%- from "map.jinja" import tethys with context %}
# Setup only: migrations and the portal admin (created once; its password is then the admin's
# own). Only the one-shot setup service migrates, so web containers never race on it.
include:
  - tethys.portal_config
  - tethys.roles

tethys-portal-migrated:
  tethys_portal.migrated:
    - name: {{ tethys.db.name | json }}
    - failhard: True
    - require:
      - sls: tethys.portal_config
      - sls: tethys.roles

tethys-portal-admin:
  tethys_portal.portal_admin:
    - name: {{ tethys.portal_admin.name | json }}
    - email: {{ tethys.portal_admin.email | json }}
    - failhard: True
    - require:
      - tethys_portal: tethys-portal-migrated
