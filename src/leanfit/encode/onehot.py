"""Encoded rows as a dense part and one slot per categorical: :class:`OneHotBlock`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class OneHotBlock:
    """Encoded rows as their dense part and, per categorical, the column of its one
    nonzero (a 1): the matrix of the CSR block in about a third of its bytes, with
    products that need no index arrays (a BLAS product, a gather and a bincount).

    Supports what the exact logistic asks of a block: ``shape``, ``len``, row
    selection, ``astype``, ``X @ W`` and ``X.T @ G``.

    >>> b = OneHotBlock(np.array([[0.5], [2.0]], np.float32), np.array([[1], [2]]), 3)
    >>> b.toarray().tolist()
    [[0.5, 1.0, 0.0], [2.0, 0.0, 1.0]]
    >>> (b @ np.ones((3, 1))).ravel().tolist(), (b.T @ np.ones(2)).tolist()
    ([1.5, 3.0], [2.5, 1.0, 1.0])
    """

    def __init__(self, dense: np.ndarray, slots: np.ndarray, width: int):
        self.dense, self.slots, self.width = dense, slots, int(width)

    @property
    def shape(self) -> tuple[int, int]:
        return self.dense.shape[0], self.width

    def __len__(self) -> int:
        return self.dense.shape[0]

    def __getitem__(self, rows) -> OneHotBlock:
        return OneHotBlock(self.dense[rows], self.slots[rows], self.width)

    def astype(self, dtype, copy: bool = True) -> OneHotBlock:
        return OneHotBlock(self.dense.astype(dtype, copy=copy), self.slots, self.width)

    def __matmul__(self, W: np.ndarray) -> np.ndarray:
        """``X @ W`` for ``W`` of shape (width,) or (width, k)."""
        p = self.dense.shape[1]
        out = self.dense @ W[:p]
        for j in range(self.slots.shape[1]):
            out += W[self.slots[:, j]]
        return out

    @property
    def T(self) -> _Transposed:
        return _Transposed(self)

    def tocsr(self, rows: np.ndarray | None = None) -> sp.csr_matrix:
        """The CSR matrix of the block (of its ``rows``, in their order, if given)."""
        dense, slots = (
            (self.dense, self.slots) if rows is None else (self.dense[rows], self.slots[rows])
        )
        return _csr(dense, slots, self.width)

    def toarray(self, rows: np.ndarray | None = None) -> np.ndarray:
        dense, slots = (
            (self.dense, self.slots) if rows is None else (self.dense[rows], self.slots[rows])
        )
        out = np.zeros((dense.shape[0], self.width), dtype=dense.dtype)
        out[:, : dense.shape[1]] = dense
        np.put_along_axis(out, slots, 1.0, axis=1)
        return out


class _Transposed:
    """``X.T`` of a :class:`OneHotBlock`, for ``X.T @ G``."""

    def __init__(self, block: OneHotBlock):
        self.block = block

    def __matmul__(self, G: np.ndarray) -> np.ndarray:
        b = self.block
        G2 = G.reshape(len(b), -1)
        out = np.empty((b.width, G2.shape[1]))
        p = b.dense.shape[1]
        out[:p] = b.dense.T @ G2
        columns = b.slots.ravel()
        for c in range(G2.shape[1]):
            weights = np.repeat(G2[:, c], b.slots.shape[1])
            out[p:, c] = np.bincount(columns, weights, minlength=b.width)[p:]
        return out.reshape((b.width, *G.shape[1:]))


def _csr(dense: np.ndarray, slots: np.ndarray, width: int) -> sp.csr_matrix:
    n, p = dense.shape
    q = slots.shape[1]
    indices = np.empty((n, p + q), dtype=np.int32)
    indices[:, :p] = np.arange(p, dtype=np.int32)
    indices[:, p:] = slots
    data = np.empty((n, p + q), dtype=dense.dtype)
    data[:, :p] = dense
    data[:, p:] = 1
    indptr = np.arange(0, n * (p + q) + 1, p + q, dtype=np.int64)
    X = sp.csr_matrix((data.ravel(), indices.ravel(), indptr), shape=(n, width))
    X.has_canonical_format = True  # indices rise along each row: dense part, then slots
    return X
