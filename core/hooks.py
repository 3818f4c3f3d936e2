"""Typed wrappers around the hook calls: core code calls these, never ``pm.hook.x`` directly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kamalpy.errors import ConfigurationError, PluginError

if TYPE_CHECKING:  # pragma: no cover
    import click

    from kamalpy.config.model import Configuration
    from kamalpy.plugin import CommandContext, ConfigKey, HookContext
    from kamalpy.plugins import PluginManager


class Hooks:
    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm
        self._config_keys: dict[str, ConfigKey] | None = None

    def config_keys(self) -> dict[str, ConfigKey]:
        """Plugin-owned top-level config keys by name (computed once)."""
        if self._config_keys is None:
            keys: dict[str, ConfigKey] = {}
            owners: dict[str, str] = {}
            for impl in self.pm.hook.kamalpy_config_keys.get_hookimpls():
                for key in impl.function() or ():
                    if key.name in keys:
                        raise PluginError(
                            f"Config key '{key.name}' is declared by both {owners[key.name]} and {impl.plugin_name}"
                        )
                    keys[key.name] = key
                    owners[key.name] = impl.plugin_name
            self._config_keys = keys
        return self._config_keys

    def validate_config(self, config: Configuration) -> None:
        for answer in reversed(self.pm.hook.kamalpy_validate_config(config=config)):
            messages = [answer] if isinstance(answer, str) else list(answer or ())
            if messages:
                raise ConfigurationError(messages[0])

    def secret_adapters(self) -> dict[str, Any]:
        """``{name: adapter class}``; the most recently registered plugin wins a name."""
        return self._registry(self.pm.hook.kamalpy_secret_adapters(), lower=True)

    @staticmethod
    def _registry(answers: list[dict[str, Any]], lower: bool = False) -> dict[str, Any]:
        """Merge ``{name: strategy}`` answers; pluggy lists the most recent plugin first, and it wins."""
        merged: dict[str, Any] = {}
        for answer in answers:
            for name, strategy in (answer or {}).items():
                merged.setdefault(name.lower() if lower else name, strategy)
        return merged

    def transports(self) -> dict[str, Any]:
        """``{name: transport class}``; the most recently registered plugin wins a name."""
        return self._registry(self.pm.hook.kamalpy_transports())

    def proxy_drivers(self) -> dict[str, Any]:
        """``{name: proxy driver class}``; the most recently registered plugin wins a name."""
        return self._registry(self.pm.hook.kamalpy_proxy_drivers())

    def builders(self) -> dict[str, Any]:
        """``{name: builder strategy class}``; the most recently registered plugin wins a name."""
        return self._registry(self.pm.hook.kamalpy_builders())

    def register_commands(self, cli: click.Group) -> None:
        # Oldest plugin first, so that a later plugin's command of the same name replaces it.
        for impl in self.pm.hook.kamalpy_register_commands.get_hookimpls():
            impl.function(cli=cli)

    def kamal_hook(self, hook: HookContext) -> None:
        # Oldest plugin first, so the built-in hook runner (registered early) runs the hook file first.
        for impl in self.pm.hook.kamalpy_kamal_hook.get_hookimpls():
            impl.function(hook=hook)

    def before_command(self, command: CommandContext) -> str | None:
        return self.pm.hook.kamalpy_before_command(command=command)

    def after_command(self, command: CommandContext, error: BaseException | None) -> None:
        self.pm.hook.kamalpy_after_command(command=command, error=error)
