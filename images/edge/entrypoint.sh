#!/usr/bin/env bash
# Entrypoint of the edge image.
#   start (default)            write nginx's config for TLS_MODE, then run nginx in the
#                              foreground (in acme mode, with edge-acme's loop beside it)
#   use-certificate [CERT KEY] serve CERT/KEY from now on (default: the ACME certificate) and
#                              reload nginx: open connections, WebSockets included, stay open
#   anything else              run as given
# TLS_MODE: local or files (TLS_CERTIFICATE_FILE + TLS_KEY_FILE, e.g. Docker secrets), acme
# (certbot; the files above serve until the first certificate is issued), off (plain HTTP
# behind the operator's own TLS proxy, whose forwarded headers count only from
# TRUSTED_PROXIES). The defaults below are the image's; edge.env documents each.
set -Eeuo pipefail

STATE_DIR=/var/lib/edge
RUN_DIR=/run/edge
TEMPLATES=/etc/edge
CONF=$RUN_DIR/nginx.conf
ACME_LIVE=$STATE_DIR/acme/live/edge

: "${TLS_MODE:=local}"
: "${HSTS_SECONDS:=63072000}"
: "${PUBLIC_HTTPS_PORT:=443}"
: "${EDGE_UPSTREAM:=web:8080}"
: "${EDGE_MAX_BODY_SIZE:=2m}"
: "${WEBSOCKET_TIMEOUT:=90000}"
: "${TRUSTED_PROXIES:=}"
: "${TLS_CERTIFICATE_FILE:=}"
: "${TLS_KEY_FILE:=}"
: "${TLS_CRL_FILE:=}"

log() { printf '[edge] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

check_settings() {
  case $TLS_MODE in
    local | files | acme | off) ;;
    *) die "TLS_MODE is '$TLS_MODE': use local, files, acme or off" ;;
  esac
  [[ $HSTS_SECONDS =~ ^[0-9]+$ ]] || die "HSTS_SECONDS is '$HSTS_SECONDS': give a number of seconds (0: no HSTS)"
  [[ $PUBLIC_HTTPS_PORT =~ ^[0-9]+$ ]] || die "PUBLIC_HTTPS_PORT is '$PUBLIC_HTTPS_PORT': give a port number"
  [[ $WEBSOCKET_TIMEOUT =~ ^[0-9]+$ ]] || die "WEBSOCKET_TIMEOUT is '$WEBSOCKET_TIMEOUT': give a number of seconds"
  if [[ $TLS_MODE == acme ]]; then
    edge-acme check
  fi
  if [[ $TLS_MODE != off ]]; then
    local file
    for file in TLS_CERTIFICATE_FILE TLS_KEY_FILE; do
      [[ -r ${!file} ]] || die "$file is '${!file}', not a readable file: TLS_MODE=$TLS_MODE serves it" \
        "(stackctl writes a local one; for TLS_MODE=files point it at your own)"
    done
  fi
}

# The resolver nginx asks for web's address: the container's own (Docker's, 127.0.0.11).
resolver() {
  awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf
}

# client.conf: $client_addr and $client_proto, told to web in X-Forwarded-For/-Proto. From
# the connection itself, except in off mode from a TRUSTED_PROXIES peer, whose own
# X-Forwarded-For (its rightmost untrusted address) and X-Forwarded-Proto are believed.
write_client_conf() {
  local out=$RUN_DIR/client.conf cidr
  {
    echo "# written by edge-entrypoint (TLS_MODE=$TLS_MODE)"
    if [[ $TLS_MODE == off && -n $TRUSTED_PROXIES ]]; then
      for cidr in ${TRUSTED_PROXIES//,/ }; do
        echo "set_real_ip_from $cidr;"
      done
      echo "real_ip_header X-Forwarded-For;"
      echo "real_ip_recursive on;"
      echo "geo \$realip_remote_addr \$from_trusted_proxy {"
      echo "  default 0;"
      for cidr in ${TRUSTED_PROXIES//,/ }; do
        echo "  $cidr 1;"
      done
      echo "}"
      echo "map \"\$from_trusted_proxy:\$http_x_forwarded_proto\" \$client_proto {"
      echo "  \"~^1:(?<proto>https?)\$\" \$proto;"
      echo "  default \$scheme;"
      echo "}"
    else
      echo "map \$scheme \$client_proto { default \$scheme; }"
    fi
    echo "map \$remote_addr \$client_addr { default \$remote_addr; }"
  } >"$out"
}

# listen.conf: the portal's listener, TLS with CERT and KEY, or plain in off mode.
write_listen_conf() {
  local cert=${1:-} key=${2:-}
  if [[ $TLS_MODE == off ]]; then
    echo "listen 8443;" >"$RUN_DIR/listen.conf"
    return
  fi
  printf 'listen 8443 ssl http2;\nssl_certificate %s;\nssl_certificate_key %s;\n' "$cert" "$key" \
    >"$RUN_DIR/listen.conf"
}

# plain.conf: what the plain listener does besides ACME challenges.
write_plain_conf() {
  if [[ $TLS_MODE == off ]]; then
    echo "include $RUN_DIR/portal.conf;" >"$RUN_DIR/plain.conf"
    return
  fi
  local port=":$PUBLIC_HTTPS_PORT"
  [[ $PUBLIC_HTTPS_PORT != 443 ]] || port=""
  : >"$RUN_DIR/plain.conf"
  # The local CA's revocation list, where its certificates say it is (stackctl/tls.py).
  if [[ $TLS_MODE == local && -r $TLS_CRL_FILE ]]; then
    cat >>"$RUN_DIR/plain.conf" <<CONF
location = /.edge/local-ca.crl {
  default_type application/pkix-crl;
  alias $TLS_CRL_FILE;
}
CONF
  fi
  cat >>"$RUN_DIR/plain.conf" <<CONF
location / {
  return 301 https://\$host$port\$request_uri;
}
CONF
}

write_hsts_conf() {
  if [[ $TLS_MODE == off || $HSTS_SECONDS == 0 ]]; then
    echo "# no HSTS (TLS_MODE=$TLS_MODE, HSTS_SECONDS=$HSTS_SECONDS)" >"$RUN_DIR/hsts.conf"
    return
  fi
  echo "add_header Strict-Transport-Security \"max-age=$HSTS_SECONDS\" always;" >"$RUN_DIR/hsts.conf"
}

# The certificate served at start: ACME's once issued, else the files.
starting_certificate() {
  if [[ $TLS_MODE == acme && -r $ACME_LIVE/fullchain.pem ]]; then
    echo "$ACME_LIVE/fullchain.pem $ACME_LIVE/privkey.pem"
  else
    echo "$TLS_CERTIFICATE_FILE $TLS_KEY_FILE"
  fi
}

render() {
  local name
  mkdir -p "$RUN_DIR"/{client_body,proxy,fastcgi,uwsgi,scgi} "$STATE_DIR/webroot"
  rm -f "$RUN_DIR/nginx.pid"
  export EDGE_RUN_DIR=$RUN_DIR EDGE_STATE_DIR=$STATE_DIR EDGE_RESOLVER EDGE_NOFILE EDGE_WORKER_CONNECTIONS
  EDGE_RESOLVER=$(resolver)
  [[ -n $EDGE_RESOLVER ]] || die "no nameserver in /etc/resolv.conf: nginx could not look up $EDGE_UPSTREAM"
  # As many descriptors as the container grants (the hard limit; nginx raises its workers'
  # soft limit to it), capped at 65536; each proxied WebSocket holds two.
  EDGE_NOFILE=$(ulimit -Hn)
  [[ $EDGE_NOFILE =~ ^[0-9]+$ && $EDGE_NOFILE -le 65536 ]] || EDGE_NOFILE=65536
  EDGE_WORKER_CONNECTIONS=$((EDGE_NOFILE > 1280 ? EDGE_NOFILE - 256 : 1024))
  export EDGE_UPSTREAM EDGE_MAX_BODY_SIZE WEBSOCKET_TIMEOUT
  # envsubst replaces these names only (nginx's own $variables stay as they are).
  # shellcheck disable=SC2016
  local variables='${EDGE_RUN_DIR} ${EDGE_STATE_DIR} ${EDGE_RESOLVER} ${EDGE_NOFILE} ${EDGE_WORKER_CONNECTIONS} ${EDGE_UPSTREAM} ${EDGE_MAX_BODY_SIZE} ${WEBSOCKET_TIMEOUT}'
  for name in nginx portal; do
    envsubst "$variables" <"$TEMPLATES/$name.conf.template" >"$RUN_DIR/$name.conf"
  done
  write_client_conf
  # shellcheck disable=SC2046 # two words: certificate and key
  write_listen_conf $(starting_certificate)
  write_plain_conf
  write_hsts_conf
  nginx -e stderr -t -q -c "$CONF" || die "nginx refuses the configuration written to $CONF (see above)"
}

use_certificate() {
  local cert=${1:-$ACME_LIVE/fullchain.pem} key=${2:-$ACME_LIVE/privkey.pem}
  [[ -r $cert && -r $key ]] || die "use-certificate: $cert or $key is not readable"
  write_listen_conf "$cert" "$key"
  nginx -e stderr -t -q -c "$CONF" || die "nginx refuses $cert (see above): still serving the previous certificate"
  # A reload starts new workers with the new certificate; the old ones finish what they hold
  # (WebSockets included) before they exit.
  nginx -e stderr -s reload -c "$CONF"
  log "now serving $cert"
}

start() {
  [[ $(id -u) != 0 ]] || die "refusing to run as root: run the image as its 'edge' user (no --user 0)"
  check_settings
  render
  log "TLS_MODE=$TLS_MODE: HTTP on 8080, the portal on 8443, forwarding to $EDGE_UPSTREAM"
  if [[ $TLS_MODE == acme ]]; then
    edge-acme loop &
  fi
  exec nginx -e stderr -g 'daemon off;' -c "$CONF"
}

main() {
  case ${1:-start} in
    start) start ;;
    use-certificate) shift; use_certificate "$@" ;;
    *) exec "$@" ;;
  esac
}

main "$@"
