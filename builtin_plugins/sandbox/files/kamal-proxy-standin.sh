#!/bin/sh
# kamal-proxy stand-in: appends its arguments (one line per call) to calls.log in the config volume
# Kamal mounts, then succeeds. `kamal-proxy run` stays in the foreground as the container's main
# process until SIGTERM (a shell as PID 1 ignores SIGTERM unless it traps it).
dir=/home/kamal-proxy/.config/kamal-proxy
mkdir -p "$dir"
echo "$*" >>"$dir/calls.log"
if [ "$1" = run ]; then
  echo "kamal-proxy stand-in running: $*"
  sleep 2147483647 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
  wait "$pid"
fi
exit 0
