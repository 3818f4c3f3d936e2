"""Hand the terminal to a local command line (``ssh -t ...``): ``exec -i``, ``logs -f``.

Kamal ``exec``s these lines, replacing its process. kamalpy runs them as a child instead (so the run's
``after`` hooks and connection clean-up still happen) and passes the child's exit status on. Ctrl-C
belongs to the child: on a terminal the keystroke reaches the remote side through the pseudo-terminal;
a SIGINT sent to kamalpy alone (or to the whole process group, as a shell does without a terminal) is
passed to the child, and kamalpy ends quietly with the child's status (130 when it died of SIGINT).
"""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import TYPE_CHECKING

from kamalpy.execution import LOCAL

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander


def hand_over(commander: Commander, line: str) -> int:
    """Run a local command line on this terminal; its exit status. A dry run prints it as ``local<TAB>LINE``."""
    if commander.dry_run:
        commander.output.dry_run(LOCAL, line)
        return 0
    commander.output.info(f"  INFO Running {line} locally")
    commander.close()  # the pooled connections are not needed while the user works
    # `exec`: the shell becomes the command, so a forwarded signal reaches ssh itself.
    child = subprocess.Popen(["/bin/sh", "-c", f"exec {line}"])
    in_main = threading.current_thread() is threading.main_thread()
    previous = None
    if in_main:
        def forward(signum: int, _frame: object) -> None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:  # pragma: no cover - already gone
                pass
        previous = signal.signal(signal.SIGINT, forward)
    try:
        code = child.wait()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128+N
