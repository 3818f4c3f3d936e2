"""The proxy driver interface: what routes web traffic to the app's containers on a server.

One proxy container per server serves every proxied role and accessory on it. A driver is offered by a
plugin through ``kamalpy_proxy_drivers`` and chosen with ``proxy.driver`` (``kamal-proxy`` by default).
Built in: ``kamal-proxy`` (Kamal's container and ``kamal-proxy deploy/remove/stop/resume`` calls) and
``caddy`` (Caddy, switched without a config reload; see docs/proxy-drivers.md).

Every method works on one server through its :class:`~kamalpy.execution.Session`; the commands around
them do the rest the same way for every driver: the deploy lock, audit lines, hooks, parallelism, the
``kamal`` network, stopping the old container after :meth:`ProxyDriver.deploy` returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from kamalpy.errors import KamalpyError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.config.accessory import Accessory
    from kamalpy.config.model import Configuration
    from kamalpy.config.roles import Role
    from kamalpy.execution import Session, Step


class ProxyDriver:
    """Base class of proxy drivers. ``name`` is what ``proxy.driver`` says."""

    name: ClassVar[str] = ""

    def __init__(self, commander: Commander) -> None:
        self.commander = commander

    @property
    def config(self) -> Configuration:
        return self.commander.config

    #: Whether :meth:`preflight` has work to do (it costs a round trip on each proxied host of a boot).
    preflight_needed: ClassVar[bool] = False

    def preflight(self, session: Session) -> None:
        """Read-only checks on one host before a boot starts any app container there (e.g. that no other
        app on this proxy already routes one of our hosts and paths). Raise to stop before anything changes.
        """

    # ----- the proxy container on one server -----

    def boot(self, session: Session, before: Sequence[Step] = ()) -> None:
        """Make sure the proxy runs (start the existing container, or run one).

        ``before``: steps of the command to run first on this server, in the driver's first round trip
        (creating the ``kamal`` network, the registry login): pass them to ``session.script``.
        """
        raise NotImplementedError

    def reboot(self, session: Session, before: Sequence[Step] = ()) -> None:
        """Replace the proxy container by a new one from the configured image, keeping its routes."""
        raise NotImplementedError

    def start(self, session: Session) -> None:
        raise NotImplementedError

    def stop(self, session: Session) -> None:
        """Stop the proxy container; a missing one is not an error."""
        raise NotImplementedError

    def details(self, session: Session) -> str:
        """What ``proxy details`` prints for this server."""
        raise NotImplementedError

    def logs(self, session: Session, *, timestamps: bool = True, since: str | None = None,
             lines: int | None = None, grep: str | None = None) -> str:
        raise NotImplementedError

    def follow_logs(self, host: str, *, timestamps: bool = True, lines: int | None = None,
                    grep: str | None = None) -> str:
        """The local ``ssh -t ...`` command line that follows the proxy's logs on ``host``."""
        raise NotImplementedError

    # ``proxy remove`` stops the proxy, then calls these three in turn: nothing of the proxy is left after.

    def remove_container(self, session: Session) -> None:
        raise NotImplementedError

    def remove_image(self, session: Session) -> None:
        raise NotImplementedError

    def remove_files(self, session: Session) -> None:
        """The proxy's files and volumes on the server; missing ones are not an error."""
        raise NotImplementedError

    # ----- the routes of app roles -----

    def deploy(self, session: Session, role: Role, container: str, container_id: str | None = None) -> None:
        """Send the role's traffic to the new ``container`` (its name), once it is healthy.

        ``container_id``: its id when the caller has just looked it up (empty: the container is gone).

        Returns when the new container serves the role's traffic and the old one may be stopped (the
        caller stops it). Raises :class:`BootError` when the container never becomes healthy; the old
        container keeps serving then.
        """
        raise NotImplementedError

    def deploy_then(self, session: Session, role: Role, container: str, container_id: str | None,
                    then: Sequence[Step]) -> None:
        """:meth:`deploy`, then (only if it succeeded) ``then``: the old container's stop, which a driver whose
        switch is one command sends in the same round trip. The default: :meth:`deploy`, then ``then``."""
        self.deploy(session, role, container, container_id)
        if then:
            session.script(then)

    def tls_key_uploaded(self, session: Session, role: Role) -> None:
        """The role's custom TLS key was uploaded (mode 0600, owned by the SSH user): let the proxy read it."""

    def stop_args(self, role: Role) -> list[str]:
        """``docker stop`` options for the role's old container once :meth:`deploy` has returned.

        Kamal's: ``-t stop_timeout`` when set, else nothing for a proxied role (kamal-proxy drained it).
        """
        from kamalpy.commands.app import stop_args

        return stop_args(role)

    def remove_app(self, session: Session, role: Role) -> None:
        """Forget the role's route (``app remove``)."""
        raise NotImplementedError

    def maintenance(self, session: Session, role: Role, *, drain_timeout: int | None = None,
                    message: str | None = None) -> None:
        """Answer the role's requests with a maintenance page (503) instead of the app."""
        raise NotImplementedError

    def live(self, session: Session, role: Role) -> None:
        """Serve the role from the app again after :meth:`maintenance`."""
        raise NotImplementedError

    # ----- the routes of proxied accessories -----

    def deploy_accessory(self, session: Session, accessory: Accessory, container_id: str) -> None:
        """Send the accessory's traffic (``accessories/<name>/proxy``) to its running container ``container_id``."""
        raise self._no_accessories(accessory)

    def remove_accessory(self, session: Session, accessory: Accessory) -> None:
        """Forget the accessory's route (``accessory stop``)."""
        raise self._no_accessories(accessory)

    def _no_accessories(self, accessory: Accessory) -> KamalpyError:
        return KamalpyError(f"The {self.name} proxy driver cannot route accessories "
                            f"(accessories/{accessory.name}/proxy)")


class BootError(KamalpyError):
    """A new app container did not come up healthy (it is stopped; the old one keeps serving)."""


def proxy_driver(commander: Commander) -> ProxyDriver:
    """The driver ``proxy.driver`` names, from the plugins that offer one."""
    name = commander.config.proxy_driver
    drivers = commander.run.hooks.proxy_drivers()
    if name not in drivers:
        available = ", ".join(sorted(drivers)) or "none"
        raise KamalpyError(f"proxy/driver: unknown proxy driver {name!r} (available: {available})")
    return drivers[name](commander)
