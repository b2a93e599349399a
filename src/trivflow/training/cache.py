"""The compile cache of training: one rule, and the key that makes static inputs hashable.

The rule. A compiled function is built by a builder decorated with
``functools.lru_cache(maxsize=N)`` (bounded: at most N compiled functions stay alive) whose
arguments are the *static* inputs only — functions (the action), optimizers, sizes — while
everything numeric (flow parameters, prior ensembles, states) is an argument of the compiled
function. Static inputs that are objects enter the key as :class:`Static`, so the key is
hashable by construction: nothing is probed with ``hash`` and there is no fallback path.

Why a key at all: Python compares functions by identity, ``functools.partial`` objects too. A
fresh ``partial(phi4_action, beta=…, lam=…)`` per call — what a pipeline builds for each run —
would miss the cache every time, and every miss would keep a compiled function alive until it
is evicted. :class:`Static` compares a ``partial`` by value when its bound arguments are plain
scalars, so two equal actions share one compilation.
"""

from __future__ import annotations

import functools
import types
from typing import Any

#: Types whose values a :class:`Static` key compares (by type and ``repr``: exact for these,
#: and it keeps 0.0 and −0.0, 1 and 1.0 apart, which compile to different constants).
_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def _scalar_values(values) -> tuple:
    return tuple((type(v), repr(v)) for v in values)


def _key(obj: Any):
    """The comparison key of ``obj`` (see :class:`Static`); hashable for every ``obj``."""
    if isinstance(obj, functools.partial):
        names = tuple(sorted(obj.keywords))
        if all(isinstance(v, _SCALARS) for v in (*obj.args, *obj.keywords.values())):
            return ("partial", _key(obj.func), _scalar_values(obj.args), names,
                    _scalar_values(obj.keywords[k] for k in names))
    if isinstance(obj, types.MethodType):  # a bound method is a new object at every attribute access
        return ("method", _key(obj.__func__), id(obj.__self__))
    return ("object", id(obj))


class Static:
    """A static input (a function, an optimizer) as a hashable cache key.

    Two keys are equal when their values are the same object, the same bound method of the same
    object, or ``functools.partial`` objects of equal functions whose bound arguments are equal
    scalars (``partial(phi4_action, beta=0.5, lam=0.5)`` made twice). Anything else is compared
    by identity, never by its own ``__hash__`` (which may be missing or raise). The key holds
    ``value``, so an id in it is not reused while the key is alive.

    Attributes:
        value: the wrapped object (the cached builder uses this one).
    """

    __slots__ = ("value", "_k")

    def __init__(self, value: Any):
        self.value = value
        self._k = _key(value)

    def __hash__(self) -> int:
        return hash(self._k)

    def __eq__(self, other) -> bool:
        return isinstance(other, Static) and self._k == other._k

    def __repr__(self) -> str:
        return f"Static({self.value!r})"
