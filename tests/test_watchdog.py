"""No stall is silent (vidclip/ingest/watchdog.py): a job without progress fails with one line saying what
it waited for and what it committed, and the next run resumes.  The stall is injected with the
decode fault job (a decoder that never answers, its own timeout set longer than the stall's)."""

from __future__ import annotations

import re
import shutil
import time

import pytest

import vidclip
from conftest import SAMPLING, TINY
from vidclip.ingest.committer import CommitPolicy
from vidclip.config import DecodeConfig
from vidclip.errors import StallError
from vidclip.ingest.watchdog import StallWatchdog

STUCK = DecodeConfig(job="faults:decode_job", timeout_s=3600.0)


def _with_hang(videos):
    shutil.copy(videos / "h264_320x240.mp4", videos / "zz_hang.mp4")  # sorted last: the others commit first
    with open(videos / "zz_hang.mp4", "ab") as fh:
        fh.write(b"distinct")


def test_watchdog_interrupts_a_blocked_main_thread():
    import threading

    dog = StallWatchdog(1.0, lambda: "a lock that is never released", lambda: "nothing")
    never = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(StallError, match="no progress for .*waiting for a lock that is never released; nothing committed"):
        with dog:
            never.wait()  # blocks in C: only a real signal to the main thread wakes it
    assert time.monotonic() - t0 < 60


def test_an_interrupt_swallowed_by_the_waiting_code_is_sent_again(monkeypatch):
    """A library that catches the first KeyboardInterrupt and waits on (as a Ray job once did,
    for 10 minutes) still ends in the StallError: the watchdog interrupts until the block exits."""
    import queue

    from vidclip.ingest import watchdog

    monkeypatch.setattr(watchdog, "REPEAT_S", 1.0)
    dog = StallWatchdog(1.0, lambda: "results that never come", lambda: "nothing")
    swallowed = []
    t0 = time.monotonic()
    with pytest.raises(StallError, match="waiting for results that never come"):
        with dog:
            try:
                queue.Queue().get()  # the first interrupt lands here ...
            except KeyboardInterrupt:
                swallowed.append(time.monotonic())  # ... and is swallowed
            queue.Queue().get(timeout=20)  # a second wait, woken only by the repeated interrupt
    assert len(swallowed) == 1 and dog.interrupts == 2
    assert time.monotonic() - t0 < 60


def test_a_job_started_with_sigint_ignored_still_reports_its_stall():
    """Background jobs (`vidclip ingest ... &`, nohup) inherit SIGINT ignored; the watchdog's
    interrupt must still end the stall in one line, and an outside SIGINT stays ignored."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, queue, signal, sys, time\n"
        "from vidclip.ingest.watchdog import StallWatchdog\n"
        "from vidclip.errors import StallError\n"
        "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
        "dog = StallWatchdog(2.0, lambda: 'a result', lambda: 'nothing')\n"
        "try:\n"
        "    with dog:\n"
        "        os.kill(os.getpid(), signal.SIGINT)  # an outside Ctrl-C: still ignored\n"
        "        queue.Queue().get(timeout=60)\n"
        "except StallError as exc:\n"
        "    print('STALL', exc); sys.exit(3)\n"
        "print('NO STALL')\n"
    )
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith("STALL no progress for") and time.monotonic() - t0 < 50


def test_start_up_allowance_then_the_stall_timeout():
    import threading

    with StallWatchdog(1.0, lambda: "x", lambda: "y", first_s=20.0) as dog:
        threading.Event().wait(3.0)  # past stall_s but well within the start-up allowance
        assert dog.message is None
        dog.tick()
        with pytest.raises(KeyboardInterrupt):
            threading.Event().wait(30)  # after the first progress, stall_s applies
    # (the KeyboardInterrupt was caught inside the block, so __exit__ saw a clean exit)
    assert dog.message is not None and "no progress for" in dog.message


def test_start_up_allowance_ends_when_the_job_stops_starting():
    import threading

    lost = threading.Event()
    t0 = time.monotonic()
    with StallWatchdog(1.0, lambda: "a lost node", lambda: "y", first_s=600.0, starting=lambda: not lost.is_set()) as dog:
        threading.Event().wait(3.0)  # past stall_s, still starting: the allowance holds
        assert dog.message is None
        lost.set()  # e.g. a node of the cluster died before the first result
        with pytest.raises(KeyboardInterrupt):
            threading.Event().wait(60)
    assert time.monotonic() - t0 < 60  # not the 600 s allowance
    assert "waiting for a lost node" in dog.message


def test_questions_that_never_answer_do_not_silence_the_watchdog(monkeypatch):
    """A cluster that stops answering: asking whether the job is still starting, or what it waits
    for, blocks for good (seen with ray.nodes() in a loaded two-node run).  The watchdog still fires."""
    import threading

    from vidclip.ingest import watchdog

    monkeypatch.setattr(watchdog, "ASK_S", 1.0)
    never = threading.Event()

    def blocks():
        never.wait()

    t0 = time.monotonic()
    with StallWatchdog(1.0, blocks, lambda: "nothing", first_s=600.0, starting=blocks) as dog:
        with pytest.raises(KeyboardInterrupt):
            threading.Event().wait(60)
    assert time.monotonic() - t0 < 60  # not the 600 s start-up allowance, not forever
    assert "waiting for unknown (no answer within 1s)" in dog.message


def test_watchdog_stays_quiet_while_there_is_progress():
    with StallWatchdog(20.0, lambda: "x", lambda: "y") as dog:
        for _ in range(50):
            time.sleep(0.1)
            dog.tick()
    assert dog.message is None


def test_in_process_stall_is_one_error_and_the_rerun_resumes(tmp_path, videos):
    _with_hang(videos)
    lib = vidclip.open(tmp_path / "db", model=TINY)
    with pytest.raises(StallError) as err:
        lib.ingest([videos], SAMPLING, decode=STUCK, progress=False, stall_s=20.0, commit=CommitPolicy(max_videos=1))
    text = str(err.value)
    assert "zz_hang.mp4" in text and "rerun the same command to resume" in text
    n = int(re.search(r"; (\d+) video\(s\) of this run committed and kept", text).group(1))
    assert n >= 3  # the good videos before the stuck one (the last may still wait in the encoder queue)
    assert lib.store.count("videos", "status = 'ok'") == n  # the message tells the truth
    # the rerun skips what was committed; the stuck file is now given a decode timeout that fires
    report = lib.ingest([videos], SAMPLING, decode=DecodeConfig(job="faults:decode_job", timeout_s=2.0), progress=False)
    assert report.skipped == n and report.ok == 4 - n
    assert report.failed == 1 and "timed out" in report.failures[0]["error"]


@pytest.mark.ray
@pytest.mark.slow
def test_ray_stall_names_what_it_waits_for(tmp_path, videos, monkeypatch):
    import os
    import threading

    from pipelines.options import JobOptions

    tests = os.path.dirname(os.path.abspath(__file__))  # Ray workers import the fault job from here
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))

    _with_hang(videos)
    lib = vidclip.open(tmp_path / "db", model=TINY)
    before = set(threading.enumerate())  # (other tests leave watchdog questions that never return)
    with pytest.raises(StallError, match=r"waiting for results for \d+ video\(s\) from the Ray pipeline"):
        lib.ingest([videos], SAMPLING, decode=STUCK, progress=False, stall_s=30.0,
                   ray=JobOptions(decode_workers=1, batch_size=8), commit=CommitPolicy(max_videos=1))
    # Nothing that calls into Ray outlives the job's Ray session: a Ray Data thread (or a watchdog
    # question) that did ended a loaded test run's whole pytest process (Ray's core exits the
    # process when it is called after ray.shutdown()).
    left = [t.name for t in set(threading.enumerate()) - before
            if t.is_alive() and (type(t).__module__.startswith("ray.data")
                                 or t.name in ("vidclip-ray-batches", "vidclip-watchdog-ask", "vidclip-watchdog",
                                               "Prefetcher", "iter_threaded", "ray-data-metadata-prefetch"))]
    assert left == []


def test_a_lost_ctrl_c_stops_the_job_at_its_next_progress(tmp_path, videos):
    """The command line's Ctrl-C whose KeyboardInterrupt a library swallowed (a loaded run saw one
    land while torch was imported, and the ingest went on to its end): the stop it recorded makes
    the job's next progress tick raise it again, the runner stops there, and a rerun completes."""
    from vidclip.ingest import watchdog

    lib = vidclip.open(tmp_path / "db", model=TINY)
    watchdog.request_stop()  # what vidclip.cli.interrupt records with every SIGINT
    try:
        with pytest.raises(KeyboardInterrupt):
            lib.ingest([videos], SAMPLING, progress=False)
    finally:
        watchdog.clear_stop()
    report = lib.ingest([videos], SAMPLING, progress=False)
    assert report.ok == 4 and report.skipped == 0 and report.failed == 0  # the stopped run committed nothing


def test_the_command_line_records_a_stop_with_every_sigint_and_clears_it():
    import signal

    from vidclip.cli import interrupt
    from vidclip.ingest import watchdog

    with interrupt.handling():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert interrupt.requested() and watchdog._stop.is_set()
    assert not watchdog._stop.is_set()  # the next command (or a library user) starts clean
