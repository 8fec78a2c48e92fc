#!/bin/sh
# Render users.acl.in (beside this script) into the ACL file given as $1.
# Passwords are read from files (Docker secrets) and written as SHA-256 hashes
# only; no password is ever in an environment variable or a command line:
#   $PCQ_SECRETS_DIR/redis-admin-password      user admin
#   $PCQ_SECRETS_DIR/redis-producer-password   user producer
#   $PCQ_SECRETS_DIR/redis-consumer-password   user consumer
#   $PCQ_SECRETS_DIR/redis-rq-password         user rq
#   $PCQ_SECRETS_DIR/redis-operator-password   user operator (pcq dead)
#   $PCQ_SECRETS_DIR/redis-monitor-password    user monitor (pcq dashboard; optional:
#                                              without the file there is no monitor user)
# PCQ_SECRETS_DIR defaults to /run/secrets (where compose and swarm mount them).
# PCQ_QUEUE (default pcq) scopes the producer/consumer keys.
set -eu
here=$(dirname "$0")
out=${1:?usage: render-acl.sh OUTPUT}
dir=${PCQ_SECRETS_DIR:-/run/secrets}
queue=${PCQ_QUEUE:-pcq}
case $queue in
  '' | *[!A-Za-z0-9_.-]*) echo "render-acl: invalid PCQ_QUEUE '$queue'" >&2; exit 2 ;;
esac
sha() {  # sha ROLE: SHA-256 of the first line of that role's password file
  f="$dir/redis-$1-password"
  [ -r "$f" ] || { echo "render-acl: cannot read $f (run scripts/secrets init)" >&2; exit 2; }
  line=$(head -n 1 "$f" | tr -d '\r\n')
  [ -n "$line" ] || { echo "render-acl: $f is empty" >&2; exit 2; }
  printf '%s' "$line" | sha256sum | cut -d' ' -f1
}
admin=$(sha admin)
producer=$(sha producer)
consumer=$(sha consumer)
rq=$(sha rq)
operator=$(sha operator)
if [ -r "$dir/redis-monitor-password" ]; then
  monitor=$(sha monitor); skip='^$'
else
  monitor=none; skip='^user monitor '
fi
umask 077
grep -v '^#' "$here/users.acl.in" | grep -v '^$' | grep -v "$skip" | sed \
  -e "s/@QUEUE@/$queue/g" -e "s/@ADMIN_SHA256@/$admin/" -e "s/@PRODUCER_SHA256@/$producer/" \
  -e "s/@CONSUMER_SHA256@/$consumer/" -e "s/@RQ_SHA256@/$rq/" -e "s/@MONITOR_SHA256@/$monitor/" \
  -e "s/@OPERATOR_SHA256@/$operator/" > "$out"
