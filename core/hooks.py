"""Typed wrappers around the hook calls: core code calls these, never ``pm.hook.x`` directly.

Every hook goes through pluggy's own call (``pm.hook.NAME(...)``), so ``wrapper=True`` hook wrappers,
``tryfirst``/``trylast`` and pluggy's tracing work for all of them. A plugin bug (an exception that is
not a :class:`~kamalpy.errors.KamalpyError`) raised inside a hook ends as one line naming the plugin
and the hook (:func:`plugin_failures`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kamalpy.errors import ConfigurationError, KamalpyError, PluginError

if TYPE_CHECKING:  # pragma: no cover
    import click

    from kamalpy.config.model import Configuration
    from kamalpy.plugin import BootContext, CommandContext, ConfigKey, FlowStep, HookContext
    from kamalpy.plugins import PluginManager


class PluginFailure(KamalpyError):
    """A plugin raised something other than a KamalpyError inside a hook: a bug, named with its plugin."""


def _plugin_files(pm: PluginManager) -> list[tuple[str, str]]:
    """(path prefix, plugin name) of each registered plugin's module file or package directory."""
    import sys

    found = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        module = plugin if hasattr(plugin, "__file__") else sys.modules.get(type(plugin).__module__)
        path = getattr(module, "__file__", None)
        if not path:
            continue
        if os.path.basename(path) == "__init__.py":
            path = os.path.dirname(path) + os.sep
        found.append((path, name))
    return found


def culprit(pm: PluginManager, error: BaseException) -> str | None:
    """The plugin whose code raised ``error``: the innermost traceback frame in a plugin's module."""
    files = _plugin_files(pm)
    owner = None
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        for path, name in files:
            if filename == path or (path.endswith(os.sep) and filename.startswith(path)):
                owner = name
        tb = tb.tb_next
    return owner


@contextlib.contextmanager
def plugin_failures(pm: PluginManager, hook: str, recovery: str = "") -> Iterator[None]:
    """Turn a plugin's unexpected exception into ``PluginFailure`` naming the plugin, the hook and how to recover."""
    try:
        yield
    except KamalpyError:
        raise
    except Exception as error:
        owner = culprit(pm, error) or "unknown"
        detail = f"{type(error).__name__}: {error}".rstrip(": ")
        message = f"plugin '{owner}' failed in {hook}: {detail}"
        raise PluginFailure(f"{message}. {recovery}" if recovery else message) from error


class Hooks:
    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm
        self._config_keys: dict[str, ConfigKey] | None = None
        self._run_steps_impls: bool | None = None

    def _call(self, name: str, **kwargs: Any) -> Any:
        with plugin_failures(self.pm, name):
            return getattr(self.pm.hook, name)(**kwargs)

    def owners(self, hook: str) -> list[tuple[str, Any]]:
        """(plugin name, answer) of each implementation, most recent first: diagnostics only.

        The real calls go through pluggy; this asks each implementation alone to say who answered what
        (the registry hooks are declarative, so asking again is harmless).
        """
        found = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                continue
            with plugin_failures(self.pm, hook):
                found.append((impl.plugin_name, impl.function()))
        return found

    def config_keys(self) -> dict[str, ConfigKey]:
        """Plugin-owned top-level config keys by name (computed once)."""
        if self._config_keys is None:
            from kamalpy.plugin import ConfigKey

            keys: dict[str, ConfigKey] = {}
            answers = self._call("kamalpy_config_keys")
            for answer in reversed(answers):  # oldest plugin first, as they were registered
                if not isinstance(answer, (list, tuple)) or not all(isinstance(k, ConfigKey) for k in answer):
                    raise self._wrong_type("kamalpy_config_keys", answer, "a list of ConfigKey")
                for key in answer:
                    if key.name in keys:
                        raise PluginError(f"Config key '{key.name}' is declared by both "
                                          f"{' and '.join(self._key_owners(key.name))}")
                    keys[key.name] = key
            self._config_keys = keys
        return self._config_keys

    def _key_owners(self, name: str) -> list[str]:
        owners = [plugin for plugin, answer in self.owners("kamalpy_config_keys")
                  if any(getattr(k, "name", None) == name for k in answer or ())]
        return list(reversed(owners))

    def _wrong_type(self, hook: str, answer: Any, expected: str) -> PluginError:
        owner = next((plugin for plugin, found in self.owners(hook) if found is answer or found == answer), "unknown")
        return PluginError(f"plugin '{owner}' returned {type(answer).__name__} from {hook}; expected {expected}")

    def validate_config(self, config: Configuration) -> None:
        for answer in reversed(self._call("kamalpy_validate_config", config=config)):
            messages = [answer] if isinstance(answer, str) else list(answer or ())
            if messages:
                raise ConfigurationError(messages[0])

    def raw_config(self, options: Any) -> dict[str, Any]:
        """The raw configuration mapping: the first plugin that has one, then every plugin's transform."""
        raw = self._call("kamalpy_load_config", options=options)
        if raw is None:
            raise PluginError("No plugin loads the configuration (kamalpy_load_config; is config_loading disabled?)")
        if not isinstance(raw, dict):
            raise self._wrong_answer("kamalpy_load_config", raw, "a mapping or None")
        self._call("kamalpy_transform_config", raw=raw, options=options)
        return raw

    def _registry(self, hook: str, lower: bool = False) -> dict[str, Any]:
        """Merge ``{name: strategy}`` answers; pluggy lists the most recent plugin first, and it wins."""
        merged: dict[str, Any] = {}
        for answer in self._call(hook):
            if not isinstance(answer, dict):
                raise self._wrong_type(hook, answer, "a mapping {name: class}")
            for name, strategy in answer.items():
                merged.setdefault(name.lower() if lower else name, strategy)
        return merged

    def registry_winners(self, hook: str) -> dict[str, str]:
        """``{name: plugin}``: which plugin provides each name of a registry hook (``kamalpy plugins``)."""
        winners: dict[str, str] = {}
        for plugin, answer in self.owners(hook):
            for name in (answer or {}) if isinstance(answer, dict) else ():
                winners.setdefault(name, plugin)
        return winners

    def secret_adapters(self) -> dict[str, Any]:
        """``{name: adapter class}``; the most recently registered plugin wins a name."""
        return self._registry("kamalpy_secret_adapters", lower=True)

    def transports(self) -> dict[str, Any]:
        """``{name: transport class}``; the most recently registered plugin wins a name."""
        return self._registry("kamalpy_transports")

    def output_views(self) -> dict[str, Any]:
        """``{name: Output subclass}``: views of a run on a terminal; the most recent plugin wins a name."""
        return self._registry("kamalpy_output_views")

    def proxy_drivers(self) -> dict[str, Any]:
        """``{name: proxy driver class}``; the most recently registered plugin wins a name."""
        return self._registry("kamalpy_proxy_drivers")

    def builders(self) -> dict[str, Any]:
        """``{name: builder strategy class}``; the most recently registered plugin wins a name."""
        return self._registry("kamalpy_builders")

    def registry_strategies(self) -> dict[str, Any]:
        """``{name: registry strategy class}``; the most recently registered plugin wins a name."""
        return self._registry("kamalpy_registry_strategies")

    def flow_steps(self) -> dict[str, Callable[[FlowStep], Any]]:
        """``{step name: function}``: what the core flows are composed of; the most recent plugin wins a name."""
        return self._registry("kamalpy_flow_steps")

    def implementers(self, hook: str) -> list[str]:
        """Plugins implementing ``hook`` (not wrappers), in pluggy's call order."""
        return [impl.plugin_name for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls())
                if not (impl.hookwrapper or getattr(impl, "wrapper", False))]

    def _wrong_answer(self, hook: str, answer: Any, expected: str) -> PluginError:
        # A firstresult hook with arguments cannot be asked again: name the plugins that may have answered.
        return PluginError(f"{hook} returned {type(answer).__name__} ({answer!r:.60}); expected {expected} "
                           f"(implemented by plugin {', '.join(repr(n) for n in self.implementers(hook))})")

    def boot_app(self, boot: BootContext) -> bool:
        """Boot the new version on ``boot.hosts``; False when no plugin boots apps."""
        with plugin_failures(self.pm, "kamalpy_boot_app", "Some hosts may run the new version and others the "
                             "old one: deploy again, or roll back with `kamalpy rollback VERSION`."):
            booted = self.pm.hook.kamalpy_boot_app(boot=boot)
        if booted is not None and booted is not True:
            raise self._wrong_answer("kamalpy_boot_app", booted, "True or None")
        return bool(booted)

    def prune_steps(self, commander: Any) -> list[Any] | None:
        """The steps a deploy runs to prune on each host; None when no plugin prunes."""
        steps = self._call("kamalpy_prune_steps", commander=commander)
        if steps is not None and not isinstance(steps, (list, tuple)):
            raise self._wrong_answer("kamalpy_prune_steps", steps, "a list of steps")
        return None if steps is None else list(steps)

    def run_steps(self, session: Any, steps: list[Any]) -> list[Any] | None:
        """Results of ``steps`` run by a plugin, or None for the shell. Without an implementation pluggy is not
        asked at all, so the default path costs nothing per command."""
        if self._run_steps_impls is None:
            self._run_steps_impls = bool(self.implementers("kamalpy_run_steps"))
        if not self._run_steps_impls:
            return None
        with plugin_failures(self.pm, "kamalpy_run_steps", "The step may or may not have run on the host: "
                             "check with `kamalpy app details`, then deploy again."):
            results = self.pm.hook.kamalpy_run_steps(session=session, steps=steps)
        if results is None:
            return None
        from kamalpy.transport import CommandResult

        if not isinstance(results, list) or len(results) > len(steps) or not all(
                isinstance(r, CommandResult) for r in results):
            raise self._wrong_answer("kamalpy_run_steps", results,
                                     f"a list of at most {len(steps)} CommandResult, or None")
        return results

    def register_commands(self, cli: click.Group) -> None:
        # pluggy calls the most recent plugin first, and the first command of a name wins, so a later plugin's
        # command replaces an earlier one's (a plugin extending another's group uses trylast=True).
        added: set[str] = set()
        original = cli.add_command

        def add_command(cmd: click.Command, name: str | None = None) -> None:
            name = name or cmd.name
            if name in added:
                return
            added.add(str(name))
            original(cmd, name)

        cli.add_command = add_command  # type: ignore[method-assign]
        try:
            self._call("kamalpy_register_commands", cli=cli)
        finally:
            del cli.add_command

    def kamal_hook(self, hook: HookContext) -> None:
        self._call("kamalpy_kamal_hook", hook=hook)

    def before_command(self, command: CommandContext) -> str | None:
        return self._call("kamalpy_before_command", command=command)

    def after_command(self, command: CommandContext, error: BaseException | None) -> None:
        self._call("kamalpy_after_command", command=command, error=error)
