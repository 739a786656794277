"""lancedb without the cost of a client vidclip never calls.

`import lancedb` imports `lance_namespace`, which imports the generated REST client package
`lance_namespace_urllib3_client`.  That package's `__init__` imports every API module, whose 366
functions are wrapped in pydantic's `validate_call` when imported: 0.69 of lancedb's 1.48 CPU-s of
import time on this project's 2-core machine, paid by every vidclip process that opens a store
(`vidclip status`, an ingest, each Ray worker).  lancedb itself only needs the package's `models`
submodule unless a REST namespace is connected.

`defer_namespace_client()` registers the package as a module whose `__init__` runs on the first
attribute asked of it, as importlib's LazyLoader does (LazyLoader cannot be used here: importing a
submodule reads the package's `__path__`, which would run the `__init__` at once).  Submodules
still import as usual.  Anything that touches the package itself (`from
lance_namespace_urllib3_client import ApiClient`) gets the real one.  Set
VIDCLIP_DEFER_NAMESPACE_CLIENT=0 to import it as lancedb does.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types

CLIENT = "lance_namespace_urllib3_client"


class _DeferredPackage(types.ModuleType):
    """A package whose `__init__` runs when an attribute it does not have yet is asked for."""

    def __getattr__(self, name: str):
        state = self.__dict__.get("_vidclip_deferred")
        if state is not None:
            with state.lock:  # another thread's load is waited for; the loading thread re-enters
                if not state.started:
                    state.started = True  # first: the __init__ may ask for names while it runs
                    self.__spec__.loader.exec_module(self)
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def defer_namespace_client() -> bool:
    """Register the REST client package as deferred, if lancedb is not imported yet; True if done."""
    if os.environ.get("VIDCLIP_DEFER_NAMESPACE_CLIENT") == "0":
        return False
    if CLIENT in sys.modules or "lancedb" in sys.modules or "lance_namespace" in sys.modules:
        return False
    spec = importlib.util.find_spec(CLIENT)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    module = _DeferredPackage(CLIENT)
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    module.__path__, module.__package__ = list(spec.submodule_search_locations), CLIENT
    module._vidclip_deferred = types.SimpleNamespace(started=False, lock=threading.RLock())
    sys.modules[CLIENT] = module
    return True
