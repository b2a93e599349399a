"""Errors of the library that name its parameters, so that an application can name its own keys.

A library function refuses a value with :class:`ParameterError`, whose message names the
parameters as the library spells them (``num_steps must be a positive integer, got
num_steps=0``). The application, which knows where each parameter came from, renames them to its
config keys (:func:`trivflow.app.config.config_keys`: ``sampler.num_steps must be a positive
integer, got num_steps=0``). The library itself never mentions a config key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class ParameterError(ValueError):
    """A parameter value the library cannot take.

    Args:
        template: the message, with ``{name}`` where a parameter's *name* is written (its value
            is written out already), e.g. ``"{num_steps} must be a positive integer, got num_steps=0"``.
        names: the parameters named in ``template``. Other braces are left alone.

    ``str(err)`` names the library parameters; :meth:`renamed` names other keys.
    """

    def __init__(self, template: str, *names: str):
        self.template, self.names = template, names
        super().__init__(self.renamed({}))

    def renamed(self, keys: Mapping[str, str]) -> str:
        """The message with each parameter ``p`` named ``keys.get(p, p)``."""
        return _PLACEHOLDER.sub(lambda m: keys.get(m[1], m[1]) if m[1] in self.names else m[0], self.template)


def must_be(name: str, value, requirement: str) -> ParameterError:
    """``{name} must be {requirement}, got name=value`` (the library's usual message)."""
    return ParameterError(f"{{{name}}} must be {requirement}, got {name}={value!r}", name)
