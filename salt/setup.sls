# What the one-shot `setup` service applies (`tethys-entrypoint setup`) before any web
# container starts: as the server's admin (POSTGRES_PASSWORD), the roles and databases; then
# migrations, the portal admin, the app's persistent store and GeoServer's registration.
# Web's own states (top.sls) need none of it and no admin password.
include:
  - tethys.dirs
  - tethys.portal_config
  - tethys.database
  - tethys.roles
  - tethys.portal
  - tethys.app
  - tethys.geoserver
