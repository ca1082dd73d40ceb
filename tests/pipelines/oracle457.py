"""transformers 4.57's pipelines, the reference for the tasks transformers 5.x removed (question answering,
summarization, ...), run in a subprocess beside the venv's transformers 5.x.

4.57 is installed once per machine with pip into a cache folder (``$JAXZOO_TRANSFORMERS_457`` or
~/.cache/jaxzoo/transformers-4.57; its own huggingface_hub < 1.0, tokenizers and requests there too, shadowing
the venv's; see PACKAGES),
and each ``run_457`` starts one subprocess with that folder first on PYTHONPATH: it builds
``transformers.pipeline(task, model=directory)`` and answers every call of the list as JSON, so a test pays for
one start and one model load however many calls it compares. torch comes from the venv.

A machine where pip cannot reach the registry fails the tests that need 4.57 (``Oracle457Error``), never skips
them: a missing reference must show.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "4.57"
REQUIREMENT = f"transformers=={VERSION}.*"
# What 4.57 needs that the venv lacks or has at versions 4.57 refuses (its import checks huggingface_hub < 1.0
# and tokenizers <= 0.23.0; requests is gone from huggingface_hub 1.x's dependencies). Installed without
# resolving the rest (numpy, torch, safetensors, regex, pyyaml, ... come from the venv): 20 s instead of 90.
PACKAGES = (REQUIREMENT, "huggingface_hub>=0.34,<1.0", "tokenizers>=0.22,<=0.23.0", "requests",
            "charset_normalizer", "idna", "urllib3", "certifi")
COMPLETE = ".complete"  # written last inside the install folder: a folder without it was never finished


class Oracle457Error(RuntimeError):
    """transformers 4.57 could not be installed or run (the message says why and what to do)."""


def cache_dir() -> Path:
    return Path(os.environ.get("JAXZOO_TRANSFORMERS_457", "~/.cache/jaxzoo/transformers-4.57")).expanduser()


@functools.lru_cache(maxsize=None)
def install() -> Path:
    """The folder holding transformers 4.57 and its dependencies, pip-installed there on first use.

    pip writes into a temporary sibling renamed into place when complete, so a killed install never leaves a
    half folder; two processes installing at once both finish and the first rename wins."""
    target = cache_dir()
    if (target / COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
           "--no-deps", "--target", str(partial), *PACKAGES]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise Oracle457Error(f"could not install {REQUIREMENT} (the reference of the tasks transformers 5.x "
                             f"removed) into {target}: `{' '.join(cmd)}` exited {done.returncode}; needs the "
                             f"package registry once per machine.\n{done.stderr[-3000:]}")
    (partial / COMPLETE).write_text(REQUIREMENT + "\n")
    try:
        partial.rename(target)
    except OSError:  # another process finished first (or a stale unfinished folder is there)
        if not (target / COMPLETE).is_file():
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        else:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def call(*args, **kwargs) -> dict:
    """One pipeline call, ``pipe(*args, **kwargs)``, for ``run_457``'s list (JSON-serialisable values only)."""
    return {"args": list(args), "kwargs": kwargs}


# Runs inside the subprocess: reads {"version", "jobs": [{"task", "directory", "calls"}]} on stdin, writes one
# {"load_messages", "results": [{"result": ...} or {"error": "TypeName: message"}]} per job on stdout.
_SCRIPT = r"""
import io, json, logging, sys, warnings
request = json.load(sys.stdin)
import numpy as np
import transformers
if not transformers.__version__.startswith(request["version"] + "."):
    raise SystemExit(f"expected transformers {request['version']}.x on PYTHONPATH, imported "
                     f"{transformers.__version__} from {transformers.__file__}")
import torch

def plain(value):
    if isinstance(value, (np.generic, torch.Tensor)) and value.ndim == 0:
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"cannot send {type(value).__name__}")

def run(job):
    torch.manual_seed(0)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    transformers.utils.logging.get_logger("transformers").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe = transformers.pipeline(job["task"], model=job["directory"], device="cpu")
    finally:
        transformers.utils.logging.get_logger("transformers").removeHandler(handler)
    messages = [line for line in log.getvalue().splitlines() if line.strip()] + [str(w.message) for w in caught]
    results = []
    for c in job["calls"]:
        try:
            results.append({"result": pipe(*c["args"], **c["kwargs"])})
        except BaseException as e:  # tokenizers' Rust panics are BaseExceptions: record them as errors too
            if isinstance(e, KeyboardInterrupt):
                raise
            results.append({"error": f"{type(e).__name__}: {e}"})
    return {"load_messages": messages, "results": results}

out = {"version": transformers.__version__, "jobs": [run(job) for job in request["jobs"]]}
sys.stdout.write("\n@@ORACLE457@@\n" + json.dumps(out, default=plain))
"""


def job(task: str, directory, calls: list[dict]) -> dict:
    """One pipeline for ``run_457_jobs``: ``pipeline(task, model=directory)`` over ``calls`` (made with ``call``)."""
    return {"task": task, "directory": str(directory), "calls": calls}


def run_457_jobs(jobs: list[dict], timeout: float = 600) -> list[dict]:
    """transformers 4.57 over several ``job``s in ONE subprocess (one import of transformers and torch). Returns
    one {"load_messages" (warnings and log lines while loading), "results": one {"result": output} or
    {"error": "TypeName: message"} per call} per job; Oracle457Error when 4.57 cannot be installed or run."""
    folder = install()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "HF_", "PYTHON"))}
    env.update(PYTHONPATH=str(folder), HF_HUB_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
               TOKENIZERS_PARALLELISM="false")
    request = json.dumps({"version": VERSION, "jobs": jobs})
    done = subprocess.run([sys.executable, "-c", _SCRIPT], input=request, capture_output=True, text=True, env=env,
                          timeout=timeout)
    marker = "\n@@ORACLE457@@\n"
    if done.returncode != 0 or marker not in done.stdout:
        tasks = [(j["task"], j["directory"]) for j in jobs]
        raise Oracle457Error(f"transformers {VERSION} pipelines {tasks} failed (exit {done.returncode}):\n"
                             f"{done.stderr[-4000:]}")
    out = json.loads(done.stdout.rsplit(marker, 1)[1])
    if not out["version"].startswith(VERSION + "."):
        raise Oracle457Error(f"expected transformers {VERSION}.x in the subprocess, got {out['version']}")
    return out["jobs"]


def run_457(task: str, directory, calls: list[dict], timeout: float = 600) -> dict:
    """``run_457_jobs`` of one pipeline."""
    return run_457_jobs([job(task, directory, calls)], timeout)[0]


def results_457(task: str, directory, calls: list[dict]) -> list:
    """Each call's output; Oracle457Error naming the call when 4.57 raised."""
    outcome = run_457(task, directory, calls)
    return [result_of(c, r) for c, r in zip(calls, outcome["results"])]


def result_of(c: dict, outcome: dict):
    """The output of call ``c`` from its outcome; Oracle457Error with 4.57's error when it raised."""
    if "error" in outcome:
        raise Oracle457Error(f"transformers {VERSION} raised on {c!r:.300}: {outcome['error']}")
    return outcome["result"]
