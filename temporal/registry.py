"""Name -> aggregator class, and the one error type of the temporal package.

An aggregator registers itself with `@register("name")`; `temporal/__init__.py` imports
every aggregator module, so `names()` and `build()` see all of them once `temporal` is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

_AGGREGATORS: dict[str, type[nn.Module]] = {}


class TemporalError(ValueError):
    """A user mistake: all-padded clip, unknown module name, bad hparams, wrong checkpoint."""


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make an aggregator buildable by `name`."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _AGGREGATORS:
            raise RuntimeError(f"temporal module {name!r} registered twice")
        cls.name = name
        _AGGREGATORS[name] = cls
        return cls

    return add


def names() -> list[str]:
    """Registered aggregator names, sorted."""
    return sorted(_AGGREGATORS)


def build(name: str, dim: int, **hparams) -> nn.Module:
    """A freshly initialised aggregator `name` over D=`dim` vectors; `hparams` override its defaults."""
    if name not in _AGGREGATORS:
        raise TemporalError(f"unknown temporal module {name!r}; choose one of {names()}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise TemporalError(f"temporal module dim must be a positive int, got {dim!r}")
    return _AGGREGATORS[name](dim, **hparams)



def parse_hparams(config_cls: type, name: str, hparams: dict):
    """`config_cls(**hparams)`, with a one-line TemporalError naming the allowed keys on a typo."""
    allowed = sorted(f.name for f in dataclasses.fields(config_cls))
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise TemporalError(f"temporal module {name!r} has no hparam(s) {unknown}; allowed: {allowed}")
    return config_cls(**hparams)
