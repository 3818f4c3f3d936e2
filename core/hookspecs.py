"""Every hook kamalpy calls. Plugins implement them with ``@kamalpy.plugin.hookimpl``.

Each docstring says when the hook fires, its arguments, what it returns and whether it is
``firstresult`` (the first non-None answer wins and stops the call). ``docs/hooks.md`` documents
every hook here; ``tests/test_hookspecs_documented.py`` fails when one is missing.

Override rule (one rule for every hook): pluggy calls the most recently registered plugin first.
kamalpy registers the built-in plugins first and the entry-point plugins after them, so a
third-party plugin overrides a built-in one, and among third-party plugins the one whose
(distribution name, entry-point name) sorts last wins. For registry hooks that return a
``{name: strategy}`` mapping, the first answer that names a strategy wins, which is the same rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    import click

    from kamalpy.cli.options import GlobalOptions
    from kamalpy.commander import Commander
    from kamalpy.config.model import Configuration
    from kamalpy.execution import Session, Step, WriteFile
    from kamalpy.plugin import BootContext, CommandContext, ConfigKey, HookContext
    from kamalpy.transport import CommandResult

PROJECT_NAME = "kamalpy"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec(firstresult=True)
def kamalpy_load_config(options: GlobalOptions) -> dict[str, Any] | None:
    """Where the raw configuration comes from.

    Fires: once per run, when a command first needs the configuration (before the keys are collected
    and before validation). Aliases are looked up in ``config/deploy.yml`` itself.
    Arguments: ``options``, the global options (``config_file``, ``destination``, ``version``...).
    Returns: the raw configuration mapping (what ``config/deploy.yml`` with its destination file merged
    in would give), or None to let the next plugin answer. The built-in ``config_loading`` plugin reads
    ``config/deploy.yml`` the way Kamal does (ERB, YAML, destination file).
    firstresult: the first mapping wins; none at all is an error.
    """


@hookspec
def kamalpy_transform_config(raw: dict[str, Any], options: GlobalOptions) -> None:
    """Change the raw configuration before it is validated.

    Fires: once per run, right after ``kamalpy_load_config`` answered, before the schema check.
    Arguments: ``raw``, the raw mapping (change it in place); ``options``, the global options.
    Returns: nothing (the return value is ignored).
    Not firstresult: every plugin transforms, the most recently registered first.
    """


@hookspec
def kamalpy_config_keys() -> list[ConfigKey]:
    """Declare top-level configuration keys of a plugin.

    Fires: once per run, when the configuration is first loaded, before validation.
    Arguments: none.
    Returns: a list of :class:`kamalpy.plugin.ConfigKey` (name, JSON schema, default). The key is
    then accepted at the root of ``config/deploy.yml``, validated against its schema and filled with
    its default when absent. Two plugins declaring the same key, or a key Kamal already has, is an
    error naming both.
    Not firstresult: every plugin's keys are collected.
    """


@hookspec
def kamalpy_validate_config(config: Configuration) -> list[str] | str | None:
    """Validate the whole configuration after Kamal's own checks passed.

    Fires: once per run, right after the configuration was parsed and passed the schema and
    Kamal's semantic checks.
    Arguments: ``config``, the :class:`kamalpy.config.model.Configuration`.
    Returns: None when fine, else a message or a list of messages; the first message ends the run
    as a configuration error (``ERROR: <message>``, exit 1). Raising
    :class:`kamalpy.errors.ConfigurationError` works too.
    Not firstresult: every plugin validates.
    """


@hookspec
def kamalpy_secret_adapters() -> dict[str, Any]:
    """Offer secret adapters by name (``kamalpy secrets fetch --adapter NAME``).

    Fires: when an adapter is looked up by name, or listed.
    Arguments: none.
    Returns: ``{name: adapter_class}``; an adapter class is instantiated with no arguments and has
    ``fetch(secrets: list[str], account: str | None, from_: str | None) -> dict[str, str]`` and a
    ``requires_account`` attribute (see :class:`kamalpy.plugin.SecretAdapter`). Names are matched
    lowercased; aliases are just more names pointing to the same class.
    Not firstresult; when two plugins offer the same name, the override rule above decides.
    """


@hookspec
def kamalpy_transports() -> dict[str, Any]:
    """Offer transports (how kamalpy reaches servers) by name.

    Fires: once per run, when the first command that talks to servers needs a connection.
    Arguments: none.
    Returns: ``{name: transport_class}``; the class is instantiated with no arguments and implements
    :class:`kamalpy.transport.Transport` (``connect(host, settings) -> Connection``). The built-in
    ``paramiko`` transport is the default; ``KAMALPY_TRANSPORT=NAME`` selects another.
    Not firstresult; when two plugins offer the same name, the override rule above decides.
    """


@hookspec
def kamalpy_output_views() -> dict[str, Any]:
    """Offer views of a run's progress on a terminal by name.

    Fires: once per command that talks to servers, only when stdout and stderr are a terminal and neither
    ``-v``, ``-q`` nor ``--dry-run`` is given (otherwise the Kamal-style line log is used, unchanged).
    Arguments: none.
    Returns: ``{name: view_class}``; the class subclasses :class:`kamalpy.output.Output` and is created with
    its keyword arguments (``verbose``, ``quiet``, ``dry_run``). The view named ``live`` is used; the built-in
    one is :class:`kamalpy.live_view.LiveView`.
    Not firstresult; when two plugins offer the same name, the override rule above decides.
    """


@hookspec
def kamalpy_proxy_drivers() -> dict[str, Any]:
    """Offer proxy drivers (what routes traffic to the app containers on a server) by name.

    Fires: when a command first needs the proxy (``proxy ...``, ``deploy``, ``app boot``, ``remove``...).
    Arguments: none.
    Returns: ``{name: driver_class}``; the class is a :class:`kamalpy.proxy_driver.ProxyDriver` subclass,
    instantiated with the :class:`kamalpy.commander.Commander`. ``proxy.driver`` in the configuration
    picks one (default ``kamal-proxy``); built in are ``kamal-proxy`` and ``caddy``.
    Not firstresult; when two plugins offer the same name, the override rule above decides.
    """


@hookspec
def kamalpy_builders() -> dict[str, Any]:
    """Offer builder strategies (what builds the app image and pushes it) by name.

    Fires: when a ``build`` command (or ``deploy`` without ``-P``) needs the builder.
    Arguments: none.
    Returns: ``{name: strategy_class}``; the class is a :class:`kamalpy.builders.BuilderStrategy`
    subclass, instantiated with the :class:`kamalpy.commander.Commander` and the deploying machine's
    Docker architecture (or None). Kamal's rules pick one of the built-ins ``local``, ``remote``,
    ``hybrid``, ``pack`` and ``cloud``; ``builder.strategy: NAME`` in the configuration picks any by name.
    Not firstresult; when two plugins offer the same name, the override rule above decides.
    """


@hookspec
def kamalpy_registry_strategies() -> dict[str, Any]:
    """Offer registry strategies (how Docker clients log in to the image registry) by name.

    Fires: when a command first needs the registry (``registry ...``, ``build push``, ``build pull``,
    ``proxy boot``, ``deploy``, ``remove``...).
    Arguments: none.
    Returns: ``{name: strategy_class}``; the class is a :class:`kamalpy.plugin.RegistryStrategy` subclass,
    instantiated with the :class:`kamalpy.commander.Commander`. ``registry.strategy: NAME`` picks one;
    without it a ``localhost:PORT`` server picks the built-in ``local`` (a registry container here,
    reached by the servers through SSH reverse forwards) and anything else ``docker`` (``docker login``
    with the password on standard input).
    Not firstresult; when two plugins offer the same name, the override rule above decides.
    """


@hookspec(firstresult=True)
def kamalpy_boot_app(boot: BootContext) -> bool | None:
    """Replace the running containers of the app by the new version on ``boot.hosts``.

    Fires: in ``app boot``, ``deploy``, ``redeploy``, ``setup`` and ``rollback``, under the deploy lock,
    after the error pages, certificates and assets were put in place, before the final ``docker tag``.
    Arguments: ``boot``, a :class:`kamalpy.plugin.BootContext` (``commander``, ``version``, ``hosts``,
    ``boot_role(session, role)`` that replaces one role's container on one host, ``running_version(session,
    role)`` that says which version runs there, ``run_hook(name, hosts)`` for the pre/post-app-boot moments).
    Returns: True once booted, or None to let the next plugin do it. The built-in ``boot_rolling``
    does Kamal's rolling boot: boot groups (``boot.limit``/``boot.wait``), the primary-role barrier
    and ``boot.parallel_roles``.
    firstresult: the first plugin that boots wins; none at all refuses the command.
    """


@hookspec(firstresult=True)
def kamalpy_prune_steps(commander: Commander) -> list[Step] | None:
    """What a deploy removes once the new version runs.

    Fires: in ``deploy`` and ``setup`` (not ``redeploy``), under the lock, when the final ``docker tag``
    of each app host is sent: the steps run on every host in that same round trip, each allowed to fail.
    Arguments: ``commander``, the run's :class:`kamalpy.commander.Commander`.
    Returns: a list of :class:`kamalpy.plugin.Step` (or command lists), or None to let the next plugin
    answer. The built-in ``prune_commands`` returns Kamal's ``prune all`` (old stopped containers, then
    unused images). An empty list prunes nothing.
    firstresult: the first list wins; none at all means the deploy does not prune.
    """


@hookspec(firstresult=True)
def kamalpy_run_steps(session: Session, steps: list[Step | WriteFile]) -> list[CommandResult] | None:
    """Run a server's steps another way than through its shell (an opt-in faster execution path).

    Fires: each time a command or a script of steps is about to be sent to a server (``Session.execute`` with a
    command array and no time limit of its own, ``Session.script``), after it was shown as Kamal shows it; never
    in a dry run, never for the deploying machine's own commands.
    Arguments: ``session``, the :class:`kamalpy.plugin.Session` of the host (``host``, ``executor``,
    ``open_stream(command)`` for a long-lived exec channel, ``run_in_shell(steps)`` to hand steps back to the
    shell in one round trip); ``steps``, the :class:`kamalpy.plugin.Step` / :class:`kamalpy.plugin.WriteFile`
    items in order (a ``Step.command`` is a Kamal command array, or a string).
    Returns: None to let the shell run them all, as it does by default; or the
    :class:`kamalpy.plugin.CommandResult` of each step run, in order, ending at the first failing step whose
    ``check`` is true (the steps after it must not run). The results must be what the shell would have given:
    the same effects on the server, stdout, exit status. kamalpy shows, checks and raises as for the shell.
    firstresult: the first list wins; without any plugin the shell runs everything (Kamal's command strings).
    """


@hookspec
def kamalpy_flow_steps() -> dict[str, Any]:
    """Offer the steps the core flows (``setup``, ``deploy``, ``redeploy``, ``rollback``, ``remove``,
    ``details``) are composed of, by name.

    Fires: when a flow starts, before it touches any server (a flow needing a step that no plugin offers
    stops there with ``ERROR: ...`` naming the step).
    Arguments: none.
    Returns: ``{step_name: function}``; the function is called with a :class:`kamalpy.plugin.FlowStep`
    (``name``, ``commander``, ``params``). Names used by the built-in flows: ``server.bootstrap``,
    ``build.push``, ``build.pull``, ``proxy.boot``, ``proxy.remove``, ``proxy.details``,
    ``app.stale_containers``, ``app.remove``, ``app.details``, ``accessory.boot_missing``,
    ``accessory.remove_all``, ``accessory.details_all``.
    Not firstresult; when two plugins offer the same name, the override rule above decides.
    """


@hookspec
def kamalpy_register_commands(cli: click.Group) -> None:
    """Add CLI commands or command groups.

    Fires: once per run when the CLI needs its command list (any command other than
    ``kamalpy version``, which loads no plugin so that it starts fast).
    Arguments: ``cli``, the root :class:`click.Group`. Add with ``cli.add_command(cmd)``; build
    commands with :func:`kamalpy.plugin.command` / :func:`kamalpy.plugin.group` so that they get
    every global option and fire the lifecycle hooks.
    Returns: nothing.
    Not firstresult. A later plugin adding a command of the same name replaces the earlier one.
    """


@hookspec
def kamalpy_kamal_hook(hook: HookContext) -> None:
    """One of Kamal's hook moments: pre-connect, pre-build, pre-deploy, post-deploy, pre/post-app-boot,
    pre/post-proxy-reboot, docker-setup.

    Fires: exactly where Kamal runs ``.kamal/hooks/<name>`` (also under ``-H``: the built-in
    ``hook_runner`` plugin is what honours ``--skip-hooks`` and runs the hook file).
    Arguments: ``hook``, a :class:`kamalpy.plugin.HookContext` with ``name``, ``commander`` and ``env``
    (Kamal's ``KAMAL_*`` variables, plus every secret for pre-connect, pre-deploy and post-deploy).
    Returns: nothing. Raise :class:`kamalpy.errors.HookError` to stop the command, as a failing hook
    file does.
    Not firstresult: every plugin sees every moment, the hook runner first.
    """


@hookspec(firstresult=True)
def kamalpy_before_command(command: CommandContext) -> str | None:
    """A command is about to run: a policy plugin may refuse it.

    Fires: before every command's own work (after option parsing; before any configuration is
    loaded by the command, any lock is taken or any server is contacted). ``kamalpy version``
    does not fire it.
    Arguments: ``command``, a :class:`kamalpy.plugin.CommandContext` (command path such as
    ``("app", "boot")``, the global options, the command's own parameters and a lazily loaded
    configuration).
    Returns: None to allow, or a message to refuse: kamalpy prints ``ERROR: <message>`` and exits 1.
    firstresult: the first refusal wins.
    """


@hookspec
def kamalpy_after_command(command: CommandContext, error: BaseException | None) -> None:
    """A command has finished, successfully or not.

    Fires: after every command that fired ``kamalpy_before_command`` and was allowed to run,
    also when it failed.
    Arguments: ``command`` as above; ``error``, the exception that ended the command or None.
    Returns: nothing (an exception raised here is reported but does not hide ``error``).
    Not firstresult.
    """
