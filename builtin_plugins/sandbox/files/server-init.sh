#!/bin/sh
# One sandbox server's start, run by kamalpy inside its network namespace as
#   ip netns exec NAME unshare --mount --uts --propagation private sh server-init.sh NAME ADDR/24 DIR
# It configures the network, mounts the server's private directories, joins the server's cgroups,
# then starts dockerd and sshd.
set -eu
name=$1 addr=$2 dir=$3

ip link set lo up
ip addr add "$addr" dev eth0
ip link set eth0 up
# No default route on purpose: a server reaches the bridge subnet (the host is .1) and nothing else.
hostname "$name"

# `ip netns exec` mounts a fresh /sys for the netns, which hides the cgroup hierarchies; dockerd
# needs them ("Devices cgroup isn't mounted"). Mount them again as init sees them.
while read -r dev mnt fstype opts _rest; do
  case "$mnt" in /sys/fs/cgroup | /sys/fs/cgroup/*) ;; *) continue ;; esac
  case "$fstype" in
    tmpfs | cgroup | cgroup2) mkdir -p "$mnt" && mount -t "$fstype" -o "$opts" "$dev" "$mnt" ;;
  esac
done </proc/1/mounts

# Everything this server runs from here on (dockerd, containerd, the shims, sshd and every ssh session)
# is accounted in the cgroup /NAME/server, beside its containers in /NAME/<id> (daemon.json's
# cgroup-parent): usage.py reads /NAME. Only cpuacct and memory: a group in the cpu hierarchy would
# change how the scheduler shares the CPU between servers and the deploying process.
for h in cpuacct memory; do
  [ -f "/sys/fs/cgroup/$h/cgroup.procs" ] || continue
  mkdir -p "/sys/fs/cgroup/$h/$name/server"
  echo $$ >"/sys/fs/cgroup/$h/$name/server/cgroup.procs"
done

# Private /run (docker socket, sshd privsep dir), /root (authorized_keys, ~/.docker) and /tmp.
for d in run root tmp; do
  mount --bind "$dir/$d" "/$d"
done

setsid dockerd --config-file "$dir/daemon.json" </dev/null >>"$dir/dockerd.log" 2>&1 &
/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >>"$dir/sshd.log" 2>&1
