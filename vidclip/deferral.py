"""Third-party packages whose `__init__` imports far more than vidclip uses of them.

A deferred package is registered in `sys.modules` before anything imports it.  Its `__init__` runs
on the first attribute asked of it that it does not have, as importlib's LazyLoader does (LazyLoader
cannot be used: importing a submodule reads the package's `__path__`, which would run the `__init__`
at once).  Submodules import as usual without it, also when asked for by name (`from pkg import
sub`).  Anything else (`from torchvision.ops import nms`, `timm.create_model`) gets the real
package, whose `__init__` then runs in full.

- lancedb imports the generated REST client `lance_namespace_urllib3_client`, whose `__init__`
  imports every API module and wraps 366 functions in pydantic's `validate_call`: 0.69 of lancedb's
  1.48 CPU-s of import.  lancedb needs only its `models` submodule unless a REST namespace is used.
- open_clip imports `torchvision.transforms`, `torchvision.ops.misc` (one batch-norm class) and
  `timm.layers`.  torchvision's `__init__` imports every model, dataset and op, and its `roi_align`
  imports `torch._dynamo`; timm's imports all of its ~100 model families, some of which import
  `torch._dynamo` too.  A CLIP model built from open_clip's own towers uses none of it
  (docs/performance.md has the CPU this saves).

Set VIDCLIP_DEFER_IMPORTS=0 to import all of them as their importers do
(VIDCLIP_DEFER_NAMESPACE_CLIENT=0 turns off only the REST client's deferral).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types

CLIENT = "lance_namespace_urllib3_client"
# Parents before their subpackages.  torchvision.models and torchvision.ops are deferred too: the
# models import ops by attribute (`from ..ops import StochasticDepth`), and ops' __init__ imports roi_align.
VISION = (("torchvision", "torchvision.ops", "torchvision.models"), ("timm",))


class _DeferredPackage(types.ModuleType):
    """A package whose `__init__` runs when an attribute it does not have yet is asked for."""

    def __getattr__(self, name: str):
        state = self.__dict__.get("_vidclip_deferred")
        if state is not None:
            if not state.started and not name.startswith("__") and _is_submodule(self, name):
                return importlib.import_module(f"{self.__name__}.{name}")  # what `from pkg import sub` asks
            with state.lock:  # another thread's load is waited for; the loading thread re-enters
                if not state.started:
                    state.started = True  # first: the __init__ may ask for names while it runs
                    self.__spec__.loader.exec_module(self)
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _is_submodule(package: types.ModuleType, name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package.__name__}.{name}") is not None
    except (ImportError, ValueError):
        return False


def _enabled() -> bool:
    return os.environ.get("VIDCLIP_DEFER_IMPORTS") != "0"


def _defer(name: str) -> bool:
    """Register package `name` as deferred (its parent is imported or deferred already)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    module = _DeferredPackage(name)
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    module.__path__, module.__package__ = list(spec.submodule_search_locations), name
    module._vidclip_deferred = types.SimpleNamespace(started=False, lock=threading.RLock())
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # as the import system binds a loaded submodule
    return True


def defer_namespace_client() -> bool:
    """Register the REST client package as deferred, if lancedb is not imported yet; True if done."""
    if not _enabled() or os.environ.get("VIDCLIP_DEFER_NAMESPACE_CLIENT") == "0":
        return False
    if CLIENT in sys.modules or "lancedb" in sys.modules or "lance_namespace" in sys.modules:
        return False
    return _defer(CLIENT)


def defer_vision_packages() -> bool:
    """Register torchvision (with its ops and models) and timm as deferred, each where it and
    open_clip are not imported yet; True if anything was."""
    if not _enabled() or "open_clip" in sys.modules:
        return False
    done = False
    for group in VISION:
        if any(name in sys.modules for name in group):
            continue
        try:
            deferred = [_defer(name) for name in group]
        except (ImportError, ValueError):
            deferred = [False]
        if all(deferred):
            done = True
        else:  # missing, or not a package: nothing half-deferred
            for name in group:
                if isinstance(sys.modules.get(name), _DeferredPackage):
                    del sys.modules[name]
    return done
