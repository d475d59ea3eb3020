#!/usr/bin/env bash
# edge-acme: the edge's certificate from an ACME CA (Let's Encrypt unless ACME_DIRECTORY_URL
# names another), by HTTP-01 challenges that the edge's own plain listener answers from its
# webroot. certbot keeps the account and certificates on the edge's volume; each new
# certificate is handed to `edge-entrypoint use-certificate` (a reload, no dropped socket).
#   check          refuse SERVER_NAMES that no ACME CA certifies (the entrypoint's check)
#   loop           what TLS_MODE=acme runs beside nginx: issue (retrying until it works),
#                  then `renew` every ACME_RENEW_INTERVAL seconds
#   issue          get the certificate for SERVER_NAMES unless a valid one is held
#   renew [ARGS]   renew when due (ARGS go to certbot, e.g. --force-renewal)
set -Eeuo pipefail

STATE_DIR=/var/lib/edge
RUN_DIR=/run/edge
: "${ACME_DIRECTORY_URL:=https://acme-v02.api.letsencrypt.org/directory}"
: "${ACME_EMAIL:=}"
: "${ACME_CA_FILE:=}"
: "${ACME_RENEW_INTERVAL:=43200}"
: "${ACME_RETRY_SECONDS:=60}"
: "${SERVER_NAMES:=}"

log() { printf '[edge-acme] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

run_certbot() {
  # ACME_CA_FILE: the CA that signs the ACME server's own HTTPS certificate, when it is a
  # private one (a test CA such as pebble); empty: the system's CA bundle.
  if [[ -n $ACME_CA_FILE ]]; then
    export REQUESTS_CA_BUNDLE=$ACME_CA_FILE
  fi
  certbot --non-interactive --config-dir "$STATE_DIR/acme" --work-dir "$RUN_DIR/acme-work" \
    --logs-dir "$RUN_DIR/acme-logs" "$@"
}

# ACME_NAMES: -d NAME for each name of SERVER_NAMES.
collect_names() {
  local name
  ACME_NAMES=()
  for name in ${SERVER_NAMES//,/ }; do
    if [[ $name == localhost || $name =~ ^[0-9.]+$ || $name == *:* ]]; then
      die "SERVER_NAMES holds '$name': an ACME CA certifies public DNS names only; set SERVER_NAMES to the portal's"
    fi
    ACME_NAMES+=(-d "$name")
  done
  ((${#ACME_NAMES[@]})) || die "SERVER_NAMES is empty: name the portal's public DNS name(s)"
}

issue() {
  local contact=(--register-unsafely-without-email)
  [[ -z $ACME_EMAIL ]] || contact=(--email "$ACME_EMAIL")
  collect_names
  log "asking $ACME_DIRECTORY_URL for ${SERVER_NAMES}"
  run_certbot certonly --webroot --webroot-path "$STATE_DIR/webroot" --cert-name edge \
    --server "$ACME_DIRECTORY_URL" --agree-tos "${contact[@]}" --keep-until-expiring \
    --expand "${ACME_NAMES[@]}" || return 1
  edge-entrypoint use-certificate
}

renew() {
  run_certbot renew --cert-name edge --server "$ACME_DIRECTORY_URL" \
    --deploy-hook "edge-entrypoint use-certificate" "$@"
}

wait_for_nginx() {
  local tries=0
  until [[ -s $RUN_DIR/nginx.pid ]]; do
    ((tries++ < 100)) || die "nginx did not start: no certificate asked for"
    sleep 0.2
  done
}

loop() {
  [[ $ACME_RENEW_INTERVAL =~ ^[1-9][0-9]*$ ]] || die "ACME_RENEW_INTERVAL is '$ACME_RENEW_INTERVAL': give seconds"
  wait_for_nginx
  until issue; do
    log "no certificate yet; the local one serves meanwhile. Next try in ${ACME_RETRY_SECONDS} s"
    sleep "$ACME_RETRY_SECONDS"
  done
  while sleep "$ACME_RENEW_INTERVAL"; do
    renew || log "renewal failed (see above); the current certificate serves on, next try in ${ACME_RENEW_INTERVAL} s"
  done
}

case ${1:-} in
  check) collect_names ;;
  loop) loop ;;
  issue) issue ;;
  renew) shift; renew "$@" ;;
  *) die "usage: edge-acme check|loop|issue|renew [certbot arguments]" ;;
esac
