#!/bin/sh
# Render nginx.conf from its template with the environment, then run nginx in the foreground.
#   entrypoint.sh [nginx args...]   render, then exec nginx -c <rendered> [args] (e.g. -t to test only)
#   entrypoint.sh render            render only, print the rendered file's path
# POSIX sh and envsubst only: the same script runs on the official nginx image and on Debian's nginx.
set -eu

die() {
    echo "entrypoint: $*" >&2
    exit 1
}

# Required, and in step with the classifier: compose passes the same .env values to both.
: "${CLASSIFIER_MAX_UPLOAD_BYTES:?must be set: the classifier's upload limit in bytes}"
: "${CLASSIFIER_MULTIPART_OVERHEAD_BYTES:?must be set: the room for multipart framing in bytes}"
byte_count() {
    case $2 in '' | *[!0-9]*) die "$1 must be a byte count, not '$2'" ;; esac
}
byte_count CLASSIFIER_MAX_UPLOAD_BYTES "$CLASSIFIER_MAX_UPLOAD_BYTES"
byte_count CLASSIFIER_MULTIPART_OVERHEAD_BYTES "$CLASSIFIER_MULTIPART_OVERHEAD_BYTES"

# Defaults fit the compose stack; tests override them to run nginx on the host.
: "${NGINX_WORKER_PROCESSES:=auto}"
: "${NGINX_ACCESS_LOG:=on}"
: "${NGINX_RESOLVER:=127.0.0.11}"
: "${NGINX_UPSTREAM:=classifier:8000}"
: "${NGINX_LISTEN:=80}"  # a port, or address:port
: "${NGINX_IMAGES_ROOT:=/}"
: "${NGINX_TEMP_DIR:=/tmp/nginx}"
: "${NGINX_USER:=nobody nogroup}"
: "${NGINX_TEMPLATE:=$(dirname "$0")/nginx.conf.template}"
: "${NGINX_CONF:=$NGINX_TEMP_DIR/nginx.conf}"
: "${NGINX_STATUS_ALLOW:=}"

# The classifier's own body limit for uploads (classifier/api.py: body_limit), so that it answers every
# oversize upload that fits under it itself; nginx answers the rest with the same error code.
NGINX_MAX_BODY_BYTES=$((CLASSIFIER_MAX_UPLOAD_BYTES + CLASSIFIER_MULTIPART_OVERHEAD_BYTES))

case $NGINX_ACCESS_LOG in
on) NGINX_ACCESS_LOG_DIRECTIVE="access_log /dev/stdout lab;" ;;
off) NGINX_ACCESS_LOG_DIRECTIVE="access_log off;" ;;
*) die "NGINX_ACCESS_LOG must be on or off, not '$NGINX_ACCESS_LOG'" ;;
esac

# A little-endian hex IPv4 address from /proc/net/route ("0011A8C0") as dotted quad ("192.168.17.0").
hex_ip() {
    printf '%d.%d.%d.%d' "0x$(echo "$1" | cut -c7-8)" "0x$(echo "$1" | cut -c5-6)" \
        "0x$(echo "$1" | cut -c3-4)" "0x$(echo "$1" | cut -c1-2)"
}

# Prefix length of a hex netmask: count its set bits, one hex digit at a time.
mask_bits() {
    bits=0
    for digit in $(echo "$1" | sed 's/./& /g'); do
        case $digit in
        F | f) bits=$((bits + 4)) ;;
        E | e | D | d | B | b | 7) bits=$((bits + 3)) ;;
        C | c | A | a | 9 | 6 | 5 | 3) bits=$((bits + 2)) ;;
        8 | 4 | 2 | 1) bits=$((bits + 1)) ;;
        esac
    done
    echo "$bits"
}

# The networks this container is directly attached to (the compose network), from the routing table.
connected_networks() {
    [ -r /proc/net/route ] || return 0
    tail -n +2 /proc/net/route | while read -r _iface dest gateway _flags _ref _use _metric mask _rest; do
        if [ "$gateway" = 00000000 ] && [ "$dest" != 00000000 ]; then
            echo "$(hex_ip "$dest")/$(mask_bits "$mask")"
        fi
    done
}

# /nginx-status: loopback and the attached networks, unless NGINX_STATUS_ALLOW lists other CIDRs.
networks=${NGINX_STATUS_ALLOW:-"127.0.0.0/8 $(connected_networks)"}
NGINX_STATUS_ALLOW_RULES=""
for net in $networks; do
    NGINX_STATUS_ALLOW_RULES="${NGINX_STATUS_ALLOW_RULES}allow $net; "
done
NGINX_STATUS_ALLOW_RULES="${NGINX_STATUS_ALLOW_RULES}deny all;"

export NGINX_USER NGINX_WORKER_PROCESSES NGINX_TEMP_DIR NGINX_ACCESS_LOG_DIRECTIVE NGINX_MAX_BODY_BYTES \
    NGINX_RESOLVER NGINX_LISTEN NGINX_UPSTREAM NGINX_STATUS_ALLOW_RULES NGINX_IMAGES_ROOT

mkdir -p "$NGINX_TEMP_DIR" "$(dirname "$NGINX_CONF")"
# Only these names are replaced: nginx's own $variables must stay as they are.
envsubst '${NGINX_USER} ${NGINX_WORKER_PROCESSES} ${NGINX_TEMP_DIR} ${NGINX_ACCESS_LOG_DIRECTIVE}
${NGINX_MAX_BODY_BYTES} ${NGINX_RESOLVER} ${NGINX_LISTEN} ${NGINX_UPSTREAM}
${NGINX_STATUS_ALLOW_RULES} ${NGINX_IMAGES_ROOT}' <"$NGINX_TEMPLATE" >"$NGINX_CONF"

if [ "${1:-}" = render ]; then
    echo "$NGINX_CONF"
    exit 0
fi
echo "entrypoint: upstream $NGINX_UPSTREAM via resolver $NGINX_RESOLVER, body limit $NGINX_MAX_BODY_BYTES bytes," \
    "status allowed from: $networks" >&2
exec nginx -c "$NGINX_CONF" "$@"
