#!/bin/sh
# The sandbox's example web app: busybox httpd answering /up ("ok") and /version ($APP_VERSION).
# This shell stays PID 1 and handles SIGTERM as a graceful app server does: busybox httpd as PID 1
# would ignore it. On TERM it stops httpd's listener (the parent process; each connection is served by
# a forked child that finishes its response), waits a second for requests in flight, then exits 0.
# APP_HEALTHY=0 leaves /up out, so a health check of this version fails (the "bad release" case).
# APP_SERVING=0 leaves /version out (404): healthy, but its real requests fail (the canary's case).
mkdir -p /www
if [ "${APP_HEALTHY:-1}" != 0 ]; then echo ok >/www/up; fi
if [ "${APP_SERVING:-1}" != 0 ]; then echo "${APP_VERSION:-unknown}" >/www/version; fi
httpd -f -p "${PORT:-80}" -h /www &
pid=$!
trap 'kill "$pid" 2>/dev/null; sleep 1; exit 0' TERM INT
wait "$pid"
