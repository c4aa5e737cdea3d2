"""CPU thread settings: validation, the free-core rule, and the meter on a really busy core."""
import subprocess
import sys
import time

import pytest
import torch

from mfruntime.runtime.threads import CpuMeter, ThreadPolicy, check_threads, threads_for, usable_cores


@pytest.mark.parametrize("bad", [0, -1, 1000, 2.5, "two", True, None])
def test_bad_thread_settings_are_clear_errors(bad):
    with pytest.raises(ValueError, match="threads must be 'auto' or a whole number"):
        check_threads(bad)


def test_free_core_rule():
    assert threads_for(0.0, 2, 2) == 2
    assert threads_for(0.7, 2, 2) == 1  # a busy core (shared with our second thread) → one thread
    assert threads_for(1.0, 2, 2) == 1
    assert threads_for(3.0, 2, 2) == 1  # never below one
    assert threads_for(0.2, 8, 4) == 4  # never above the cap
    assert threads_for(2.5, 8, 8) == 5


def test_fixed_setting_is_applied_and_restorable():
    before = torch.get_num_threads()
    try:
        assert ThreadPolicy(1).apply() == 1 and torch.get_num_threads() == 1
        assert ThreadPolicy(2, max_threads=2).apply() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_meter_sees_another_process_keep_a_core_busy():
    meter = CpuMeter()
    if meter.read() is None:
        pytest.skip("no CPU accounting on this OS")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        meter.read()
        time.sleep(1.0)
        assert meter.read() >= 0.5  # about one core, whatever else the machine does
    finally:
        busy.kill()
        busy.wait()


def test_auto_uses_what_is_left_and_session_reports_it():
    from mfruntime import Session

    before = torch.get_num_threads()
    try:
        policy = ThreadPolicy("auto", max_threads=usable_cores())
        assert 1 <= policy.apply() <= usable_cores()
        s = Session(threads=1)
        list(s.say("Hi."))
        st = s.stats()
        assert st.threads == 1 and st.threads_setting == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be"):
        Session(threads=0)


def test_fixed_threads_give_the_same_output_whatever_another_thread_set():
    """A fixed setting sets the thread count before every chunk, even when the calling thread's own reading
    already matches it: the BLAS thread count is process-wide, and another session may have changed it."""
    import threading

    import numpy as np

    from mfruntime import Session

    if usable_cores() < 2:
        pytest.skip("needs two cores to tell one thread from two")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        ref = list(Session(device="cpu", backend="eager", seed=4, threads=2).say("Threads, again."))
        torch.set_num_threads(1)  # as an auto session on a busy machine would, in this (another) thread
        out: list = []
        worker = threading.Thread(target=lambda: out.extend(
            Session(device="cpu", backend="eager", seed=4, threads=2).say("Threads, again.")))
        worker.start()
        worker.join()
        assert len(out) == len(ref)
        for a, b in zip(ref, out):
            assert np.array_equal(a.frames, b.frames) and np.array_equal(a.pcm, b.pcm)
    finally:
        torch.set_num_threads(before)
