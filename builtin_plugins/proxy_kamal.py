"""Built-in plugin: the ``kamal-proxy`` proxy driver (the default), exactly Kamal 2.11's container and calls.

The container is ``kamal-proxy`` on the ``kamal`` network; routes live in its config volume, so they
survive a reboot. A role's route is the service ``<service>-<role>[-<destination>]``, deployed with
``kamal-proxy deploy`` (kamal-proxy health-checks the target, switches, then drains the old one).
Independent commands go to a server together (:meth:`Session.script`): the same commands as Kamal's,
in Kamal's order, in fewer round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kamalpy.commands import accessory as accessory_commands
from kamalpy.commands import app as app_commands
from kamalpy.commands import app_proxy
from kamalpy.commands import proxy as proxy_commands
from kamalpy.commands.layout import DRY_RUN_CONTAINER_ID
from kamalpy.execution import Step
from kamalpy.plugin import hookimpl
from kamalpy.proxy_driver import BootError, ProxyDriver

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.accessory import Accessory
    from kamalpy.config.roles import Role
    from kamalpy.execution import Session



class KamalProxyDriver(ProxyDriver):
    name = "kamal-proxy"

    def boot(self, session: Session, before: Sequence[Step] = ()) -> None:
        version = session.script([*before, Step(proxy_commands.version(), check=False)])[-1]
        proxy_commands.check_minimum_version(version.stdout if version.ok else "")
        session.script([proxy_commands.ensure_apps_config_directory(),
                        proxy_commands.start_or_run(self.config, session.host)])

    def reboot(self, session: Session, before: Sequence[Step] = ()) -> None:
        session.script([*before, Step(proxy_commands.stop(), check=False), proxy_commands.remove_container(),
                        proxy_commands.ensure_apps_config_directory(), proxy_commands.run(self.config, session.host)])

    def start(self, session: Session) -> None:
        session.execute(proxy_commands.start())

    def stop(self, session: Session) -> None:
        session.execute(proxy_commands.stop(), raise_on_non_zero=False)

    def details(self, session: Session) -> str:
        return session.capture(proxy_commands.info())

    def logs(self, session: Session, *, timestamps: bool = True, since: str | None = None,
             lines: int | None = None, grep: str | None = None) -> str:
        return session.capture(proxy_commands.logs(timestamps=timestamps, since=since, lines=lines, grep=grep))

    def follow_logs(self, host: str, *, timestamps: bool = True, lines: int | None = None,
                    grep: str | None = None) -> str:
        return proxy_commands.follow_logs(self.config, host, timestamps=timestamps, grep=grep)

    def remove_container(self, session: Session) -> None:
        session.execute(proxy_commands.remove_container())

    def remove_image(self, session: Session) -> None:
        session.execute(proxy_commands.remove_image())

    def remove_files(self, session: Session) -> None:
        session.execute(proxy_commands.remove_proxy_directory(), raise_on_non_zero=False)

    def deploy(self, session: Session, role: Role, container: str, container_id: str | None = None) -> None:
        self.deploy_then(session, role, container, container_id, ())

    def deploy_then(self, session: Session, role: Role, container: str, container_id: str | None,
                    then: Sequence[Step]) -> None:
        # `kamal-proxy deploy` returns once the target is healthy and serves: what follows goes with it.
        if container_id is None:
            container_id = session.capture(app_commands.container_id_for(container))
        container_id = container_id.strip()
        if session.executor.dry_run:
            container_id = container_id or DRY_RUN_CONTAINER_ID
        if not container_id:
            raise BootError(f"Failed to get endpoint for {role.name} on {session.host}, did the container boot?")
        session.script([app_proxy.deploy(role, container_id), *then])

    def tls_key_uploaded(self, session: Session, role: Role) -> None:
        session.execute(app_proxy.give_tls_key_to_proxy(role))

    def remove_app(self, session: Session, role: Role) -> None:
        session.execute(app_proxy.remove(role))

    def maintenance(self, session: Session, role: Role, *, drain_timeout: int | None = None,
                    message: str | None = None) -> None:
        session.execute(app_proxy.maintenance(role, drain_timeout=drain_timeout, message=message))

    def live(self, session: Session, role: Role) -> None:
        session.execute(app_proxy.live(role))

    def deploy_accessory(self, session: Session, accessory: Accessory, container_id: str) -> None:
        session.execute(accessory_commands.proxy_deploy(accessory, container_id))

    def remove_accessory(self, session: Session, accessory: Accessory) -> None:
        session.execute(accessory_commands.proxy_remove(accessory))


@hookimpl
def kamalpy_proxy_drivers() -> dict[str, Any]:
    return {KamalProxyDriver.name: KamalProxyDriver}
