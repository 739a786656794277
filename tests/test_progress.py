"""The ingest progress bar on a terminal: videos done out of the total, frames/s and an ETA, on
stderr only (stdout keeps the JSON), its rates counted from the first decoded video, so files
skipped as already ingested (or a runner's start-up) do not make the ETA lie."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from conftest import LIBRARY_SPECS
from test_cli import TINY_ARGS, run


def _ingest_on_a_terminal(args, env) -> tuple[str, str]:
    """Run `vidclip ingest` with stderr on a pseudo-terminal; (stdout, what the terminal showed)."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a real terminal has a size
    proc = subprocess.Popen([sys.executable, "-m", "vidclip", "ingest", *args], stdout=subprocess.PIPE,
                            stderr=child, env=env)
    os.close(child)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out = proc.communicate(timeout=300)[0]
    os.close(main)
    assert proc.returncode == 0, shown.decode(errors="replace")
    return out.decode(), shown.decode(errors="replace")


def test_progress_counts_from_the_first_decoded_video(tmp_path, videos, cli_env):
    db = tmp_path / "db"
    common = ["--db", str(db), *TINY_ARGS, "--fps", "2", "--clip-seconds", "2", "--local"]
    run(["ingest", str(videos / "sub"), *common, "--json"], cli_env)  # skipped by the next run
    env = {k: v for k, v in cli_env.items() if k != "TQDM_DISABLE"}  # CI and the fixture turn tqdm off
    out, shown = _ingest_on_a_terminal([str(videos), *common], env)
    n = len(LIBRARY_SPECS)
    assert out.startswith(f"ingested {n - 1} video(s), 0 failed, 1 skipped"), out  # stdout: the summary only
    bars = re.findall(r"(\d+)/(\d+) \[[^\]<]*<[^\]]*\]", shown)
    assert bars and bars[-1] == (str(n), str(n)), shown  # videos done / total [elapsed<ETA, rate]
    assert re.search(r"ok=\d+ failed=0 [\d.]+ frames/s", shown), shown
    # the skipped file ticks first, before any video was decoded: that state (when tqdm draws it)
    # shows no rate yet
    states = [s for s in shown.split("\r") if re.search(r"\d+/\d+ \[", s)]
    assert all("frames/s" not in s for s in states if re.search(r"\b1/%d \[" % n, s)), states
