{%- from "map.jinja" import tethys with context %}
{%- set asgi_servers = ["daphne", "uvicorn"] %}
# supervisord runs nginx and ASGI_PROCESSES ASGI workers (ASGI_SERVER); rewritten at every start.
include:
  - tethys.dirs

{%- if tethys.asgi.server not in asgi_servers %}
{{ raise('ASGI_SERVER must be one of ' ~ asgi_servers | join(', ') ~ ', not "' ~ tethys.asgi.server ~ '"') }}
{%- endif %}
{#- map.jinja reads a number that is not one as 0 #}
{%- if tethys.asgi.listen_backlog < 1 %}
{{ raise('ASGI_LISTEN_BACKLOG must be a whole number of at least 1 (connections queued per worker socket)') }}
{%- endif %}

tethys-supervisord-conf:
  file.managed:
    - name: {{ tethys.run_dir }}/supervisord.conf
    - source: salt://tethys/files/supervisord.conf.jinja
    - template: jinja
    - require:
      - file: tethys-dirs-run

# What the HEALTHCHECK probes: nginx's port and every worker's socket, with a Host header
# the portal accepts. Written last among the files so a stale list never outlives a change.
tethys-supervisord-health-targets:
  file.serialize:
    - name: {{ tethys.run_dir }}/health.json
    - serializer: json
    - dataset:
        nginx_port: {{ tethys.nginx.port }}
        host: {{ tethys.health_host | json }}
        request_timeout: {{ tethys.health_timeout }}
        sockets:
{%- for n in range(1, tethys.asgi.processes + 1) %}
          - {{ tethys.asgi.socket.format(n=n) }}
{%- endfor %}
    - require:
      - file: tethys-supervisord-conf
