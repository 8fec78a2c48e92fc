#!/bin/sh
# Render users.acl.in (beside this script) into the ACL file given as $1.
# Passwords come from the environment and are written as SHA-256 hashes only:
#   REDIS_PASSWORD (user admin), PCQ_PRODUCER_PASSWORD, PCQ_CONSUMER_PASSWORD,
#   PCQ_RQ_PASSWORD, PCQ_OPERATOR_PASSWORD, PCQ_MONITOR_PASSWORD (optional: without it
#   there is no monitor user); PCQ_QUEUE (default pcq) scopes the producer/consumer keys.
set -eu
here=$(dirname "$0")
out=${1:?usage: render-acl.sh OUTPUT}
queue=${PCQ_QUEUE:-pcq}
case $queue in
  '' | *[!A-Za-z0-9_.-]*) echo "render-acl: invalid PCQ_QUEUE '$queue'" >&2; exit 2 ;;
esac
sha() {
  [ -n "$2" ] || { echo "render-acl: $1 is empty" >&2; exit 2; }
  printf '%s' "$2" | sha256sum | cut -d' ' -f1
}
admin=$(sha REDIS_PASSWORD "${REDIS_PASSWORD:-}")
producer=$(sha PCQ_PRODUCER_PASSWORD "${PCQ_PRODUCER_PASSWORD:-}")
consumer=$(sha PCQ_CONSUMER_PASSWORD "${PCQ_CONSUMER_PASSWORD:-}")
rq=$(sha PCQ_RQ_PASSWORD "${PCQ_RQ_PASSWORD:-}")
operator=$(sha PCQ_OPERATOR_PASSWORD "${PCQ_OPERATOR_PASSWORD:-}")
if [ -n "${PCQ_MONITOR_PASSWORD:-}" ]; then
  monitor=$(sha PCQ_MONITOR_PASSWORD "$PCQ_MONITOR_PASSWORD"); skip='^$'
else
  monitor=none; skip='^user monitor '
fi
umask 077
grep -v '^#' "$here/users.acl.in" | grep -v '^$' | grep -v "$skip" | sed \
  -e "s/@QUEUE@/$queue/g" -e "s/@ADMIN_SHA256@/$admin/" -e "s/@PRODUCER_SHA256@/$producer/" \
  -e "s/@CONSUMER_SHA256@/$consumer/" -e "s/@RQ_SHA256@/$rq/" -e "s/@MONITOR_SHA256@/$monitor/" \
  -e "s/@OPERATOR_SHA256@/$operator/" > "$out"
