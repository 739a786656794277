"""Fault injection for the decode sandbox (the only mocks in the suite).

A decode job that misbehaves like a broken native decoder when the file name says so,
and otherwise runs vidclip's real decode job.  Used through DecodeConfig(job="faults:decode_job").
"""

import ctypes
import os
import signal
import time

from vidclip.ingest import decode_job as real_decode_job


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
