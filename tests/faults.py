"""Fault injection for the decode sandbox (the only mocks in the suite).

A decode job that misbehaves like a broken native decoder when the file name says so,
and otherwise runs vidclip's real decode job.  Used through DecodeConfig(job="faults:decode_job").
"""

import ctypes
import os
import signal
import time

from vidclip.ingest.video import decode_job as real_decode_job


def _meet(name: str) -> None:
    """A rendezvous of decode jobs: each registers in $VIDCLIP_TEST_MEET_DIR, then waits (at most
    60 s) until $VIDCLIP_TEST_MEET_N have registered; a job that saw them all leaves a `met-` file.
    Only decode jobs running at the same time can all meet."""
    root = os.environ["VIDCLIP_TEST_MEET_DIR"]
    want = int(os.environ["VIDCLIP_TEST_MEET_N"])
    open(os.path.join(root, f"in-{name}"), "w").close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(f.startswith("in-") for f in os.listdir(root)) >= want:
            open(os.path.join(root, f"met-{name}"), "w").close()
            return
        time.sleep(0.05)


def decode_job(path, sampling, decode, geometry):
    name = os.path.basename(str(path))
    if "hang" in name:
        time.sleep(3600)  # a decoder stuck forever (never returns, never delivers)
    if "segv" in name:
        ctypes.string_at(0)  # a real segmentation fault in native code
    if "abort" in name:
        os.abort()  # a native library calling abort()
    if "slow" in name:
        time.sleep(float(os.environ.get("VIDCLIP_TEST_SLOW_S", "0.5")))  # a slow decode: keeps a job busy
    if "meet" in name:
        _meet(name)  # waits until $VIDCLIP_TEST_MEET_N decode jobs run at once
    if "sigstop" in name:
        for i, message in enumerate(real_decode_job(path, sampling, decode, geometry)):
            if i == 2:  # after the facts and one chunk: stopped mid-video (kill -STOP), never resumed
                os.kill(os.getpid(), signal.SIGSTOP)
            yield message
        return
    if "midway" in name:
        for i, message in enumerate(real_decode_job(path, sampling, decode, geometry)):
            if i == 2:  # after the facts and one chunk of frames
                ctypes.string_at(0)
            yield message
        return
    yield from real_decode_job(path, sampling, decode, geometry)
