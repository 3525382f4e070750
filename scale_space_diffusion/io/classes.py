"""The classes a checkpoint or ``config.json`` may name.

A file names its model and network classes by dotted path. A class is used when the caller passes it
(``model_class=`` / ``net_class=``), when its module is already imported (the user's own network, imported by
their script), or when it belongs to this package. A file never makes us import anything else: a module that is not
imported is refused, without importing it, unless the caller passes ``trust_remote_code=True`` (as Hugging Face's
loaders do). Every class must then satisfy the contract: a model is a ``DiffusionModule``, a network an
``nn.Module`` (and, once built, a ``DenoisingNetwork``: ``networks/contract.py``).
"""

from __future__ import annotations

import sys
from importlib import import_module

from torch import nn

from ..models.base import DiffusionModule

OURS = "scale_space_diffusion."


def resolve_class(path: str, kind: str, source: str, given: type | None = None, trust_remote_code: bool = False) -> type:
    """The class a file names by ``path`` ("model" or "network", for ``kind``), under the rules of the module
    docstring; ``given`` (the caller's class) wins. Refusals name ``source`` (the file) and the way out."""
    arg = "model_class" if kind == "model" else "net_class"
    if given is None:
        module, _, name = str(path).rpartition(".")
        if module not in sys.modules and not (module + ".").startswith(OURS) and not trust_remote_code:
            raise ValueError(f"{source} names the {kind} class {path}, whose module {module!r} is not imported, and "
                             f"a file does not make us import code; import {module} first, pass {arg}={name}, or "
                             "pass trust_remote_code=True if you trust the file")  # fmt: skip
        try:
            given = getattr(sys.modules.get(module) or import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"{source} names the {kind} class {path}, which cannot be found ({err}); pass "
                             f"{arg}=<the class>") from err  # fmt: skip
    base = DiffusionModule if kind == "model" else nn.Module
    if not (isinstance(given, type) and issubclass(given, base)):
        raise TypeError(f"{source}: the {kind} class {path} is {given!r}, not a subclass of {base.__name__}; "
                        f"pass {arg}=<a {base.__name__} subclass>")  # fmt: skip
    return given
