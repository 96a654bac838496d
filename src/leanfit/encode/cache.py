"""A compact on-disk cache of encoded blocks, so later passes never parse again.

Each block is a few raw ``.npy`` files (float32 values, int32 indices or one-hot
slots, class codes, weights) in a temporary folder removed when the cache is closed.
Reading a block back memory-maps them: a page-cache read, not a CSV parse nor a copy.
The folder is owned (:class:`~leanfit.io.tempfiles.OwnedDir`: locked by its process
while it lives), so a cache whose process was killed outright (SIGKILL: no chance to
clean up) is removed by the next run using the same temp root, and a live one never is.
A *kept* cache (:meth:`BlockCache.kept`: a checkpoint's) is the opposite: it outlives
its process, so that a resumed run reads its blocks back.
Appending or reading a block is a safe point for SIGINT and SIGTERM
(:func:`leanfit.io.interrupts.check`), inside XGBoost's data callbacks too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from leanfit.encode.onehot import OneHotBlock
from leanfit.io import interrupts
from leanfit.io.outputs import fsync
from leanfit.io.tempfiles import OwnedDir

PREFIX = "leanfit-cache-"
Block = tuple[np.ndarray | sp.csr_matrix | OneHotBlock, np.ndarray, np.ndarray | None]


class BlockCache:
    """Append blocks once; read them back in any order, one at a time."""

    def __init__(self, folder: str | Path | None = None):
        self._owned: OwnedDir | None = OwnedDir(PREFIX, folder)
        self.folder = self._owned.path
        self.count = 0
        self.rows = 0
        self.nbytes = 0
        self._names: list[tuple[str, ...]] = []
        self._unsynced: list[Path] = []

    @classmethod
    def kept(cls, folder: str | Path, state: dict | None = None) -> BlockCache:
        """A cache in ``folder`` itself that :meth:`close` leaves in place; with ``state``
        (of :meth:`state`), it holds the blocks it held then (later ones are overwritten)."""
        cache = cls.__new__(cls)
        cache._owned, cache.folder, cache._unsynced = None, Path(folder), []
        cache.folder.mkdir(parents=True, exist_ok=True)
        state = state or {"count": 0, "rows": 0, "nbytes": 0, "names": []}
        cache.count, cache.rows, cache.nbytes = state["count"], state["rows"], state["nbytes"]
        cache._names = [tuple(names) for names in state["names"]]
        return cache

    def state(self) -> dict:
        """What :meth:`kept` needs to reopen this cache as it is now."""
        names = [list(n) for n in self._names]
        return {"count": self.count, "rows": self.rows, "nbytes": self.nbytes, "names": names}

    def sync(self) -> None:
        """Flush the blocks appended since the last sync to the disk (and the folder)."""
        for path in self._unsynced:
            fsync(path)
        if self._unsynced:
            fsync(self.folder)
        self._unsynced = []

    def append(self, X, y: np.ndarray, weight: np.ndarray | None) -> None:
        interrupts.check()
        arrays = {"y": y}
        if weight is not None:
            arrays["w"] = weight
        if isinstance(X, OneHotBlock):
            arrays |= {"dense": X.dense, "slots": X.slots, "shape": X.shape}
        elif sp.issparse(X):
            arrays |= {"data": X.data, "indices": X.indices, "indptr": X.indptr, "shape": X.shape}
        else:
            arrays["X"] = X
        del self._names[self.count :]
        self._names.append(tuple(arrays))
        for name, array in arrays.items():
            path = self.folder / f"{self.count:06d}.{name}.npy"
            np.save(path, np.asarray(array), allow_pickle=False)
            self.nbytes += path.stat().st_size
            self._unsynced.append(path)
        self.count += 1
        self.rows += len(y)

    def blocks(self, order: np.ndarray | None = None) -> Iterator[Block]:
        for index in range(self.count) if order is None else order:
            interrupts.check()
            a = {name: self._load(index, name) for name in self._names[index]}
            if "X" in a:
                X = a["X"]
            elif "slots" in a:
                X = OneHotBlock(a["dense"], a["slots"], a["shape"][1])
            else:
                X = sp.csr_matrix((a["data"], a["indices"], a["indptr"]), shape=tuple(a["shape"]))
                X.has_canonical_format = True  # the encoder writes sorted, unique indices
            yield X, a["y"], a.get("w")

    def _load(self, index: int, name: str) -> np.ndarray:
        path = self.folder / f"{index:06d}.{name}.npy"
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.remove()

    def __enter__(self) -> BlockCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
