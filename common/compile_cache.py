"""A persistent XLA compilation cache, so that a second process with the same model and shapes starts warm.

JAX can write every compiled program to a directory and read it back in a later process instead of compiling
(``jax_compilation_cache_dir``). ``enable()`` turns that on for this project's pipelines and jobs:

    directory: the argument, else $JAXZOO_COMPILE_CACHE, else $XDG_CACHE_HOME/jaxzoo/xla (~/.cache/jaxzoo/xla);
    JAXZOO_COMPILE_CACHE=off (or 0, false, none) turns it off for the process.

A cache directory the user already gave JAX (``jax.config.update("jax_compilation_cache_dir", ...)`` or
JAX_COMPILATION_CACHE_DIR) is kept as it is. Every program is written, however fast it compiled (JAX's own
default skips those under a second, which is most of a small model's), since a cold start is the sum of all of
them. The directory is trusted code: do not point it at a folder others can write to.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "JAXZOO_COMPILE_CACHE"
OFF = ("off", "0", "false", "none", "no")


def default_directory() -> Path | None:
    """$JAXZOO_COMPILE_CACHE (None when it says off), else the user's cache folder's jaxzoo/xla."""
    given = os.environ.get(ENV)
    if given is not None:
        return None if given.strip().lower() in OFF or not given.strip() else Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(base) / "jaxzoo" / "xla"


def enable(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn JAX's persistent compilation cache on at ``directory`` (default: ``default_directory()``); returns
    the directory in use, or None when it is off. A directory already set in JAX's config wins over the
    default (not over an explicit ``directory``)."""
    import jax

    current = jax.config.jax_compilation_cache_dir
    if directory is None:
        if current:
            return Path(current)
        directory = default_directory()
        if directory is None:
            return None
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"compile cache: cannot create {path} ({e.strerror}); pass another directory or set "
                         f"{ENV}=off") from None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def resolve(option) -> Path | None:
    """A ``compile_cache=`` argument: True / None (the default directory), False (leave JAX as it is), or a
    directory; returns the directory in use (None: no persistent cache)."""
    if option is False:
        return None
    if option is None or option is True:
        return enable()
    if isinstance(option, (str, os.PathLike)):
        return enable(option)
    raise ValueError(f"compile_cache: expected True, False, None or a directory, got {option!r}")
