"""Checkpoints of ``leanfit train``: the state of a run, saved while it goes on, so that
``--resume`` continues it after ``kill -9`` or a power loss and ends with the same model.

A checkpoint is a folder (``--checkpoint DIR``; by default ``.NAME.checkpoint`` beside
``--out`` when the run is planned to take more than a minute) holding:

- ``state.leanfit``: one file in the bundle format (:mod:`leanfit.bundle`: JSON and
  ``.npy``, no pickle, every member's sha256 checked when read) with the schema, the
  encoder, the model and optimizer state, the RNG state, the position in the input
  (the row a pass goes on from, the epoch and block, the L-BFGS passes, the boosting
  rounds), the early-stopping history, the row counts and the memory trace so far;
  and what the run was started with: a fingerprint of the data (paths, sizes, mtimes,
  hashes of the first and last MiB) and the options. It is written under a temporary
  name, fsynced and renamed: a kill or a power loss leaves the previous state or the
  new one, never a torn one.
- ``train/`` and ``holdout/``: the block caches (:class:`~leanfit.encode.cache.BlockCache`),
  so a resumed run reads the rows encoded before the kill back instead of parsing them.
- ``.owner``: locked by the running process, as temp folders are (:mod:`leanfit.io.tempfiles`).

The state is saved at safe points: every ``--checkpoint-every`` seconds, and at the end
of the first pass, of every epoch, of every L-BFGS pass and every ``BOOST_ROUNDS``
boosting rounds. The folder survives any failure (it is what ``--resume`` reads) and is
removed once the model is saved.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leanfit import bundle
from leanfit.encode.cache import BlockCache
from leanfit.encode.encoder import Encoder
from leanfit.errors import ConfigError, InputError, Interrupted, MemoryBudgetExceeded
from leanfit.io.outputs import fsync
from leanfit.io.source import resolve_paths
from leanfit.memory import Monitor
from leanfit.models.registry import model_state, restore_model
from leanfit.options import INCREMENTAL, BoostOptions, CheckpointOptions, TrainOptions
from leanfit.schema.columns import Schema

if TYPE_CHECKING:
    from leanfit.models.logistic import Terms

STATE = "state.leanfit"
OWNER = ".owner"
SAMPLE_BYTES = 1 << 20  # hashed at each end of every input file
BOOST_ROUNDS = 10
AUTO_SECONDS = 60.0
# what a train run gets through, measured here (2 cores): the first pass parses and
# encodes; a later epoch or L-BFGS pass reads cached blocks, about four times faster
PARSE_BYTES_PER_SECOND = 40e6
LBFGS_PASSES = 20  # typical for the preconditioned L-BFGS on generated data


def default_folder(out: str | os.PathLike) -> Path:
    """``.NAME.checkpoint`` beside the output ``NAME``."""
    out = Path(out)
    return out.parent / f".{out.name}.checkpoint"


def planned_seconds(nbytes: int, opts: TrainOptions, boost: BoostOptions) -> float:
    """A rough plan of a run's length from its input size (it decides the default)."""
    if opts.model in INCREMENTAL:
        passes = 1 + (opts.epochs - 1) / 4
    elif opts.model == "logistic":
        passes = 1 + LBFGS_PASSES / 4
    else:
        passes = 1 + boost.rounds / 20
    return nbytes / PARSE_BYTES_PER_SECOND * passes


def file_fingerprint(path: Path) -> dict:
    """Path, size, mtime and sha256 of the first and last MiB of one input file."""
    info = path.stat()
    with open(path, "rb") as f:
        head = hashlib.sha256(f.read(SAMPLE_BYTES)).hexdigest()
        f.seek(max(info.st_size - SAMPLE_BYTES, 0))
        tail = hashlib.sha256(f.read(SAMPLE_BYTES)).hexdigest()
    where = str(path.resolve())
    return {
        "path": where,
        "bytes": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "head": head,
        "tail": tail,
    }


def run_identity(paths: list[Path], target: str | None, opts: TrainOptions, boost: BoostOptions):
    """What a resumed run must share with the checkpoint's: the data and the options."""
    options = {"target": target} | opts.as_dict() | boost.as_dict()
    data = [file_fingerprint(Path(p)) for p in paths]
    return json.loads(json.dumps({"data": data, "options": options}))


def identity_change(saved: dict, now: dict) -> tuple[type, str] | None:
    """The error class and what differs between two identities, or None."""
    old, new = saved["data"], now["data"]
    if [f["path"] for f in old] != [f["path"] for f in new]:
        paths = ", ".join(f["path"] for f in old)
        return InputError, f"the input files are not those of the checkpoint ({paths})"
    for before, after in zip(old, new):
        what = [k for k in ("bytes", "mtime_ns", "head", "tail") if before[k] != after[k]]
        if what:
            changes = {"bytes": "size", "mtime_ns": "modification time", "head": "first MiB"}
            said = ", ".join(changes.get(k, "last MiB") for k in what)
            return InputError, f"{after['path']} changed since the checkpoint ({said})"
    flags = {n: s.flag_for(n) for g in (TrainOptions, BoostOptions) for n, _, _, s in g.table()}
    flags["target"] = "--target"
    for name, flag in flags.items():
        if saved["options"].get(name) != now["options"].get(name):
            was, given = saved["options"].get(name), now["options"].get(name)
            return ConfigError, f"{flag} was {was!r} in the checkpointed run, now {given!r}"
    return None


class Checkpoint:
    """The checkpoint folder of one run: locked while it lives, read on ``--resume``.

    ``saved`` is the state a resumed run starts from (``(parts, arrays)`` of the
    bundle), None for a new run; ``every`` the seconds between timed saves.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        identity: dict,
        memory: Monitor,
        *,
        every: float = 30.0,
        resume: bool = False,
    ):
        self.folder, self.identity, self.memory, self.every = Path(folder), identity, memory, every
        created = not self.folder.exists()
        self._lock = self._take()
        try:
            self.saved = self._read() if resume else None
            if not resume and (self.folder / STATE).exists():
                raise ConfigError(
                    f"--checkpoint {self.folder} holds the state of an interrupted run; add "
                    "--resume to continue it, or remove the folder to start over."
                )
        except BaseException:
            self.release(remove=created or os.listdir(self.folder) == [OWNER])
            raise
        self._last = time.monotonic()
        self.saves, self.save_seconds = 0, 0.0

    def _take(self) -> int:
        """Create the folder and lock its owner file; refuse when a live run holds it."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"--checkpoint {self.folder} is a file; give a folder.") from None
        fd = os.open(self.folder / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"--checkpoint {self.folder} is in use by another leanfit run; wait for it "
                "or give another folder."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _read(self) -> tuple[dict, dict]:
        path = self.folder / STATE
        if not path.exists():
            raise ConfigError(
                f"--resume: there is no checkpoint in {self.folder} (none was saved yet, or "
                "the run finished); run without --resume."
            )
        parts, arrays = bundle.load(path)
        change = identity_change(parts["meta"]["identity"], self.identity)
        if change is not None:
            error, what = change
            raise error(
                f"--resume: {what}; the checkpoint in {self.folder} cannot continue this "
                "run. Restore them, or remove the folder and run without --resume."
            )
        seconds, rss, stages = (arrays.pop(f"trace.{k}") for k in ("seconds", "rss", "stage"))
        names = parts["meta"]["trace_stages"]
        self.memory.continue_trace(
            [(float(t), int(r), names[s]) for t, r, s in zip(seconds, rss, stages)]
        )
        return parts, arrays

    @property
    def progress(self) -> dict:
        """The saved position (``{}`` for a new run)."""
        return self.saved[0]["meta"]["progress"] if self.saved else {}

    def schema(self) -> Schema | None:
        return Schema.from_json(json.dumps(self.saved[0]["schema"])) if self.saved else None

    def encoder(self) -> Encoder | None:
        """The encoder the saved blocks were made with (None before a save)."""
        return Encoder.from_dict(self.saved[0]["encoder"]) if self.saved else None

    def cache(self, name: str) -> BlockCache:
        """The block cache ``name`` in the folder, as the checkpoint left it."""
        caches = self.progress.get("caches", {})
        return BlockCache.kept(self.folder / name, caches.get(name))

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every

    def save(
        self,
        progress: dict,
        schema: Schema,
        *,
        encoder: Encoder | None = None,
        model: tuple[dict, dict] = ({}, {}),
        arrays: dict | None = None,
        caches: dict[str, BlockCache] | None = None,
    ) -> None:
        """Write the state durably; ``caches`` are synced first and their state kept."""
        started = time.monotonic()
        caches = caches or {}
        for cache in caches.values():
            cache.sync()
        progress = progress | {"caches": {name: c.state() for name, c in caches.items()}}
        settings, learned = model
        samples = list(self.memory.samples)
        names = sorted({s for _, _, s in samples})
        trace = {
            "trace.seconds": np.array([t for t, _, _ in samples], dtype=np.float64),
            "trace.rss": np.array([r for _, r, _ in samples], dtype=np.int64),
            "trace.stage": np.array([names.index(s) for _, _, s in samples], dtype=np.int16),
        }
        meta = {"progress": progress, "identity": self.identity, "trace_stages": names}
        parts = {
            "meta": meta,
            "schema": asdict(schema),
            "encoder": (encoder or Encoder()).to_dict(),
            "model": settings,
        }
        named = {f"model.{k}": v for k, v in learned.items()} | (arrays or {}) | trace
        bundle.save(self.folder / STATE, parts, named, durable=True)
        self._last = time.monotonic()
        self.saves, self.save_seconds = self.saves + 1, self.save_seconds + self._last - started

    def report(self) -> dict:
        """The summary's ``checkpoint``: the folder (removed by now), whether this run
        resumed, how many saves it made and the seconds they took."""
        return {
            "folder": str(self.folder),
            "resumed": self.saved is not None,
            "saves": self.saves,
            "save_seconds": round(self.save_seconds, 3),
        }

    def saved_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The saved arrays whose names start with ``prefix`` (without it)."""
        arrays = self.saved[1] if self.saved else {}
        return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

    def release(self, *, remove: bool = False) -> None:
        """Let the folder go: removed (after a saved model), else kept for ``--resume``.
        The state goes first: a kill while the blocks are removed must not leave a state
        whose blocks are gone."""
        if remove:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / STATE).unlink()
                fsync(self.folder)
            shutil.rmtree(self.folder, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


@contextlib.contextmanager
def checkpointing(checkpoint: Checkpoint | None):
    """Hold ``checkpoint`` in the block; remove it when the block succeeds, else keep it
    (when it holds a state to resume from), saying so in a signal's or the memory
    limit's error: those runs continue with ``--resume``."""
    if checkpoint is None:
        yield None
        return
    try:
        yield checkpoint
    except BaseException as error:
        kept = (checkpoint.folder / STATE).exists()
        checkpoint.release(remove=not kept)
        if kept and isinstance(error, Interrupted | MemoryBudgetExceeded) and error.args:
            note = f"The checkpoint {checkpoint.folder} is kept: add --resume to continue."
            error.args = (f"{error.args[0]} {note}", *error.args[1:])
        raise
    checkpoint.release(remove=True)


# --------------------------------------------------------------------------- models


def learner_state(model) -> tuple[dict, dict[str, np.ndarray]]:
    """An incremental model's settings and arrays, its private ones (SGD's averages) too."""
    settings, arrays = model_state(model)
    settings = settings | {"private": {}}
    for key, value in vars(model).items():
        if not key.startswith("_") or key.startswith("__"):
            continue
        if isinstance(value, np.ndarray) and value.dtype != object:
            arrays[f"private.{key}"] = value
        elif isinstance(value, bool | int | float | str):
            settings["private"][key] = value
    return settings, arrays


def restore_learner(settings: dict, arrays: dict[str, np.ndarray]):
    """The model of :func:`learner_state`, ready to learn on."""
    private = {
        k.removeprefix("private."): arrays.pop(k) for k in list(arrays) if k.startswith("private.")
    }
    model = restore_model({k: v for k, v in settings.items() if k != "private"}, arrays)
    for key, value in (settings["private"] | private).items():
        setattr(model, key, value)
    return model


class Evaluations:
    """The L-BFGS passes of the exact logistic so far, kept so that a resumed run
    replays them: L-BFGS is deterministic, so given the same answers it asks for the
    same coefficients again and rebuilds its memory without reading the data."""

    def __init__(self, squares: np.ndarray, saved: dict[str, np.ndarray] | None = None):
        self.squares = squares
        saved = saved or {}
        self.coefs = list(saved.get("coef", ()))
        self.results = [
            (float(loss), grad, float(weight))
            for loss, grad, weight in zip(
                saved.get("loss", ()), saved.get("grad", ()), saved.get("weight", ())
            )
        ]
        self._asked = 0

    def oracle(self, terms: Terms, after: Callable[[], None]) -> Terms:
        """``terms`` answering the recorded passes from the record; ``after`` runs
        after every new pass."""

        def recorded(coef: np.ndarray):
            index, self._asked = self._asked, self._asked + 1
            if index < len(self.coefs) and np.array_equal(coef, self.coefs[index]):
                return self.results[index]
            del self.coefs[index:], self.results[index:]  # a different path: compute anew
            result = terms(coef)
            self.coefs.append(coef.copy())
            self.results.append(result)
            after()
            return result

        return recorded

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {"lbfgs.squares": self.squares}
        if self.coefs:
            arrays |= {
                "lbfgs.coef": np.stack(self.coefs),
                "lbfgs.grad": np.stack([g for _, g, _ in self.results]),
                "lbfgs.loss": np.array([loss for loss, _, _ in self.results]),
                "lbfgs.weight": np.array([w for _, _, w in self.results]),
            }
        return arrays


# --------------------------------------------------------------------------- the local trainer


def save_trainer(checkpoint: Checkpoint, trainer, caches: dict[str, BlockCache]) -> None:
    """Save a local :class:`~leanfit.engines.local.train.Trainer` between two blocks."""
    progress = {
        "stage": trainer.stage,
        "cursor": asdict(trainer.cursor),
        "epoch": trainer.epoch,
        "index": trainer.index,
        "rng": trainer.rng.bit_generator.state,
        "rows_seen": trainer.rows_seen,
        "train_rows": trainer.train_rows,
        "counts": asdict(trainer.counts),
        "history": trainer.history,
        "stopper": [trainer.stopper.best, trainer.stopper.stale],
        "plan": trainer.plan.as_dict(),
    }
    arrays = {} if trainer.order is None else {"order": trainer.order}
    incremental = trainer.opts.model in INCREMENTAL
    if trainer.passes is not None:
        arrays |= trainer.passes.arrays()
    model = learner_state(trainer.model) if incremental and trainer.rows_seen else ({}, {})
    checkpoint.save(
        progress, trainer.schema, encoder=trainer.encoder, model=model, arrays=arrays, caches=caches
    )


def restore_trainer(checkpoint: Checkpoint, trainer) -> None:
    """Put a trainer back where :func:`save_trainer` left it."""
    saved = checkpoint.progress
    trainer.stage, trainer.epoch, trainer.index = saved["stage"], saved["epoch"], saved["index"]
    for key, value in saved["cursor"].items():
        setattr(trainer.cursor, key, value)
    trainer.rng.bit_generator.state = saved["rng"]
    trainer.rows_seen, trainer.train_rows = saved["rows_seen"], saved["train_rows"]
    for key, value in saved["counts"].items():
        setattr(trainer.counts, key, value)
    trainer.history[:] = saved["history"]
    trainer.stopper.best, trainer.stopper.stale = saved["stopper"]
    trainer.order = checkpoint.saved_arrays("order").get("")
    if checkpoint.saved[0]["model"]:
        learned = checkpoint.saved_arrays("model.")
        trainer.model = restore_learner(checkpoint.saved[0]["model"], learned)
    lbfgs = checkpoint.saved_arrays("lbfgs.")
    if lbfgs:
        trainer.passes = Evaluations(lbfgs.pop("squares"), lbfgs)


def open_checkpoint(
    data,
    target,
    out,
    opts: TrainOptions,
    boost: BoostOptions,
    memory: Monitor,
    settings: CheckpointOptions | None,
) -> Checkpoint | None:
    """The run's checkpoint (None: there is none; so without ``settings``, as library
    calls have it): ``--checkpoint``'s folder, else the default one beside ``out`` when
    the run is planned to take over ``AUTO_SECONDS`` (or resumes)."""
    if settings is None:
        return None
    settings.check()
    paths = resolve_paths(data)
    folder = settings.checkpoint
    if folder is None and out is not None and opts.model != "mlp":
        planned = planned_seconds(sum(Path(p).stat().st_size for p in paths), opts, boost)
        folder = default_folder(out) if settings.resume or planned > AUTO_SECONDS else None
    if folder is None:
        if settings.resume:
            raise ConfigError("--resume needs the --checkpoint folder of the run to continue.")
        return None
    if opts.model == "mlp":
        raise ConfigError(
            "--checkpoint: --model mlp cannot be checkpointed (its optimizer's state is not "
            "saved); train it without --checkpoint and --resume."
        )
    if out is not None and Path(folder).resolve() == Path(out).resolve():
        raise ConfigError(f"--checkpoint {folder} is --out; give the checkpoint its own folder.")
    identity = run_identity(paths, target, opts, boost)
    return Checkpoint(
        folder, identity, memory, every=settings.checkpoint_every, resume=settings.resume
    )
