"""The ``kamalpy_run_steps`` hook: when the execution layer asks it, and how it treats the answer.

A stand-in transport records what would reach a server's shell. Without an implementation pluggy is not even
asked; with one, its results are checked, shown and raised on exactly as the shell's would be.
"""

from __future__ import annotations

import subprocess

import pytest

from kamalpy.errors import HostErrors
from kamalpy.execution import Executor, Step
from kamalpy.hooks import Hooks
from kamalpy.output import Output
from kamalpy.plugin import hookimpl
from kamalpy.plugins import build_plugin_manager
from kamalpy.transport import CommandFailed, CommandResult, SshSettings


class RecordingConnection:
    def __init__(self, host: str) -> None:
        self.host = host
        self.commands: list[str] = []

    def run(self, command, *, stdin=None, timeout=None, on_output=None):
        self.commands.append(command)
        proc = subprocess.run(["/bin/sh", "-c", command], input=stdin or b"", capture_output=True)
        return CommandResult(self.host, command, proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def close(self) -> None:
        pass


class RecordingTransport:
    def __init__(self) -> None:
        self.connections: dict[str, RecordingConnection] = {}

    def connect(self, host, settings):
        return self.connections.setdefault(host, RecordingConnection(host))


class Answering:
    """A plugin answering each step with exit status ``statuses[i]``."""

    def __init__(self, statuses: list[int] | None) -> None:
        self.statuses = statuses
        self.asked: list[list] = []

    @hookimpl
    def kamalpy_run_steps(self, session, steps):
        self.asked.append(list(steps))
        if self.statuses is None:
            return None
        results = []
        for step, status in zip(steps, self.statuses, strict=False):
            results.append(CommandResult(session.host, "x", status, "from the plugin\n"))
            if status and step.check:
                break
        return results


def executor(plugin=None, dry_run=False):
    pm = build_plugin_manager(load_entry_points=False)
    if plugin is not None:
        pm.register(plugin, name="answering")
    transport = RecordingTransport()
    return Executor(None if dry_run else transport, SshSettings(), Output(quiet=True), dry_run=dry_run,
                    hooks=Hooks(pm)), transport


def test_without_an_implementation_pluggy_is_not_asked(monkeypatch):
    ex, transport = executor()

    class NotToBeCalled:  # the hook caller, but calling it fails the test
        def __init__(self, caller):
            self.get_hookimpls = caller.get_hookimpls

        def __call__(self, **kwargs):
            raise AssertionError("pluggy was asked")

    monkeypatch.setattr(ex.hooks.pm.hook, "kamalpy_run_steps", NotToBeCalled(ex.hooks.pm.hook.kamalpy_run_steps))
    assert ex.on(["h1"], lambda s: s.execute(["echo", "hi"]).stdout) == {"h1": "hi\n"}
    assert transport.connections["h1"].commands == ["/usr/bin/env echo hi"] and ex.round_trips["h1"] == 1


def test_the_plugins_results_are_used_and_a_failing_checked_step_raises_and_ends_the_script():
    plugin = Answering([0, 1, 0])
    ex, transport = executor(plugin)
    with pytest.raises(HostErrors) as failed:
        ex.on(["h1"], lambda s: s.script([Step(["docker", "ps"]), Step(["docker", "rename", "a", "b"]),
                                          Step(["docker", "tag", "a", "b"])]))
    assert isinstance(failed.value.errors["h1"], CommandFailed)
    assert "docker rename a b exit status: 1" in str(failed.value.errors["h1"])
    assert transport.connections.get("h1") is None  # nothing went to the shell
    assert ex.on(["h1"], lambda s: s.execute(["docker", "ps"]).stdout) == {"h1": "from the plugin\n"}
    assert ex.round_trips["h1"] == 0  # the plugin counts what it sends (Session.open_stream, run_in_shell)


def test_none_lets_the_shell_run_them_and_dry_runs_and_local_commands_never_ask():
    plugin = Answering(None)
    ex, transport = executor(plugin)
    found = ex.on(["h1"], lambda s: [r.stdout for r in s.script([Step(["echo", "a"]), Step(["echo", "b"])])])
    assert found == {"h1": ["a\n", "b\n"]}
    assert len(transport.connections["h1"].commands) == 1 and len(plugin.asked) == 1
    ex.local().execute(["true"])
    assert len(plugin.asked) == 1
    dry, _ = executor(plugin, dry_run=True)
    dry.on(["h1"], lambda s: (s.execute(["docker", "ps"]), s.script([Step(["docker", "ps"])])))
    assert len(plugin.asked) == 1


def test_run_in_shell_runs_steps_in_one_round_trip_and_stops_at_a_failing_checked_one():
    ex, transport = executor()
    results = ex.on(["h1"], lambda s: s.run_in_shell([Step(["echo", "a"]), Step(["false"]), Step(["echo", "c"])]))
    assert [(r.exit_status, r.stdout) for r in results["h1"]] == [(0, "a\n"), (1, "")]
    assert ex.round_trips["h1"] == 1


def test_a_wrong_answer_names_the_hook_and_the_plugin():
    class Wrong:
        @hookimpl
        def kamalpy_run_steps(self, session, steps):
            return ["not a result"]

    ex, _ = executor(Wrong())
    with pytest.raises(HostErrors, match="kamalpy_run_steps returned list .*implemented by plugin 'answering'"):
        ex.on(["h1"], lambda s: s.execute(["docker", "ps"]))
