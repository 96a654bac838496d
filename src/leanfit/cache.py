"""A compact on-disk cache of encoded blocks, so later passes never parse again.

Each block is one uncompressed ``.npz`` (float32 values, int32 indices, class
codes, weights) in a temporary folder removed when the cache is closed. Reading a
block back costs a file read, not a CSV parse.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

Block = tuple[np.ndarray | sp.csr_matrix, np.ndarray, np.ndarray | None]


class BlockCache:
    """Append blocks once; read them back in any order, one at a time."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="leanfit-cache-", dir=folder))
        self.count = 0
        self.rows = 0
        self.nbytes = 0

    def append(self, X, y: np.ndarray, weight: np.ndarray | None) -> None:
        arrays = {"y": y}
        if weight is not None:
            arrays["w"] = weight
        if sp.issparse(X):
            arrays |= {"data": X.data, "indices": X.indices, "indptr": X.indptr, "shape": X.shape}
        else:
            arrays["X"] = X
        path = self.folder / f"{self.count:06d}.npz"
        np.savez(path, **arrays)
        self.nbytes += path.stat().st_size
        self.count += 1
        self.rows += len(y)

    def blocks(self, order: np.ndarray | None = None) -> Iterator[Block]:
        for index in range(self.count) if order is None else order:
            with np.load(self.folder / f"{index:06d}.npz", allow_pickle=False) as z:
                if "X" in z:
                    X = z["X"]
                else:
                    X = sp.csr_matrix(
                        (z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"])
                    )
                yield X, z["y"], z.get("w")

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> BlockCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
