#!/bin/sh
# The sandbox's example web app: busybox httpd answering /up ("ok") and /version ($APP_VERSION).
# This shell stays PID 1 and handles SIGTERM as a graceful app server does: busybox httpd as PID 1
# would ignore it. On TERM it stops httpd's listener (the parent process), waits for the requests in
# flight (each served by a forked child that ends with its response) for at most a second, then exits 0:
# an idle app exits at once, as puma or gunicorn do.
# APP_HEALTHY=0 leaves /up out, so a health check of this version fails (the "bad release" case).
# APP_SERVING=0 leaves /version out (404): healthy, but its real requests fail (the canary's case).
mkdir -p /www
if [ "${APP_HEALTHY:-1}" != 0 ]; then echo ok >/www/up; fi
if [ "${APP_SERVING:-1}" != 0 ]; then echo "${APP_VERSION:-unknown}" >/www/version; fi
httpd -f -p "${PORT:-80}" -h /www &
pid=$!
drain() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  i=0
  # A child still serving is an httpd process that is not a zombie (those wait for this shell to reap them).
  while [ "$i" -lt 10 ] && grep -q '^[0-9]* (httpd) [^Z]' /proc/[0-9]*/stat 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
  done
  exit 0
}
trap drain TERM INT
wait "$pid"
