"""The live view of many hosts (kamalpy.live_view): rendering on a fake terminal, phases, the slowest hosts."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from fake_terminal import FakeTerminal
from plugins import loopback_transport

from kamalpy.errors import KamalpyError
from kamalpy.execution import Executor, Session, Step
from kamalpy.live_view import LiveView, Phase, phase_summary, render, run_summary, wanted
from kamalpy.output import Output, colour_enabled
from kamalpy.transport import SshSettings

PULL = "docker pull registry.example.com:5000/acme/app:0123456789abcdef0123456789abcdef --platform linux/amd64"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Screen(io.StringIO):
    """A stream that also feeds a fake terminal."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.terminal = FakeTerminal(width, height)

    def write(self, text: str) -> int:
        self.terminal.feed(text)
        return super().write(text)


def view(width: int = 100, height: int = 24) -> tuple[LiveView, Screen, Clock]:
    screen, clock = Screen(width, height), Clock()
    return LiveView(stream=screen, size=lambda: (width, height), clock=clock, refresh=0.0, ticker=False), screen, clock


def hosts(count: int) -> list[str]:
    return [f"10.0.0.{n}" for n in range(1, count + 1)]


def test_one_line_per_host_under_the_phase_summary() -> None:
    phase = Phase("Pull app image", 0.0)
    for host in hosts(3):
        phase.start(host, f"t-{host}", PULL, 0.0)
    phase.finish("10.0.0.1", "t-10.0.0.1", 1.5)
    lines = render(phase, 4.2, 80, 24)
    assert lines[0] == "Pull app image: 1/3 hosts done, 2 running, slowest: 10.0.0.2 4.2s"
    assert lines[1] == "  10.0.0.1    1.5s  done (1 command)"
    assert lines[2].startswith("> 10.0.0.2    4.2s  docker pull registry.example.com:5000/acme/app:")
    assert lines[2].endswith("…") and len(lines[2]) == 79  # shortened to the width, last column left free
    assert len(lines) == 4
    assert lines[3].startswith("> 10.0.0.3    4.2s  docker pull")


def test_a_long_title_is_cut_before_the_counts_and_env_is_left_out() -> None:
    phase = Phase("Running 'uptime' on " + ", ".join(hosts(50)), 0.0)
    phase.start("10.0.0.1", "t", "/usr/bin/env uptime", 0.0)
    lines = render(phase, 2.0, 80, 24)
    assert lines[0] == "Running 'uptime' on 10.0.0.…: 0/1 hosts done, 1 running, slowest: 10.0.0.1 2.0s"
    assert len(lines[0]) == 79
    assert lines[1] == "> 10.0.0.1    2.0s  uptime"


def test_more_hosts_than_rows_shows_failed_and_running_first_then_a_count() -> None:
    phase = Phase("Pull app image", 0.0)
    names = hosts(100)
    for host in names:
        phase.start(host, host, PULL, 0.0)
    for host in names[:97]:
        phase.finish(host, host, 1.0)
    phase.fail("10.0.0.50", "docker pull: no space left on device", 2.0)
    lines = render(phase, 4.0, 80, 10)
    assert len(lines) == 9  # bounded: one row stays free for the cursor
    assert lines[0].startswith("Pull app image: 96/100 hosts done, 3 running, 1 failed, slowest: 10.0.0.98 4.0s")
    assert lines[1].startswith("! 10.0.0.50") and "failed: docker pull: no space" in lines[1]
    assert [line.split()[1] for line in lines[2:5]] == ["10.0.0.98", "10.0.0.99", "10.0.0.100"]
    assert lines[5].startswith("  10.0.0.1 ")
    assert lines[-1] == "+93 done"


def test_hidden_running_hosts_are_counted_as_running() -> None:
    phase = Phase("Boot", 0.0)
    for host in hosts(30):
        phase.start(host, host, "docker run", 0.0)
    lines = render(phase, 1.0, 80, 6)
    assert len(lines) == 5 and lines[-1] == "+27 more (27 running)"


def test_a_finished_phase_names_its_slowest_and_failed_hosts() -> None:
    phase = Phase("Pull app image", 10.0)
    for index, host in enumerate(hosts(5)):
        phase.start(host, host, PULL, 10.0)
        phase.finish(host, host, 11.0 + index)
    phase.fail("10.0.0.2", "exit 1", 12.0)
    assert phase_summary(phase) == ("  4/5 hosts done in 5.0s, slowest: 10.0.0.5 5.0s, 10.0.0.4 4.0s, 10.0.0.3 3.0s;"
                                    " failed: 10.0.0.2 (exit 1)")
    assert phase_summary(Phase("Acquired the deploy lock", 0.0)) is None
    for host in hosts(9)[5:]:
        phase.fail(host, "unreachable", 12.0)
    assert phase_summary(phase).endswith(  # type: ignore[union-attr]
        "failed: 10.0.0.2 (exit 1), 10.0.0.6 (unreachable), 10.0.0.7 (unreachable), 10.0.0.8 (unreachable),"
        " 10.0.0.9 (unreachable)")
    phase.fail("10.0.0.10", "unreachable", 12.0)
    assert phase_summary(phase).endswith("10.0.0.9 (unreachable) and 1 more")  # type: ignore[union-attr]


def test_a_phase_of_local_commands_says_so() -> None:
    phase = Phase("Build and push app image", 0.0)
    phase.start("local", "b", "docker buildx build .", 0.0)
    phase.finish("local", "b", 30.25)
    assert phase_summary(phase) == "  done locally in 30.2s"


def test_run_summary_adds_up_each_servers_time_over_the_phases() -> None:
    first, second = Phase("a", 0.0), Phase("b", 10.0)
    for phase, times in ((first, {"h1": 1.0, "h2": 3.0, "h3": 2.0}), (second, {"h1": 4.0, "h2": 1.0, "h3": 0.5})):
        for host, seconds in times.items():
            phase.start(host, host, "true", phase.started)
            phase.finish(host, host, phase.started + seconds)
    first.start("local", "l", "build", 0.0)
    first.finish("local", "l", 60.0)
    assert run_summary([first, second]) == "Slowest hosts: h1 5.0s, h2 4.0s, h3 2.5s"
    assert run_summary([Phase("only", 0.0)]) is None


def test_redrawn_in_place_and_summed_up_on_the_screen() -> None:
    output, screen, clock = view(width=90, height=12)
    output.say("Pull app image...")
    tags = {host: output.start(host, PULL) for host in hosts(20)}
    for second, host in enumerate(hosts(20)[:-1], start=1):
        clock.now += 0.1
        output.finish(host, tags[host], second, 0)
    live = screen.terminal.screen
    assert "Pull app image: 19/20 hosts done, 1 running, slowest: 10.0.0.20" in "\n".join(live)
    assert sum("Pull app image:" in line for line in screen.terminal.lines) == 1  # redrawn, not appended
    assert len([line for line in live if line.strip()]) <= 12
    clock.now += 3.0
    output.finish("10.0.0.20", tags["10.0.0.20"], 5.0, 0)
    output.say("Finished all in 6.0 seconds")
    output.close()
    assert screen.terminal.text().splitlines() == [
        "Pull app image...",
        "  20/20 hosts done in 4.9s, slowest: 10.0.0.20 4.9s, 10.0.0.19 1.9s, 10.0.0.18 1.8s",
        "Finished all in 6.0 seconds",
        "Slowest hosts: 10.0.0.20 4.9s, 10.0.0.19 1.9s, 10.0.0.18 1.8s",
    ]


def test_warnings_and_errors_print_as_lines_above_the_region() -> None:
    output, screen, clock = view(width=200)
    output.say("Boot...")
    tags = {host: output.start(host, "docker run app") for host in hosts(3)}
    output.warn("Retrying DNS for 10.0.0.3")
    clock.now += 1.0
    output.host_failed("10.0.0.3", KamalpyError("10.0.0.3: container unhealthy\nmore detail"))
    lines = screen.terminal.text().splitlines()
    assert lines[:2] == ["Boot...", "  WARN Retrying DNS for 10.0.0.3"]
    assert lines[2].startswith("Boot: 0/3 hosts done, 2 running, 1 failed")
    assert lines[5].startswith("! 10.0.0.3") and lines[5].endswith("failed: container unhealthy")  # no host twice
    for host in hosts(2):
        output.finish(host, tags[host], 1.0, 0)
    output.close()
    assert screen.terminal.text().splitlines()[2:] == [
        "  2/3 hosts done in 1.0s, slowest: 10.0.0.1 1.0s, 10.0.0.2 1.0s, 10.0.0.3 1.0s;"
        " failed: 10.0.0.3 (container unhealthy)",
        "Slowest hosts: 10.0.0.1 1.0s, 10.0.0.2 1.0s, 10.0.0.3 1.0s",
    ]


def test_nothing_running_leaves_no_region_for_other_output() -> None:
    output, screen, _ = view()
    output.say("Details...")
    tag = output.start("10.0.0.1", "docker ps")
    assert "> 10.0.0.1" in screen.terminal.text()
    output.finish("10.0.0.1", tag, 0.1, 0)
    assert screen.terminal.text() == "Details..."  # erased: a direct print lands on a clean line


def test_abandoned_steps_stop_counting_as_running() -> None:
    output, screen, _ = view()
    tags = [output.start("10.0.0.1", command) for command in ("a", "b", "c")]
    output.finish("10.0.0.1", tags[0], 0.1, 1)
    output.abandon("10.0.0.1", tags[1:])
    assert screen.terminal.text() == ""
    assert not output._phase.running


def test_the_region_fits_a_resized_terminal() -> None:
    size = [100, 30]
    screen, clock = Screen(100, 30), Clock()
    output = LiveView(stream=screen, size=lambda: (size[0], size[1]), clock=clock, refresh=0.0, ticker=False)
    tags = {host: output.start(host, PULL) for host in hosts(40)}
    size[:] = [50, 8]
    output.finish("10.0.0.1", tags["10.0.0.1"], 0.1, 0)
    region = [line for line in screen.terminal.screen if line.strip()]
    assert len(region) == 7 and all(len(line) <= 49 for line in region)


@pytest.mark.parametrize(("options", "expected"), [
    ({}, True),
    ({"verbose": True}, False),
    ({"quiet": True}, False),
    ({"dry_run": True}, False),
])
def test_wanted_only_on_a_terminal_without_v_q_or_dry_run(options: dict[str, bool], expected: bool) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    flags = {"verbose": False, "quiet": False, "dry_run": False, **options}
    assert wanted(**flags, streams=[Tty(), Tty()], environ={"TERM": "xterm"}) is expected
    assert wanted(**flags, streams=[Tty(), io.StringIO()], environ={"TERM": "xterm"}) is False
    assert wanted(**flags, streams=[Tty(), Tty()], environ={"TERM": "dumb"}) is False


def test_the_line_log_has_no_live_view_methods_effects() -> None:
    stream = io.StringIO()
    output = Output(stream=stream)
    tag = output.start("10.0.0.1", "docker -v")
    output.abandon("10.0.0.1", [tag])
    output.host_failed("10.0.0.1", KamalpyError("x"))
    output.close()
    assert stream.getvalue() == f"  INFO [{tag}] Running docker -v on 10.0.0.1\n"


def test_the_ticker_redraws_running_hosts_and_stops_when_idle() -> None:
    import time

    screen = Screen(80, 24)
    output = LiveView(stream=screen, size=lambda: (80, 24), refresh=0.05)
    tag = output.start("10.0.0.1", "sleep 1")
    time.sleep(0.4)
    assert screen.getvalue().count("Running: 0/1 hosts done") >= 3  # redrawn with no event
    assert "> 10.0.0.1    0.0s" not in screen.terminal.text()  # and the time went on
    output.finish("10.0.0.1", tag, 0.4, 0)
    time.sleep(0.2)
    assert output._ticker is None


def test_the_executor_reports_failed_hosts_and_abandoned_script_steps(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loopback_transport.ROOT_ENV, str(tmp_path))
    output, screen, _ = view(width=300)
    executor = Executor(loopback_transport.LoopbackTransport(), SshSettings(), output)
    output.say("Check...")

    def work(session: Session) -> None:
        # 10.0.0.2: a failing checked step; 10.0.0.3: the shell itself dies (exit in the script).
        second = {"10.0.0.2": "sh -c 'exit 3'", "10.0.0.3": "exit 4"}.get(session.host, "true")
        session.script([Step("true"), Step(second), Step("true")])

    with pytest.raises(KamalpyError, match="10.0.0.2"):
        executor.on(hosts(3), work)
    assert not output._phase.running  # the steps after the failed one are not left running
    output.close()
    lines = screen.terminal.text().splitlines()
    assert lines[0] == "Check..."
    # The failed hosts are listed in the order they failed, which the threads decide.
    summary, failed = lines[1].split("; failed: ")
    assert re.fullmatch(r"  1/3 hosts done in \d\.\ds, slowest: .*", summary), lines[1]
    first, second = sorted(re.split(r", (?=10\.0\.0\.\d \()", failed))
    assert first == "10.0.0.2 (sh -c 'exit 3' exit status: 3)", lines[1]
    assert re.fullmatch(r"10\.0\.0\.3 \(exit 4 exit status: 4.*\)", second), lines[1]


def test_colours_on_a_terminal_unless_no_color(monkeypatch) -> None:
    phase = Phase("Boot", 0.0)
    for host in hosts(3):
        phase.start(host, host, "docker run", 0.0)
    phase.finish("10.0.0.1", "10.0.0.1", 1.0)
    phase.fail("10.0.0.2", "exit 1", 1.0)
    plain = render(phase, 2.0, 80, 24)
    painted = render(phase, 2.0, 80, 24, colour=True)
    assert painted[0] == f"\x1b[1m{plain[0]}\x1b[0m"
    assert [line[:5] for line in painted[1:]] == ["\x1b[32m", "\x1b[31m", "\x1b[33m"]  # done, failed, running
    assert [line[5:-4] for line in painted] [1:] == plain[1:]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_enabled(Tty()) is True
    assert colour_enabled(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_enabled(Tty()) is False
