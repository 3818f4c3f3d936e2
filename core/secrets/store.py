"""The resolved secrets of a project: ``<secrets_path>-common`` then ``<secrets_path>[.<destination>]``.

Each file is parsed on its own (a key of ``secrets-common`` is not a variable in ``secrets``; the
process environment is) and later files win. Loading happens on first access, once, under a lock:
password managers run by ``$(...)`` may prompt, and several threads may ask at the same time.

``$(kamal secrets ...)`` and ``$(kamalpy secrets ...)`` run in this process, through the CLI with
Kamal's hidden ``--inline`` flag (``fetch`` then returns its JSON shell-escaped, so that
``$(kamal secrets extract NAME ${SECRETS})`` gets it back intact). Any other command runs through
``/bin/sh``; a non-zero exit is an error naming the file and the key (Kamal ignores it and uses
whatever was printed).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamalpy.errors import SecretsError
from kamalpy.secrets import shellsplit
from kamalpy.secrets.dotenv import parse

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.hooks import Hooks

DEFAULT_SECRETS_PATH = ".kamal/secrets"
_INLINE_COMMAND = re.compile(r"\A\s*kamal(?:py)?\s+secrets\s")


class SecretNotFoundError(SecretsError, KeyError):
    """A secret name that no secrets file defines (a ``KeyError`` too, for ``Mapping`` habits)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Secrets:
    """Lazily loaded, thread-safe mapping of secret names to values."""

    def __init__(
        self,
        secrets_path: str | Path = DEFAULT_SECRETS_PATH,
        destination: str | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.secrets_path = str(secrets_path)
        self.destination = destination
        self._hooks = hooks
        self._lock = threading.RLock()  # re-entrant only to report a re-entry instead of hanging
        self._loading = False
        self._secrets: dict[str, str] | None = None

    @property
    def filenames(self) -> list[str]:
        """Every file that may be read, in order (whether it exists or not)."""
        main = f"{self.secrets_path}.{self.destination}" if self.destination else self.secrets_path
        return [f"{self.secrets_path}-common", main]

    @property
    def files(self) -> list[str]:
        """The files that exist and are read, in order."""
        return [name for name in self.filenames if os.path.isfile(name)]

    def __getitem__(self, name: str) -> str:
        secrets = self._load()
        if name in secrets:
            return secrets[name]
        files = self.files
        if files:
            raise SecretNotFoundError(f"Secret '{name}' not found in {', '.join(files)}")
        raise SecretNotFoundError(f"Secret '{name}' not found, no secret files ({', '.join(self.filenames)}) provided")

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._load().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def to_dict(self) -> dict[str, str]:
        """All secrets (a copy), in file order."""
        return dict(self._load())

    def __repr__(self) -> str:  # never the values
        return f"Secrets({self.secrets_path!r}, destination={self.destination!r})"

    def _load(self) -> dict[str, str]:
        with self._lock:
            if self._secrets is None:
                if self._loading:  # e.g. a plugin hook of an inline command asking for a secret
                    raise SecretsError(f"The secrets of {self.secrets_path} were requested while being loaded")
                self._loading = True
                try:
                    secrets: dict[str, str] = {}
                    for filename in self.files:
                        text = read_secrets_file(filename)
                        secrets.update(parse(text, os.environ, self._run_command, source=filename))
                    self._secrets = secrets
                finally:
                    self._loading = False
            return self._secrets

    def check_readable(self) -> None:
        """Read each file without evaluating it, so an unreadable one fails before anything runs."""
        for filename in self.files:
            read_secrets_file(filename)

    def _run_command(self, command: str) -> str:
        if _INLINE_COMMAND.match(command):
            return run_inline_command(command, self._resolve_hooks())
        return run_shell_command(command)

    def _resolve_hooks(self) -> Hooks:
        if self._hooks is None:
            self._hooks = _current_hooks()
        return self._hooks


def read_secrets_file(filename: str) -> str:
    try:
        return Path(filename).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SecretsError(f"{filename}: not valid UTF-8 (byte {error.start})") from None
    except OSError as error:
        raise SecretsError(f"{filename}: cannot be read: {error.strerror}") from None


def run_inline_command(command: str, hooks: Hooks) -> str:
    """Run ``kamal[py] secrets SUB ARGS`` in this process with ``--inline``; return what it returns."""
    import click

    from kamalpy.cli.base import Run
    from kamalpy.cli.main import make_cli

    args = shellsplit(command)[1:] + ["--inline"]
    run = Run(hooks=hooks)  # the same plugins (and so the same adapters) as the caller
    try:
        result = make_cli().main(args, prog_name="kamalpy", standalone_mode=False, obj=run)
    except click.exceptions.Exit as exc:
        raise SecretsError(f"'kamalpy {' '.join(args[:2])}' exited with status {exc.exit_code}") from None
    except click.ClickException as exc:
        # click's messages may quote arguments, and the arguments may hold secret values.
        words = " ".join(args[:2])
        raise SecretsError(f"invalid command line for 'kamalpy {words}' ({type(exc).__name__})") from None
    if not isinstance(result, str):
        raise SecretsError(f"'kamalpy {' '.join(args[:2])}' returns no value inside a secrets file")
    return result


def run_shell_command(command: str) -> str:
    """Run a command through ``/bin/sh`` (stdin and stderr stay the terminal's, for prompts)."""
    try:
        process = subprocess.run(["/bin/sh", "-c", command], stdout=subprocess.PIPE, check=False)
    except OSError as exc:
        raise SecretsError(f"could not run /bin/sh: {exc.strerror}") from None
    if process.returncode < 0:
        raise SecretsError(f"the command was killed by signal {-process.returncode}")
    if process.returncode != 0:
        raise SecretsError(f"the command exited with status {process.returncode}")
    return process.stdout.decode("utf-8", errors="replace")


def _current_hooks() -> Hooks:
    """The running command's plugins, else the default set (built-ins and entry points)."""
    import click

    context = click.get_current_context(silent=True)
    run: Any = context.find_root().obj if context is not None else None
    hooks = getattr(run, "hooks", None)
    if hooks is not None:
        return hooks
    from kamalpy.hooks import Hooks
    from kamalpy.plugins import build_plugin_manager, disabled_from_env

    return Hooks(build_plugin_manager(disabled_from_env()))
