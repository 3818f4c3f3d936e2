"""Built-in plugin: ``proxy boot|reboot|start|stop|restart|details|logs|remove``, through the proxy driver.

``boot`` follows Kamal 2.11: the ``kamal`` network on every host (an existing one is fine), then on the
proxy hosts a registry login (once per run; skipped for a local registry) and the driver's boot (for
kamal-proxy: the version check, the apps-config directory, ``docker container start kamal-proxy || docker
run ...``). Audit lines, the lock and the proxy-reboot hooks are the same for every driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from kamalpy.cli.base import current_run, group
from kamalpy.cli.options import log_filter_options
from kamalpy.commands import docker as docker_commands
from kamalpy.commands import proxy as proxy_commands
from kamalpy.commands import server as server_commands
from kamalpy.commands.base import log_lines, remove_file
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step
from kamalpy.handover import hand_over
from kamalpy.plugin import hookimpl
from kamalpy.prompts import confirm
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.execution import Session

@group("proxy")
def proxy_group() -> None:
    """Manage the proxy (kamal-proxy, or the driver ``proxy.driver`` names) on the servers."""


def _commander() -> Commander:
    return current_run().commander



def create_network(commander: Commander, hosts: list[str] | None = None) -> None:
    """``docker network create kamal`` on ``hosts`` (default: every selected host); "already exists" is fine."""
    def work(session: Session) -> None:
        try:
            session.execute(docker_commands.create_network())
        except CommandFailed as exc:
            if "already exists" not in str(exc):
                raise

    commander.on(commander.hosts if hosts is None else hosts, work)


def boot(commander: Commander) -> None:
    """Kamal's ``proxy boot`` (callers hold the deploy lock): the network everywhere, the proxy on proxy hosts."""
    proxy_hosts = commander.specifics.proxy_hosts
    create_network(commander, [h for h in commander.hosts if h not in proxy_hosts])
    driver = commander.proxy

    def work(session: Session) -> None:
        # "already exists" is the usual answer; another failure shows in the proxy's `docker run --network`.
        network = Step(docker_commands.create_network(), check=False)
        login = commander.registry_login_step(session.host)
        driver.boot(session, [network, *([login] if login else [])])

    commander.on(proxy_hosts, work)


@proxy_group.command("boot")
def proxy_boot() -> None:
    """Boot the proxy on the servers (start it, or run it when there is no container)."""
    commander = _commander()
    with commander.lock.hold():
        boot(commander)


def _on_proxy_hosts(commander: Commander, audit: str | None, work: Callable[[Session], None]) -> None:
    def per_host(session: Session) -> None:
        if audit:
            session.script([commander.audit(audit)])
        work(session)

    commander.on(commander.specifics.proxy_hosts, per_host)


def _start(commander: Commander) -> None:
    with commander.lock.hold():
        _on_proxy_hosts(commander, "Started proxy", commander.proxy.start)


def _stop(commander: Commander) -> None:
    with commander.lock.hold():
        _on_proxy_hosts(commander, "Stopped proxy", commander.proxy.stop)


@proxy_group.command("start")
def proxy_start() -> None:
    """Start the existing proxy container on the servers."""
    _start(_commander())


@proxy_group.command("stop")
def proxy_stop() -> None:
    """Stop the proxy container on the servers."""
    _stop(_commander())


@proxy_group.command("restart")
def proxy_restart() -> None:
    """Stop, then start the proxy container on the servers."""
    commander = _commander()
    with commander.lock.hold():
        _stop(commander)
        _start(commander)


@proxy_group.command("reboot")
@click.option("--rolling", is_flag=True, help="Reboot the proxy on one server at a time.")
@click.option("-y", "--confirmed", is_flag=True, help="Do not ask for confirmation.")
def proxy_reboot(rolling: bool, confirmed: bool) -> None:
    """Replace the proxy container by a new one (a brief outage on each server)."""
    commander = _commander()
    if not confirm("This will cause a brief outage on each host. Are you sure?", confirmed):
        return
    hosts = commander.specifics.proxy_hosts
    groups = [[host] for host in hosts] if rolling else [hosts]
    driver = commander.proxy

    def work(session: Session) -> None:
        audit = commander.audit("Rebooted proxy")
        login = commander.registry_login_step(session.host)
        driver.reboot(session, [audit, *([login] if login else [])])

    with commander.lock.hold():
        for group in groups:
            commander.run_hook("pre-proxy-reboot", hosts=group)
            commander.output.say(f"Rebooting proxy on {', '.join(group)}...")
            commander.on(group, work)
            commander.run_hook("post-proxy-reboot", hosts=group)


@proxy_group.command("upgrade", hidden=True)
@click.option("--rolling", is_flag=True, help="Upgrade the proxy on one server at a time.")
@click.option("-y", "--confirmed", is_flag=True, help="Do not ask for confirmation.")
def proxy_upgrade(rolling: bool, confirmed: bool) -> None:
    """Upgrade to kamal-proxy on servers (stop container, remove container, start new container, reboot app)."""
    if confirm("This will cause a brief outage on each host. Are you sure?", confirmed):
        upgrade(_commander(), rolling)


def upgrade(commander: Commander, rolling: bool) -> None:
    """Kamal's ``proxy upgrade`` (Kamal 1 to 2): on every selected host, Traefik and the old proxy go, then
    ``proxy boot``, ``app boot`` and ``prune all`` there (each takes the lock unless it is held already)."""
    from kamalpy.cli.invoke import invoke

    hosts = list(commander.hosts)
    driver = commander.proxy
    for chosen in ([[host] for host in hosts] if rolling else [hosts]):
        listed = ",".join(chosen)
        commander.output.say(f"Upgrading proxy on {listed}...")
        commander.run_hook("pre-proxy-reboot", hosts=chosen)

        def work(session: Session) -> None:
            login = commander.registry_login_step(session.host)
            session.script([commander.audit("Rebooted proxy"), *([login] if login else []),
                            Step(proxy_commands.cleanup_traefik())])
            driver.stop(session)
            driver.remove_container(session)
            driver.remove_image(session)

        commander.on(chosen, work)
        with commander.only_hosts(chosen):
            invoke("proxy", "boot")
            invoke("app", "boot")
            invoke("prune", "all")
        commander.run_hook("post-proxy-reboot", hosts=chosen)
        commander.output.say(f"Upgraded proxy on {listed}")


@proxy_group.command("details")
def proxy_details() -> None:
    """Show the proxy container of each server."""
    details(_commander())


def details(commander: Commander) -> None:
    driver = commander.proxy
    commander.on(commander.specifics.proxy_hosts,
                 lambda s: commander.output.by_host(s.host, driver.details(s), kind="Proxy"))


@proxy_group.command("logs")
@log_filter_options
@click.option("-f", "--follow", is_flag=True, help="Follow the log on the primary server (or the host set by --hosts).")
@click.option("-T", "--skip-timestamps", is_flag=True, help="Leave out the timestamps.")
def proxy_logs(since: str | None, lines: int | None, grep: str | None, follow: bool, skip_timestamps: bool) -> None:
    """Show kamal-proxy's log lines from the servers."""
    commander = _commander()
    driver = commander.proxy
    if follow:
        # Kamal follows on the primary host (its last 10 lines; --since and --lines are not passed on).
        host = commander.primary_host
        commander.output.info(f"Following logs on {host}...")
        code = hand_over(commander, driver.follow_logs(host, timestamps=not skip_timestamps, grep=grep))
        if code:
            click.get_current_context().exit(code)
        return
    lines = log_lines(lines, since, grep)
    commander.on(commander.specifics.proxy_hosts, lambda s: commander.output.by_host(
        s.host, driver.logs(s, timestamps=not skip_timestamps, since=since, lines=lines, grep=grep), kind="Proxy"))


BOOT_CONFIG_SUBCOMMANDS = ("set", "get", "reset")


@proxy_group.command("boot_config", context_settings={"ignore_unknown_options": False})
@click.option("--publish/--no-publish", default=True, show_default=True, help="Publish the proxy ports on the host.")
@click.option("--publish-host-ip", "publish_host_ips", multiple=True, metavar="IP",
              help="Host IP address to bind HTTP/HTTPS traffic to (repeatable). Defaults to all interfaces.")
@click.option("--http-port", type=int, default=proxy_commands.DEFAULT_HTTP_PORT, show_default=True,
              help="HTTP port to publish on the host.")
@click.option("--https-port", type=int, default=proxy_commands.DEFAULT_HTTPS_PORT, show_default=True,
              help="HTTPS port to publish on the host.")
@click.option("--log-max-size", default=proxy_commands.DEFAULT_LOG_MAX_SIZE, show_default=True,
              help="Max size of proxy logs.")
@click.option("--registry", help="Registry to use for the proxy image.")
@click.option("--repository", help="Repository for the proxy image.")
@click.option("--image-version", help="Version of the proxy to run.")
@click.option("--metrics-port", type=int, help="Port to report prometheus metrics on.")
@click.option("--debug/--no-debug", default=False, help="Whether to run the proxy in debug mode.")
@click.option("--docker-options", multiple=True, metavar="OPTION=VALUE",
              help="Docker options to pass to the proxy container (option=value option2=value2 ...).")
@click.argument("words", nargs=-1, metavar="<set|get|reset>")
def proxy_boot_config(words: tuple[str, ...], docker_options: tuple[str, ...], **settings: object) -> None:
    """Manage kamal-proxy boot configuration (deprecated: set proxy.run in the configuration instead)."""
    click.echo(proxy_commands.BOOT_CONFIG_DEPRECATION, err=True)
    if not words:
        raise click.UsageError('"kamalpy proxy boot_config" was called with no arguments')
    subcommand, more = words[0], list(words[1:])
    if more and not docker_options:  # Kamal's --docker-options takes the words after it: a=b c=d
        raise click.UsageError(f'"kamalpy proxy boot_config" was called with arguments {list(words)}')
    if subcommand not in BOOT_CONFIG_SUBCOMMANDS:
        raise KamalpyError(f"Unknown boot_config subcommand {subcommand}")
    files = (proxy_commands.boot_config_files(docker_options=[*docker_options, *more], **settings)  # type: ignore[arg-type]
             if subcommand == "set" else {})
    commander = _commander()
    if commander.config.proxy_driver != "kamal-proxy":
        raise KamalpyError(f"proxy boot_config configures kamal-proxy; proxy.driver is {commander.config.proxy_driver}")

    def work(session: Session) -> None:
        if subcommand == "get":
            out = session.capture(proxy_commands.boot_config())
            if not commander.dry_run:
                click.echo(f"Host {session.host}: {out}")
        elif subcommand == "reset":
            for command in proxy_commands.reset_boot_config():
                session.execute(command, raise_on_non_zero=False)
        else:
            session.execute(proxy_commands.ensure_proxy_directory())
            for path, content in files.items():
                if content is None:
                    session.execute(remove_file(path), raise_on_non_zero=False)
                else:
                    session.upload(content.encode(), path)

    commander.on(commander.specifics.proxy_hosts, work)


def _removal_allowed(commander: Commander, force: bool) -> bool:
    """Kamal's check: no app directory may be left under ``.kamal/apps`` on any proxy host."""
    config = commander.config
    counts = commander.on(commander.specifics.proxy_hosts,
                          lambda s: s.capture(server_commands.app_directory_count(config)).strip())
    if all(int(count or 0) == 0 for count in counts.values()):
        return True
    if force:
        commander.output.say("Forcing, so removing the proxy, even though other apps are installed")
    else:
        commander.output.say("Not removing the proxy, as other apps are installed, "
                             "ignore this check with kamalpy proxy remove --force")
    return force


@proxy_group.command("remove")
@click.option("--force", is_flag=True, help="Remove the proxy even when apps are still installed.")
def proxy_remove(force: bool) -> None:
    """Remove the kamal-proxy container, image and directory from the servers."""
    remove_proxy(_commander(), force)


def remove_proxy(commander: Commander, force: bool) -> None:
    """Kamal's ``proxy remove``: stop, container, image, files; skipped while other apps use the proxy."""
    with commander.lock.hold():
        if _removal_allowed(commander, force):
            driver = commander.proxy
            _stop(commander)
            _on_proxy_hosts(commander, "Removed proxy container", driver.remove_container)
            _on_proxy_hosts(commander, "Removed proxy image", driver.remove_image)
            _on_proxy_hosts(commander, None, driver.remove_files)


def _hidden(name: str, what: str, work: Callable[[Commander], None]) -> None:
    @proxy_group.command(name, hidden=True, help=f"Remove the proxy {what} from the servers.")
    def command() -> None:
        commander = _commander()
        with commander.lock.hold():
            work(commander)


_hidden("remove_container", "container", lambda c: _on_proxy_hosts(c, "Removed proxy container",
                                                                   c.proxy.remove_container))
_hidden("remove_image", "image", lambda c: _on_proxy_hosts(c, "Removed proxy image", c.proxy.remove_image))
_hidden("remove_proxy_directory", "directory", lambda c: _on_proxy_hosts(c, None, c.proxy.remove_files))


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(proxy_group)


@hookimpl
def kamalpy_flow_steps() -> dict[str, Any]:
    return {"proxy.boot": lambda step: boot(step.commander),
            "proxy.remove": lambda step: remove_proxy(step.commander, bool(step.params.get("force"))),
            "proxy.details": lambda step: details(step.commander)}
