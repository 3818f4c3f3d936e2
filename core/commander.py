"""What a command that touches servers needs, built once per run on demand.

The selected hosts and roles (``-h/-r/-p``), the output, and the executor with its connection pool,
chosen transport and ``ssh:`` settings. Command code asks the commander; the commander asks the
configuration and the plugins. Nothing connects until a command runs something on a host.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from kamalpy.errors import KamalpyError
from kamalpy.execution import Executor, Session, Step
from kamalpy.output import Output
from kamalpy.transport import SshSettings

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.cli.base import Run
    from kamalpy.config.model import Configuration
    from kamalpy.config.specifics import Specifics
    from kamalpy.locking import DeployLock
    from kamalpy.proxy_driver import ProxyDriver
    from kamalpy.pulls import PullSlots
    from kamalpy.registry_strategy import RegistryStrategy

T = TypeVar("T")

DEFAULT_TRANSPORT = "paramiko"
TRANSPORT_ENV = "KAMALPY_TRANSPORT"


def ssh_settings(config: Configuration) -> SshSettings:
    """The transport's view of the ``ssh:`` and ``sshkit:`` sections."""
    ssh, kit = config.ssh, config.sshkit
    files = ssh.config
    config_files: bool | tuple[str, ...] = (True if files is None else files if isinstance(files, bool)
                                            else (files,) if isinstance(files, str) else tuple(files))
    return SshSettings(
        user=ssh.user,
        port=int(ssh.port),
        proxy=ssh.proxy_jump,
        proxy_command=ssh.proxy_command,
        keys=tuple(ssh.keys or ()),
        keys_only=bool(ssh.keys_only),
        key_data=tuple(ssh.key_data_values(config.secret_lookup) or ()),
        config=config_files,
        log_level=ssh.log_level,
        connect_timeout=ssh.connect_timeout,
        max_concurrent_starts=kit.max_concurrent_starts,
        pool_idle_timeout=kit.pool_idle_timeout,
        dns_retries=kit.dns_retries,
    )


class Commander:
    def __init__(self, run: Run) -> None:
        self.run = run
        options = run.options
        self.output = self._output()
        self.dry_run = options.dry_run
        self._specifics: Specifics | None = None
        self._executor: Executor | None = None
        self._lock: DeployLock | None = None
        self.connected = False
        self.started = time.monotonic()
        self._logged_in: set[str] = set()
        self._login_lock = threading.Lock()
        self._ahead: dict[tuple[str, ...], object] = {}  # see keep_ahead

    def _output(self) -> Output:
        """The Kamal-style line log, or on a terminal the ``live`` view a plugin offers (``kamalpy_output_views``)."""
        from kamalpy.live_view import LIVE, wanted

        options = self.run.options
        kwargs = {"verbose": options.verbose, "quiet": options.quiet, "dry_run": options.dry_run}
        view = self.run.hooks.output_views().get(LIVE) if wanted(**kwargs) else None
        return view(**kwargs) if view is not None else Output(**kwargs)

    @property
    def config(self) -> Configuration:
        return self.run.config

    @property
    def specifics(self) -> Specifics:
        if self._specifics is None:
            options = self.run.options
            self._specifics = self.config.specifics(options.hosts, options.roles, options.primary)
        return self._specifics

    @contextlib.contextmanager
    def only_hosts(self, hosts: Iterable[str]) -> Iterator[None]:
        """Kamal's ``with_specific_hosts``: the host selection is ``hosts`` for the block."""
        saved = self.specifics
        self._specifics = self.config.specifics(",".join(hosts))
        try:
            yield
        finally:
            self._specifics = saved

    @property
    def hosts(self) -> list[str]:
        return self.specifics.hosts

    @property
    def primary_host(self) -> str:
        host = self.specifics.primary_host
        if not host:
            raise KamalpyError("No primary host")
        return host

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            transport = None if self.dry_run else self._transport()
            settings = ssh_settings(self.config)
            self._executor = Executor(transport, settings, self.output, dry_run=self.dry_run, hooks=self.run.hooks)
        return self._executor

    def _transport(self) -> object:
        name = os.environ.get(TRANSPORT_ENV, DEFAULT_TRANSPORT)
        transports = self.run.hooks.transports()
        if name not in transports:
            raise KamalpyError(f"Unknown transport: {name} (available: {', '.join(sorted(transports)) or 'none'})")
        return transports[name]()

    @functools.cached_property
    def performer(self) -> str:
        """Who runs this (audit lines, hooks): ``git config user.email``, else the login name."""
        from kamalpy import git

        return git.config_value("user.email") or getpass.getuser()

    @functools.cached_property
    def locked_by(self) -> str:
        from kamalpy import git
        from kamalpy.commands.lock import UNKNOWN_LOCKER

        return git.config_value("user.name") or UNKNOWN_LOCKER

    @property
    def lock(self) -> DeployLock:
        if self._lock is None:
            from kamalpy.locking import DeployLock

            self._lock = DeployLock(self)
        return self._lock

    @functools.cached_property
    def proxy(self) -> ProxyDriver:
        """The proxy driver ``proxy.driver`` names (``kamal-proxy`` by default)."""
        from kamalpy.proxy_driver import proxy_driver

        return proxy_driver(self)

    @functools.cached_property
    def pulls(self) -> PullSlots:
        """The run's pull slots: at most ``x-kamalpy.pull_limit`` hosts pull at once (kamalpy.pulls)."""
        from kamalpy.pulls import PullSlots

        return PullSlots(self.config.kamalpy.pull_limit)

    @functools.cached_property
    def registry(self) -> RegistryStrategy:
        """The registry strategy ``registry.strategy`` names (by default ``docker``, or ``local`` for localhost)."""
        from kamalpy.registry_strategy import select

        return select(self)

    def on(self, hosts: Iterable[str], work: Callable[[Session], T]) -> dict[str, T]:
        """``work`` on each host in parallel; no host (a selection that leaves none) is nothing to do."""
        hosts = list(hosts)
        if not hosts:
            return {}
        self.pre_connect()
        return self.executor.on(hosts, work)

    def pre_connect(self) -> None:
        """The pre-connect hook, once per run, before the first connection (as Kamal's ``on`` does)."""
        if not self.connected:
            self.connected = True
            self.run_hook("pre-connect", secrets=True)

    def hook_env(self, *, hosts: Iterable[str] | None = None, secrets: bool = False,
                 extra: Mapping[str, object] | None = None) -> dict[str, str]:
        from kamalpy.commands.hook import hook_env

        options = self.run.options
        path = self.run.command_path
        return hook_env(
            self.config, performer=self.performer, hosts=list(self.hosts if hosts is None else hosts),
            lock=self.lock.holding, command=path[0] if path else "",
            # Kamal 2.11 sets no KAMAL_SUBCOMMAND (its docs say it does); we pass it, as documented.
            subcommand=path[1] if len(path) > 1 else None,
            roles=[r.strip() for r in options.roles.split(",")] if options.roles else None,
            secrets=self.config.secrets.to_dict() if secrets else None,
            details=extra,
        )

    def run_hook(self, name: str, *, secrets: bool = False, hosts: Iterable[str] | None = None,
                 extra: Mapping[str, object] | None = None) -> None:
        """Fire a Kamal hook moment: plugins (the built-in hook runner runs ``.kamal/hooks/NAME``)."""
        from kamalpy.plugin import HookContext

        context = HookContext(name=name, commander=self,
                              env_factory=lambda: self.hook_env(hosts=hosts, secrets=secrets, extra=extra))
        self.run.hooks.kamal_hook(context)

    def audit(self, line: str, *, role: str | None = None, check: bool = True) -> Step:
        """Kamal's audit line (``[time] [performer] [dest]? [role]? line``) as a quiet script step."""
        from kamalpy.commands import auditor

        details = {"role": role} if role is not None else None
        return Step(auditor.record(self.config, line, performer=self.performer, details=details), quiet=True,
                    check=check)

    def registry_login(self, session: Session) -> None:
        """``docker login`` on the session's host, once per run (the password goes on stdin)."""
        step = self.registry_login_step(session.host)
        if step is not None:
            session.execute(step.command, stdin=step.stdin)

    def registry_login_step(self, host: str) -> Step | None:
        """The ``docker login`` step for ``host``, or None: a local registry needs none, and once per run is enough.

        Kamal logs in again before each step that pulls; Docker keeps the credentials on the server, so
        once per host and run has the same effect with fewer round trips.
        """
        with self._login_lock:
            if host in self._logged_in:
                return None
            self._logged_in.add(host)
        return self.registry.login_step()

    def first_steps(self, host: str) -> list[Step]:
        """What the first round trip of a pull to ``host`` sends first: a pending lock check, the login."""
        login = self.registry_login_step(host)
        return [*self.lock.first_steps(host), *([login] if login else [])]

    def keep_ahead(self, key: tuple[str, ...], answer: object) -> None:
        """Keep a read-only answer fetched in an earlier round trip for the one later step that needs it
        (e.g. the boot's clash check, fetched with the stale-container check): one round trip fewer."""
        with self._login_lock:
            self._ahead[key] = answer

    def take_ahead(self, key: tuple[str, ...]) -> object | None:
        """The answer :meth:`keep_ahead` kept under ``key`` (used once), or None: then ask the server."""
        with self._login_lock:
            return self._ahead.pop(key, None)

    def on_primary(self, work: Callable[[Session], T]) -> T:
        # Through self.on so that the pre-connect hook also runs before a primary-only first connection.
        return self.on([self.primary_host], work)[self.primary_host]

    def close(self) -> None:
        self.output.close()
        if self._executor is not None:
            self._executor.close()
