"""vidclip.store.deferral: lancedb is imported without its REST namespace client's API modules, and
the client still works for whoever asks for it."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = r"""
import sys, threading
from vidclip.store.store import Store

s = Store.open(sys.argv[1], create=True)
s.ensure_vector_tables(8)
api = sorted(m for m in sys.modules if m.startswith("lance_namespace_urllib3_client.api."))
print("api modules after opening a store:", len(api))
if sys.argv[2] == "deferred":
    import lance_namespace_urllib3_client as client

    # several threads asking at once all get the real package
    barrier, got = threading.Barrier(4), []
    def ask():
        barrier.wait()
        got.append(client.ApiClient)
    threads = [threading.Thread(target=ask) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(got) == 4 and len(set(got)) == 1, got
    from lance_namespace_urllib3_client import ApiClient, Configuration, TableApi

    assert client.__version__ and TableApi(ApiClient(Configuration(host="http://127.0.0.1:9")))
    assert not hasattr(client, "no_such_name")
    print("client works")
"""


def _run(tmp_path, name: str, mode: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "VIDCLIP_DEFER_NAMESPACE_CLIENT"}
    done = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / name), mode], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_store_opens_without_the_rest_client_api_modules_and_the_client_loads_when_asked(tmp_path):
    out = _run(tmp_path, "a", "deferred")
    assert "api modules after opening a store: 0" in out and "client works" in out


def test_the_deferral_can_be_turned_off(tmp_path):
    out = _run(tmp_path, "b", "eager", VIDCLIP_DEFER_NAMESPACE_CLIENT="0")
    n = int(out.split("api modules after opening a store:")[1].split()[0])
    assert n > 0  # lancedb's own import: every API module
