"""Training checkpoints: an Orbax ``CheckpointManager`` over a :class:`~common.train.TrainState` plus a small
JSON metadata dict (config, data position, ...), with resume that never uses a torn checkpoint.

    ckpt = Checkpointer("runs/x/checkpoints", max_to_keep=3)
    if ckpt.latest_step() is not None:
        step, state, meta = ckpt.restore(jax.eval_shape(lambda: init_train_state(params, tx, key)))
    ...
    ckpt.save(step, state, metadata={"data_position": pos})   # returns while the write goes on
    ckpt.close()                                              # or `with Checkpointer(...) as ckpt:`

Layout of the directory (all written by Orbax)::

    <step>/                          a committed checkpoint (no prefix, no zero padding: "7", "1200")
        _CHECKPOINT_METADATA         Orbax step metadata; commit_timestamp_nsecs is set at commit
        commit_success.txt           Orbax's commit marker
        state/                       the TrainState: StandardSave (OCDBT + zarr), written shard by shard
        metadata/metadata            the JSON metadata
    <step>.orbax-checkpoint-tmp/     a save in flight, or one killed mid-write: never read

How Orbax (0.12.8) commits a step on a local filesystem (``AtomicRenameTemporaryPath``): everything is written
into ``<step>.orbax-checkpoint-tmp/``; at finalize it sets ``commit_timestamp_nsecs`` in
``_CHECKPOINT_METADATA``, writes ``commit_success.txt`` and then renames the directory to ``<step>`` (one atomic
``rename``). Orbax lists a step by its directory name alone (a name of digits, without the tmp suffix). A
temporary directory is ignored by listing; Orbax only deletes one when the same step is saved again (or, with
``cleanup_tmp_directories``, when a manager is created). On object stores (``gs://``) there is no rename: the
step is written in place and ``commit_success.txt`` alone marks it finished.

What this module calls complete, on top of that:

1. Structure (checked by :meth:`Checkpointer.all_steps` / :meth:`latest_step`, cheap): a ``<step>`` directory
   with the commit marker, a ``_CHECKPOINT_METADATA`` with a commit timestamp, a parseable ``state/_METADATA``,
   the OCDBT manifest ``state/manifest.ocdbt`` and a parseable ``metadata/metadata``. A committed directory can
   still be torn: Orbax deletes old steps (``max_to_keep``) with a plain recursive delete, so a kill during
   that leaves a half-deleted ``<step>``, and disks, copies and quotas truncate files.
2. Data (checked by :meth:`Checkpointer.restore`): the step is actually read, first the tree and array
   metadata (``_METADATA`` and each array's zarr metadata, from the OCDBT b-tree), then every array; any
   error that reading raises (missing or truncated OCDBT files, bad JSON, ...: Orbax reads with
   ``fill_missing_data_reads=False``, so missing data fails loudly instead of coming back as zeros) marks
   the step unusable, and the object remembers it. A target that does not fit the checkpoint (other model
   config or optimizer) is told apart beforehand by comparing leaf paths and shapes with the saved tree
   metadata, and raises at once instead of falling back.

Single writer: only one job saves into a directory. Readers (an eval job) may restore concurrently;
:meth:`restore` never modifies the directory. :meth:`save` is where cleanup happens: it first renames unusable
step directories to ``<step>.unusable-<ns>`` (kept for inspection, listed by nothing) and deletes temporary
directories left by interrupted saves.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import multihost
from orbax.checkpoint import tree as ocp_tree

from common.files import read_json

try:  # Orbax's own names for its on-disk markers (private module; the literals are the fallback).
    from orbax.checkpoint._src.path.atomicity_types import COMMIT_SUCCESS_FILE, TMP_DIR_SUFFIX
except ImportError:  # pragma: no cover
    COMMIT_SUCCESS_FILE, TMP_DIR_SUFFIX = "commit_success.txt", ".orbax-checkpoint-tmp"
try:  # how Orbax names a target leaf when matching it against the saved tree
    from orbax.checkpoint._src.tree.utils import tuple_path_from_keypath
except ImportError:  # pragma: no cover
    def tuple_path_from_keypath(keypath) -> tuple[str, ...]:
        return tuple(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in keypath)

log = logging.getLogger(__name__)

STATE_ITEM = "state"
METADATA_ITEM = "metadata"
STEP_METADATA_FILE = "_CHECKPOINT_METADATA"
# Orbax's standard step name without prefix or padding: "0" or digits without a leading zero.
_STEP_NAME = re.compile(r"0|[1-9][0-9]*")


# ------------------------------------------------------------------------------------ directory checks
def structural_problem(step_dir: str | os.PathLike) -> str | None:
    """Why the committed-looking directory ``step_dir`` is not a complete checkpoint, or None if it is.

    Only looks at the files Orbax writes last or that a restore cannot do without; the data itself is
    verified by reading it (:meth:`Checkpointer.restore`).
    """
    d = Path(step_dir)
    if not (d / COMMIT_SUCCESS_FILE).is_file():
        return f"its commit marker {COMMIT_SUCCESS_FILE} is missing (never committed, or partly deleted)"
    try:
        step_meta = read_json(d / STEP_METADATA_FILE, expect=None)
    except FileNotFoundError:
        return f"{STEP_METADATA_FILE} is missing"
    except (OSError, ValueError) as e:
        return f"{STEP_METADATA_FILE} is unreadable ({type(e).__name__}: {e})"
    if not isinstance(step_meta, dict) or step_meta.get("commit_timestamp_nsecs") is None:
        return f"{STEP_METADATA_FILE} has no commit timestamp (the save did not finish)"
    for rel in (f"{STATE_ITEM}/_METADATA", f"{METADATA_ITEM}/{METADATA_ITEM}"):
        try:
            read_json(d / rel, expect=None)
        except FileNotFoundError:
            return f"{rel} is missing"
        except (OSError, ValueError) as e:
            return f"{rel} is unreadable ({type(e).__name__}: {e})"
    manifest = d / STATE_ITEM / "manifest.ocdbt"
    if not manifest.is_file() or manifest.stat().st_size == 0:
        return f"{STATE_ITEM}/manifest.ocdbt (the array store's manifest) is missing or empty"
    return None


def _scan(directory: Path) -> tuple[dict[int, Path], list[Path]]:
    """({step: dir} of committed-looking step directories, [temporary directories of unfinished saves])."""
    steps, tmps = {}, []
    if not directory.is_dir():
        return steps, tmps
    for p in directory.iterdir():
        if not p.is_dir() or p.is_symlink():
            continue
        if TMP_DIR_SUFFIX in p.name:
            tmps.append(p)
        elif _STEP_NAME.fullmatch(p.name):
            steps[int(p.name)] = p
    return steps, sorted(tmps)


def _short(e: BaseException) -> str:
    """An exception in one line, with its cause: TensorStore errors carry pages of spec JSON."""
    def line(x: BaseException) -> str:
        text = str(x).strip()
        text = text.splitlines()[0] if text else ""
        for junk in (" See full TensorStore details", " [tensorstore_spec="):
            text = text.split(junk)[0]
        text = text if len(text) <= 300 else text[:300] + "..."
        return f"{type(x).__name__}: {text}"

    # Orbax wraps the TensorStore error ("Encountered error while reading array index ..."); the cause
    # names the key and what is wrong with the file.
    cause = e.__cause__
    return line(e) + (f" <- {line(cause)}" if cause is not None else "")


class _AbandonedReadsSilenced:
    """While Orbax reads a checkpoint: silence the noise its failed reads make (only that).

    When one array of a restore fails to read, Orbax abandons the other reads. TensorStore operations still
    in flight then complete into the event loop Orbax has closed (each prints "Exception ignored ...
    RuntimeError: Event loop is closed", from TensorStore's threads, at once), and the abandoned coroutines
    sit in reference cycles until the garbage collector finalizes them, each printing "Exception ignored in:
    <coroutine _read_array_index_and_device_put>" and a page of TensorStore spec, at any later time. The
    failure is reported once, by our message; :meth:`settle` lets the in-flight reads finish and collects
    the coroutines while the filter is still installed.
    """

    def __init__(self):
        self._orbax_dir = os.path.dirname(ocp.__file__)
        self._previous = None

    def _hook(self, args):
        code = getattr(args.object, "cr_code", None)
        if code is not None and code.co_filename.startswith(self._orbax_dir):
            return
        if args.object is None and isinstance(args.exc_value, RuntimeError) and "Event loop is closed" in str(
                args.exc_value):
            return
        self._previous(args)

    def __enter__(self) -> "_AbandonedReadsSilenced":
        self._previous = sys.unraisablehook
        sys.unraisablehook = self._hook
        return self

    def settle(self, seconds: float = 0.05) -> None:
        """After a failed read (outside the except block, whose traceback keeps the coroutines alive)."""
        gc.collect()
        time.sleep(seconds)
        gc.collect()

    def __exit__(self, *exc) -> None:
        sys.unraisablehook = self._previous


def _check_step(step) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"checkpoint step {step!r} is invalid: expected a non-negative integer")
    return int(step)


# --------------------------------------------------------------------------------------- targets
def abstract_target(target) -> Any:
    """``target`` (arrays or ShapeDtypeStructs) as ShapeDtypeStructs that all carry a sharding.

    A leaf without a sharding (numpy array, ``jax.eval_shape`` output) gets the first local device: left
    unset, Orbax would fall back to the sharding recorded at save time, i.e. the saving job's mesh.
    """
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def one(x):
        dtype = getattr(x, "dtype", None)
        dtype = dtype if dtype is not None else np.asarray(x).dtype
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(np.shape(x), dtype, sharding=sharding if sharding is not None else default)

    return jax.tree.map(one, target)


def _mismatch(tree_metadata, abstract) -> str | None:
    """How the saved tree (its Orbax metadata) differs from the target in leaf paths or shapes, or None.

    Paths are compared the way Orbax itself matches them at restore (``tuple_path_from_keypath`` against
    the flattened metadata tree), so the targets Orbax's strict restore would reject are caught before any
    data is read, with a message that names the leaves. Dtypes may differ (Orbax casts).
    """
    saved = ocp_tree.to_flat_dict(tree_metadata.tree)
    wanted = {tuple_path_from_keypath(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]}
    missing = [p for p in wanted if p not in saved]
    extra = [p for p in saved if p not in wanted]
    shapes = []
    for p, leaf in wanted.items():
        if p in saved and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            stored = getattr(saved[p], "shape", None)
            if stored is not None and tuple(stored) != tuple(leaf.shape):
                shapes.append(f"{'/'.join(p)} saved {tuple(stored)} vs target {tuple(leaf.shape)}")
    parts = []
    for label, items in (("in the target but not the checkpoint", ["/".join(p) for p in missing]),
                         ("in the checkpoint but not the target", ["/".join(p) for p in extra]),
                         ("shapes differ", shapes)):
        if items:
            parts.append(f"{label}: {', '.join(items[:5])}" + (f" (+{len(items) - 5} more)" if len(items) > 5 else ""))
    return "; ".join(parts) or None


# ------------------------------------------------------------------------------------ Checkpointer
class Checkpointer:
    """Saves and restores a TrainState (+ JSON metadata) under ``directory``, one subdirectory per step.

    Args:
      directory: where the step directories live (created at the first save).
      max_to_keep: how many of the newest complete steps to keep (older ones are deleted after each
        commit); None keeps all.
      async_save: :meth:`save` returns once the arrays are copied to host memory and writes in a background
        thread; :meth:`wait` / :meth:`close` block until it is committed.
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3, async_save: bool = True):
        if max_to_keep is not None and (isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int)
                                        or max_to_keep < 1):
            raise ValueError(f"max_to_keep = {max_to_keep!r} is invalid: expected a positive integer or None")
        self.directory = Path(directory).expanduser().absolute()
        self.max_to_keep = max_to_keep
        self.async_save = bool(async_save)
        # Steps whose data failed to read in this object, with the reason: kept out of all_steps / latest_step,
        # skipped by restore(step=None), moved aside (not deleted: it may have been transient) by the next save.
        self._unreadable: dict[int, str] = {}
        self._closed = False
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=self.async_save,
            create=False,  # a reader must not create directories; save() creates it
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(), METADATA_ITEM: ocp.JsonCheckpointHandler()})

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.directory)!r}, max_to_keep={self.max_to_keep}, async_save={self.async_save})"

    # ------------------------------------------------------------------------------------- listing
    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, ascending (a save still in flight is not listed)."""
        steps, _ = _scan(self.directory)
        return sorted(s for s, p in steps.items() if s not in self._unreadable and structural_problem(p) is None)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    # ---------------------------------------------------------------------------------------- save
    def save(self, step: int, state, *, metadata: dict | None = None, force: bool = False) -> None:
        """Write ``state`` (a TrainState or any pytree of arrays) as checkpoint ``step``.

        Returns as soon as the arrays are copied off the devices (``async_save``), so the caller may donate
        or delete them right away; the write and the commit continue in the background. After the commit
        the oldest steps beyond ``max_to_keep`` are deleted.

        ``metadata`` is a small JSON-serialisable dict (config, data position, ...), returned by restore.
        Like Orbax, the manager only moves forward: a ``step`` not newer than the newest complete checkpoint
        is skipped with a warning unless ``force=True``. A step that already exists is never overwritten
        (ValueError with ``force=True``, skipped otherwise).
        """
        step = _check_step(step)
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a JSON-serialisable dict, got {type(metadata).__name__}")
        try:
            metadata = json.loads(json.dumps(metadata))  # fail here, not in the background writer
        except (TypeError, ValueError) as e:
            raise TypeError(f"metadata for checkpoint step {step} is not JSON-serialisable: {e}") from e
        # The previous save must be committed before the directory is inspected and tidied.
        self._manager.wait_until_finished()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._tidy()
        complete = self.all_steps()
        if step in complete:
            if force:
                raise ValueError(f"checkpoint step {step} already exists in {self.directory}; Orbax does not "
                                 "overwrite a committed step (delete it first)")
            log.warning("not saving checkpoint step %d: it already exists in %s", step, self.directory)
            return
        if complete and step < complete[-1] and not force:
            log.warning("not saving checkpoint step %d: older than the newest checkpoint %d in %s "
                        "(pass force=True to save it anyway)", step, complete[-1], self.directory)
            return
        # force=True towards Orbax: the decision is ours (Orbax's own should_save would count torn steps).
        self._manager.save(step, args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardSave(state), METADATA_ITEM: ocp.args.JsonSave(metadata)}), force=True)

    def _tidy(self) -> None:
        """Before a save (single writer, nothing in flight): clear what can never be restored out of the way.

        An unusable ``<step>`` directory is never a save in progress (those live in temporary directories):
        it is a torn leftover, e.g. of an interrupted deletion of an old step, or one whose data failed to
        read. Left in place it would count towards ``max_to_keep`` (Orbax lists steps by name) and block a
        new save of that step, so it is renamed to ``<step>.unusable-<ns>``, a name nothing lists, and kept
        for inspection (the failure may have been transient). Temporary directories of interrupted saves
        are deleted, as Orbax itself does when it saves the same step again.
        """
        if multihost.process_index() == 0:  # one process edits a shared directory
            steps, tmps = _scan(self.directory)
            for s, path in sorted(steps.items()):
                problem = structural_problem(path) or self._unreadable.get(s)
                if problem is not None:
                    aside = path.with_name(f"{s}.unusable-{time.time_ns()}")
                    log.warning("moving unusable checkpoint step %d aside to %s (never restored; delete it once "
                                "inspected): %s", s, aside, problem)
                    path.rename(aside)
            for path in tmps:
                log.info("removing %s, left by an interrupted save", path)
                shutil.rmtree(path, ignore_errors=True)
        if multihost.process_count() > 1:
            multihost.sync_global_processes("jaxzoo_checkpointer_tidy")
        self._unreadable.clear()
        self._manager.reload()  # Orbax's cached step list (used for max_to_keep) now matches the disk

    # ------------------------------------------------------------------------------------- restore
    def restore(self, target, step: int | None = None) -> tuple[int, Any, dict]:
        """Restore checkpoint ``step`` (None: the newest complete one) onto ``target``'s layout.

        ``target``: a TrainState (or pytree) of arrays or ``jax.ShapeDtypeStruct``, e.g.
        ``jax.eval_shape(lambda: init_train_state(params, tx, key))``; the restored arrays get the target's
        shapes, dtypes and shardings (a leaf without one goes to the first local device), so a checkpoint
        saved on one mesh restores onto another, or unsharded. The tree structure (optax namedtuples,
        MaskedNode, MultiSteps state) comes from the target.

        Returns ``(step, state, metadata)``.

        Raises:
          FileNotFoundError: no checkpoint in the directory (or no directory for an explicit ``step``).
          ValueError: the explicit ``step`` is incomplete or unreadable (the message says why); with
            ``step=None``, every checkpoint present is; or the target does not fit the checkpoint.
        With ``step=None`` an incomplete or unreadable newest step is skipped with a warning naming it and
        the reason, and the next older one is tried.
        """
        abstract = abstract_target(target)
        if step is not None:
            step = _check_step(step)
            path = self.directory / str(step)
            if not path.is_dir():
                tmp = self.directory / f"{step}{TMP_DIR_SUFFIX}"
                if tmp.is_dir():
                    raise ValueError(f"checkpoint step {step} in {self.directory} is incomplete: only {tmp.name}, "
                                     "the temporary directory of a save that was interrupted (or is still "
                                     "running), exists")
                raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} "
                                        f"(complete steps: {self.all_steps()})")
            result, problem = self._try_restore(step, path, abstract)
            if problem is not None:
                raise ValueError(f"checkpoint step {step} in {self.directory} is unusable: {problem}")
            return result

        steps, tmps = _scan(self.directory)
        if not steps:
            extra = (f" (only temporary directories of interrupted saves: {', '.join(p.name for p in tmps)})"
                     if tmps else "")
            raise FileNotFoundError(f"no checkpoint in {self.directory}{extra}")
        skipped = []
        for s in sorted(steps, reverse=True):
            if s in self._unreadable:
                result, problem = None, self._unreadable[s]
            else:
                result, problem = self._try_restore(s, steps[s], abstract)
            if problem is None:
                return result
            log.warning("skipping checkpoint step %d in %s: %s; falling back to the previous checkpoint",
                        s, self.directory, problem)
            skipped.append(f"step {s}: {problem}")
        raise ValueError(f"no usable checkpoint in {self.directory}: " + "; ".join(skipped))

    def _try_restore(self, step: int, path: Path, abstract):
        """((step, state, metadata), None) or (None, why the step is unusable). Raises on a target mismatch."""
        problem = structural_problem(path)
        if problem is not None:
            return None, problem
        with _AbandonedReadsSilenced() as quiet:
            handler = ocp.StandardCheckpointHandler()
            try:
                tree_metadata = handler.metadata(path / STATE_ITEM)  # _METADATA and each array's zarr metadata
            except Exception as e:  # noqa: BLE001 - whatever a torn file makes Orbax raise
                problem = f"its array metadata is unreadable ({_short(e)})"
            finally:
                handler.close()
            if problem is None:
                mismatch = _mismatch(tree_metadata, abstract)
                if mismatch is not None:
                    # A caller error, not a torn checkpoint: older steps would not fit either.
                    raise ValueError(f"checkpoint step {step} in {self.directory} does not match the restore "
                                     f"target (saved with another model config or optimizer?): {mismatch}")
                try:
                    restored = self._manager.restore(step, args=ocp.args.Composite(**{
                        STATE_ITEM: ocp.args.StandardRestore(abstract), METADATA_ITEM: ocp.args.JsonRestore()}))
                    state, metadata = restored[STATE_ITEM], restored[METADATA_ITEM]
                    jax.block_until_ready(state)
                except Exception as e:  # noqa: BLE001 - TensorStore/OCDBT/JSON errors of missing/truncated files
                    problem = f"reading it failed ({_short(e)})"
            if problem is not None:
                quiet.settle()
        if problem is not None:
            self._unreadable[step] = problem
            return None, problem
        return (step, state, dict(metadata or {})), None

    # ------------------------------------------------------------------------------------ lifecycle
    def wait(self) -> None:
        """Block until every pending save is committed (re-raises an error of the background writer)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves, then release Orbax's threads and resources. Idempotent."""
        if self._closed:
            return
        try:
            self.wait()
        finally:
            self._closed = True
            self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
