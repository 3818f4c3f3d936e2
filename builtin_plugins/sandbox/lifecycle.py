"""``up``, ``down`` and ``status`` of a sandbox, as functions the CLI and the pytest fixtures share."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from kamalpy.builtin_plugins.sandbox import hostdocker, images, registry, servers, system
from kamalpy.builtin_plugins.sandbox.state import (
    MAX_SERVERS,
    STATE_VERSION,
    SandboxError,
    Spec,
    load_state,
    save_state,
)

READY_TIMEOUT = 90  # seconds for every dockerd and sshd to answer; generous for a loaded 2-core machine


def check_host(tools: bool = True) -> None:
    if os.geteuid() != 0:
        raise SandboxError("The sandbox needs root (network namespaces, bridges, dockerd)")
    missing = system.missing_tools() if tools else []
    if missing:
        raise SandboxError(f"The sandbox needs {', '.join(missing)}: run scripts/sandbox-deps")


def leftovers(spec: Spec) -> bool:
    """Anything of this spec on the host (used when no state file says the sandbox is up)."""
    return bool(servers.list_netns(spec) or servers.list_links(spec) or servers.iptables_rules(spec)
                or spec.dir.exists())


def up(spec: Spec, count: int, registry_auth: tuple[str, str] | None = None, with_images: bool = True,
       log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Create ``count`` servers, the registry and the images; returns the state (also saved as JSON).

    Refuses when this spec's sandbox is already up. Leftovers of a broken run are removed first.
    On failure everything created so far is removed again.
    """
    check_host()
    if not 1 <= count <= MAX_SERVERS:
        raise SandboxError(f"The sandbox has 1 to {MAX_SERVERS} servers, not {count}")
    current = load_state(spec)
    if current is not None and current.get("status") == "up":  # "starting": an `up` that was killed
        raise SandboxError(f"The sandbox is already up with {len(current.get('servers', []))} servers "
                           f"({spec.state_file}); run 'kamalpy sandbox down' first")
    if leftovers(spec):
        log("Removing leftovers of an earlier sandbox")
        down(spec)
    started = time.monotonic()
    try:
        state = _up(spec, count, registry_auth, with_images, log)
    except BaseException:
        down(spec)
        raise
    state["up_seconds"] = round(time.monotonic() - started, 2)
    save_state(spec, state)
    return state


def _up(spec: Spec, count: int, auth: tuple[str, str] | None, with_images: bool,
        log: Callable[[str], None]) -> dict[str, Any]:
    indices = list(range(1, count + 1))
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def mark(step: str) -> None:
        timings[step] = round(time.monotonic() - t0, 2)
        log(f"  {timings[step]:5.2f} s  {step}")

    mtu = system.uplink_mtu()
    spec.dir.mkdir(parents=True, exist_ok=True)
    spec.dir.chmod(0o755)
    spec.docker_config.mkdir(exist_ok=True)
    state: dict[str, Any] = {"version": STATE_VERSION, "status": "starting", "prefix": spec.prefix,
                             "dir": str(spec.dir), "subnet": spec.subnet}
    save_state(spec, state)  # written first: `down` after a crash still finds the directory

    host_docker_pid = hostdocker.start(spec, mtu)
    host_keys = dict(zip(indices, system.parallel(lambda i: servers.prepare_server(spec, i, mtu), indices),
                         strict=True))
    public_key = servers.write_client_files(spec, indices, host_keys)
    for i in indices:
        servers.authorize(spec, i, public_key)
    servers.create_network(spec, indices, mtu)
    registry_pid = registry.start(spec, auth)
    mark("keys, configs, network")

    # Images are made on the host's dockerd while the servers boot (the registry is up by then).
    image_names = images.names(spec, images.caddy_version()) if with_images else {}
    image_error: list[BaseException] = []
    image_thread = threading.Thread(target=_images_job, args=(spec, image_names, auth, image_error, mark),
                                    daemon=True)

    system.wait_until(lambda: registry.answers(spec), 30, f"the registry on {spec.registry}")
    mark("registry answering")
    if with_images:
        image_thread.start()
    try:
        _start_servers(spec, indices, mtu, mark)
    finally:
        if image_thread.is_alive():  # also on failure: `down` must not race the image pushes
            image_thread.join(timeout=300)
    if image_error:
        raise image_error[0]

    state.update({
        "status": "up",
        "timings": timings,
        "bridge": spec.bridge,
        "gateway": spec.gateway,
        "mtu": mtu,
        "key": str(spec.key),
        "public_key": public_key,
        "known_hosts": str(spec.known_hosts),
        "ssh_config": str(spec.ssh_config),
        "docker_config": str(spec.docker_config),
        "registry": {
            "address": spec.registry,
            "pid": registry_pid,
            "log": str(registry.registry_dir(spec) / "registry.log"),
            "username": auth[0] if auth else None,
            "password": auth[1] if auth else None,
        },
        "images": image_names,
        "host_docker": {"socket": str(hostdocker.SOCKET), "started_pid": host_docker_pid},
        "servers": [{
            "index": i,
            "name": spec.name(i),
            "address": spec.address(i),
            "netns": spec.name(i),
            "veth": spec.veth(i),
            "dir": str(spec.server_dir(i)),
            "docker_socket": str(spec.docker_socket(i)),
            "sshd_log": str(spec.server_dir(i) / "sshd.log"),
            "dockerd_log": str(spec.server_dir(i) / "dockerd.log"),
        } for i in indices],
    })
    return state


def _start_servers(spec: Spec, indices: list[int], mtu: int, mark: Callable[[str], None]) -> None:
    system.parallel(lambda i: servers.start_server(spec, i, mtu), indices)
    system.wait_until(lambda: all(system.parallel(lambda i: servers.server_ready(spec, i), indices)),
                      READY_TIMEOUT, "every server's dockerd and sshd")
    mark("dockerds and sshds answering")
    # One real login proves the key, known_hosts and ssh_config (every server is configured alike;
    # the others' sshds answered above). Logging in to all would cost seconds on a loaded 2-core CI.
    first = indices[0]
    hostname = servers.ssh_check(spec, first)
    if hostname != spec.name(first):
        raise SandboxError(f"Server {spec.address(first)} says it is '{hostname}', not {spec.name(first)}")
    mark("ssh login checked")


EXAMPLE_SERVICE, EXAMPLE_IMAGE = "hello", "hello/app"


def _images_job(spec: Spec, names: dict[str, str], auth: tuple[str, str] | None,
                errors: list[BaseException], mark: Callable[[str], None]) -> None:
    try:
        hostdocker.wait()
        mark("host dockerd answering")
        sock = hostdocker.SOCKET
        if not hostdocker.trusts(spec):
            # The host dockerd was started by someone else without trusting the registry: build on
            # server 1 instead (it trusts it) and leave no image behind there.
            sock = spec.docker_socket(1)
            system.wait_until(lambda: system.docker_ping(sock), READY_TIMEOUT, "server 1's dockerd")
        env = hostdocker.client_env(spec, sock)
        images.build_and_push(env, names, auth)
        # The example project (examples/sandbox: service hello, image hello/app) deploys these with -P.
        images.service_images(env, spec.registry, EXAMPLE_IMAGE, EXAMPLE_SERVICE)
        mark("images made and pushed")
        if sock != hostdocker.SOCKET:
            images.remove_local(env, spec.registry)
    except BaseException as error:  # handed to the main thread
        errors.append(error)


def down(spec: Spec) -> dict[str, Any]:
    """Remove everything of this spec: processes, namespaces, links, iptables rules, cgroups, the directory.

    Servers are torn down in parallel. Quiet and successful when nothing is up.
    Returns what was removed (for ``down``'s message and the tests).
    """
    check_host(tools=False)
    state = load_state(spec) or {}
    indices = sorted({s["index"] for s in state.get("servers", [])} | set(servers.list_netns(spec)))
    removed: dict[str, Any] = {"servers": len(indices), "stuck": []}
    jobs: list[Callable[[], Any]] = [partial(_destroy, spec, i, removed) for i in indices]
    if hostdocker.running():  # also after an `up` that failed while making the images
        jobs.append(lambda: images.remove_local(hostdocker.client_env(spec), spec.registry))
    system.parallel(lambda job: job(), jobs)
    # The registry and anything else of ours still running (found by the state dir in its command line).
    removed["stuck"] += sorted(system.kill_until_gone(lambda: system.pids_mentioning(str(spec.dir))))
    servers.remove_network(spec)
    for mount in sorted(system.mounts_under(spec.dir), key=len, reverse=True):  # none expected: be safe
        system.run(["umount", "-l", mount], check=False)
    shutil.rmtree(spec.dir, ignore_errors=True)
    if removed["stuck"]:
        raise SandboxError(f"Could not kill processes {removed['stuck']}")
    return removed


def _destroy(spec: Spec, index: int, removed: dict[str, Any]) -> None:
    removed["stuck"] += sorted(servers.destroy_server(spec, index))


def status(spec: Spec) -> dict[str, Any] | None:
    """The saved state plus live checks (``ok`` per server and for the registry), or None when down."""
    state = load_state(spec)
    if state is None:
        return None
    live = set(servers.list_netns(spec))

    def check(server: dict[str, Any]) -> dict[str, Any]:
        ok = server["index"] in live and servers.server_ready(spec, server["index"])
        return {**server, "ok": ok}

    state["servers"] = system.parallel(check, state.get("servers", []))
    if "registry" in state:
        state["registry"]["ok"] = registry.answers(spec)
    state["ok"] = (state.get("status") == "up" and all(s["ok"] for s in state["servers"])
                   and state.get("registry", {}).get("ok", False))
    return state
