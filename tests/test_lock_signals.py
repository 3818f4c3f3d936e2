"""SIGTERM and SIGHUP while the deploy lock is held unwind like Ctrl-C (the e2e test: test_e2e_lock.py)."""

from __future__ import annotations

import os
import signal

import pytest

from kamalpy.errors import Terminated
from kamalpy.locking import _signals_interrupt


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_under_the_lock_raises_terminated_and_the_handlers_come_back(signum, code):
    before = signal.getsignal(signum)
    with pytest.raises(Terminated) as raised, _signals_interrupt():
        os.kill(os.getpid(), signum)  # the handler runs at once, in this (the main) thread
        pytest.fail("the signal did not interrupt")
    assert isinstance(raised.value, KeyboardInterrupt) and raised.value.exit_code == code
    assert str(raised.value) == f"Terminated by {signal.Signals(signum).name}"
    assert signal.getsignal(signum) is before


def test_an_ignored_signal_stays_ignored_so_nohup_works():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with _signals_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)  # nothing happens
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
