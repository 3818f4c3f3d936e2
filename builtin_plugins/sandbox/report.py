"""What ``sandbox up`` and ``sandbox status`` print: addresses, paths, and a ready deploy.yml snippet."""

from __future__ import annotations

from typing import Any


def deploy_snippet(state: dict[str, Any]) -> str:
    """The parts of a ``config/deploy.yml`` that point Kamal or kamalpy at the sandbox."""
    reg = state["registry"]
    lines = ["servers:"]
    lines += [f"  - {server['address']}" for server in state["servers"]]
    lines += [
        "ssh:",
        "  user: root",
        "  keys_only: true",
        f"  keys: [ {state['key']} ]",
        f"  config: {state['ssh_config']}   # known_hosts: {state['known_hosts']}",
        "registry:",
        f"  server: {reg['address']}",
        # Without --registry-auth the registry takes any login, and Kamal requires both keys.
        f"  username: {reg.get('username') or 'sandbox'}",
        f"  password: {reg.get('password') or 'sandbox'}",
    ]
    return "\n".join(lines) + "\n"


def summary(state: dict[str, Any]) -> str:
    servers = state["servers"]
    reg = state["registry"]
    auth = f"login {reg['username']}:{reg['password']}" if reg.get("username") else "any login accepted"
    first = servers[0]
    lines = [f"Sandbox up: {len(servers)} servers in {state.get('up_seconds', 0):.1f} s", ""]
    lines += [f"  {server['name']:<8} {server['address']:<15} docker -H unix://{server['docker_socket']}"
              for server in servers]
    lines += [
        "",
        f"registry     {reg['address']} (plain HTTP, {auth})",
        f"ssh config   {state['ssh_config']}    e.g. ssh -F {state['ssh_config']} root@{first['address']}",
        f"key          {state['key']}",
        f"known_hosts  {state['known_hosts']}",
    ]
    for name, tag in (state.get("images") or {}).items():
        lines.append(f"image        {tag}   ({name})")
    lines += ["", "config/deploy.yml:", "", deploy_snippet(state)]
    return "\n".join(lines)


def status_text(state: dict[str, Any]) -> str:
    mark = {True: "ok", False: "DOWN"}
    lines = [f"Sandbox {'up' if state['ok'] else 'unhealthy'}: {len(state['servers'])} servers ({state['dir']})"]
    for server in state["servers"]:
        lines.append(f"  {server['name']:<8} {server['address']:<15} {mark[server['ok']]}")
    reg = state.get("registry")
    if reg:
        lines.append(f"  registry {reg['address']:<15} {mark[reg.get('ok', False)]}")
    return "\n".join(lines) + "\n"
