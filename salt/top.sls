# Applied by web at every container start (salt-call --local state.apply): files first (cheap,
# and a render error stops the start before anything touches the database), then a wait for
# the database, the app's settings and the portal's site settings. Roles, databases, migrations and the app's store are
# the one-shot setup service's (setup.sls), which web's compose service waits for.
base:
  '*':
    - tethys.dirs
    - tethys.portal_config
    - tethys.nginx
    - tethys.supervisord
    - tethys.database
    - tethys.app_settings
    - tethys.site
