{%- from "map.jinja" import tethys with context %}
# nginx in front of the ASGI workers: rewritten at every start so a changed ASGI_PROCESSES,
# NGINX_PORT or CLIENT_MAX_BODY_SIZE takes effect on restart.
include:
  - tethys.dirs

{%- for dir in ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'] %}
tethys-nginx-temp-{{ dir }}:
  file.directory:
    - name: {{ tethys.run_dir }}/nginx/{{ dir }}
    - makedirs: True
    - require:
      - file: tethys-dirs-run
{%- endfor %}

tethys-nginx-conf:
  file.managed:
    - name: {{ tethys.run_dir }}/nginx.conf
    - source: salt://tethys/files/nginx.conf.jinja
    - template: jinja
    - require:
      - file: tethys-dirs-run

# A config nginx refuses would otherwise surface only after supervisord started: fail here.
tethys-nginx-conf-valid:
  cmd.run:
    - name: nginx -e stderr -t -q -c {{ tethys.run_dir }}/nginx.conf
    - onchanges:
      - file: tethys-nginx-conf
