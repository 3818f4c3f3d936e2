"""Built-in plugin: runs Kamal's hook files (``.kamal/hooks/<name>``) at Kamal's moments.

Skipped with ``-H/--skip-hooks`` or when the file does not exist. The hook runs on the deploying
machine through ``/usr/bin/env <path>`` (its shebang picks the interpreter) with the process
environment plus Kamal's ``KAMAL_*`` variables. Output follows ``hooks_output`` (quiet/verbose) at
normal verbosity; ``-v`` shows it, ``-q`` hides it. A failure stops the command with
``Hook `NAME` failed: <output>``.
"""

from __future__ import annotations

from kamalpy.commands import hook as hook_commands
from kamalpy.errors import HookError
from kamalpy.plugin import HookContext, hookimpl


@hookimpl(tryfirst=True)  # the hook file runs before any other plugin sees the moment
def kamalpy_kamal_hook(hook: HookContext) -> None:
    commander = hook.commander
    config = commander.config
    if commander.run.options.skip_hooks or not hook_commands.hook_exists(config, hook.name):
        return
    output = commander.output
    output.say(f"Running the {hook.name} hook...")
    session = commander.executor.local(env=hook.env)
    result = session.execute(hook_commands.run(config, hook.name), raise_on_non_zero=False)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip()
        raise HookError(f"Hook `{hook.name}` failed: {detail or f'exit status {result.exit_status}'}")
    if _show_output(commander, hook.name):
        for line in (result.stdout + result.stderr).splitlines():
            output.info(f"  {line}")


def _show_output(commander, name: str) -> bool:
    options = commander.run.options
    if options.verbose or options.quiet:
        return options.verbose
    return commander.config.hooks_output_for(name) == "verbose"
