#!/bin/sh
# Start Redis with the password from the compose secret, without putting it on
# a command line: write a config holding requirepass to the tmpfs (0600, owned
# by redis), include the committed redis.conf, and hand over to the image's
# entrypoint, which drops to the redis user.
set -eu
conf=/tmp/redis.conf
umask 077
{
    printf 'requirepass "%s"\n' "$(cat /run/secrets/redis_password)"
    printf 'include /usr/local/etc/redis/redis.conf\n'
} > "$conf"
chown redis:redis "$conf"
exec docker-entrypoint.sh redis-server "$conf"
