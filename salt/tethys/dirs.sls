{%- from "map.jinja" import tethys with context %}
# Writable places of the non-root container. The image creates them owned by `tethys`; a
# volume mounted over TETHYS_PERSIST may arrive empty, so its sub-directories are ensured here.
{%- for name, path in [('run', tethys.run_dir), ('home', tethys.home),
                       ('workspaces', tethys.workspaces_root), ('media', tethys.media_root)] %}
tethys-dirs-{{ name }}:
  file.directory:
    - name: {{ path }}
    - makedirs: True
{%- endfor %}
