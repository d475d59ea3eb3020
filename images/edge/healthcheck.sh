#!/bin/sh
# Healthy when nginx answers its health location on both listeners: plain (8080) and the
# portal's (8443: TLS unless TLS_MODE=off). The certificate is not judged here; tests do that.
set -eu
exec python3 - <<'PY'
import os, ssl, urllib.request

unverified = ssl._create_unverified_context()
main = "http" if os.environ.get("TLS_MODE") == "off" else "https"
for url in ("http://127.0.0.1:8080/.edge/health", f"{main}://127.0.0.1:8443/.edge/health"):
    urllib.request.urlopen(url, timeout=4, context=unverified).read()
PY
