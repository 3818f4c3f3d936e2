#!/bin/sh
# The sandbox's example web app: busybox httpd answering /up ("ok") and /version ($APP_VERSION).
# This shell stays PID 1 and stops httpd on SIGTERM: busybox httpd as PID 1 ignores SIGTERM, so
# `docker stop` would otherwise wait for its whole timeout.
mkdir -p /www
echo ok >/www/up
echo "${APP_VERSION:-unknown}" >/www/version
httpd -f -p "${PORT:-80}" -h /www &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
wait "$pid"
