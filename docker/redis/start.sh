#!/bin/sh
# The redis service's command: write the ACL file (hashed passwords) to /tmp,
# then become redis-server with it. Extra arguments go to redis-server.
set -eu
/bin/sh "$(dirname "$0")/render-acl.sh" /tmp/users.acl
exec redis-server --aclfile /tmp/users.acl "$@"
