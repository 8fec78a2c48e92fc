#!/bin/sh
# redis-admin: redis-cli as the ACL user `admin`, for the healthcheck and operators:
#   docker compose exec redis redis-admin llen 'pcq:{pcq}:queue'
# The password is read from its secret file into REDISCLI_AUTH, which redis-cli
# reads: it is in no command line (`ps`) and in no container setting (`docker
# inspect`). With PCQ_REDIS_CA_FILE set (the stack's TLS), it speaks TLS.
set -eu
REDISCLI_AUTH=$(head -n 1 "${PCQ_SECRETS_DIR:-/run/secrets}/redis-admin-password" | tr -d '\r\n')
export REDISCLI_AUTH
if [ -n "${PCQ_REDIS_CA_FILE:-}" ]; then
  exec redis-cli --tls --cacert "$PCQ_REDIS_CA_FILE" --user admin --no-auth-warning "$@"
fi
exec redis-cli --user admin --no-auth-warning "$@"
