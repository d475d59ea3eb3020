# Applied at every container start (salt-call --local state.apply), in this order: files first
# (cheap, and a render error stops the start before anything touches the database), then the
# database and the portal, then the app's services and settings.
base:
  '*':
    - tethys.dirs
    - tethys.portal_config
    - tethys.nginx
    - tethys.supervisord
    - tethys.database
    - tethys.portal
    - tethys.app
    - tethys.geoserver
