"""Optional dependencies: imported where they are used, so that the core install needs none of them.

``sacremoses`` (XLM's Moses pre-tokenisation) is the ``xlm`` extra, ``matplotlib`` (loss curves, benchmark
plots) the ``plots`` extra; a missing one raises an ImportError that names the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, user: str) -> ModuleType:
    """``import module`` for ``user`` (what needs it, named in the error); ImportError naming ``extra`` when the
    package is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        raise ImportError(f"{user} needs {package}: pip install 'jaxzoo[{extra}]'") from e


def pyplot(user: str) -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend (no display needed), for ``user``."""
    matplotlib = require("matplotlib", "plots", user)
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "plots", user)
