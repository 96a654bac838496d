"""The saved model: one zip file of JSON and ``.npy`` arrays, and no pickle.

Members: ``meta.json`` (format version, library versions, training summary and
metrics, data fingerprint), ``schema.json``, ``encoder.json``, ``model.json``
(model class and settings) and ``arrays/<name>.npy`` (read with
``allow_pickle=False``). Any other member, such as a pickle, is refused.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from leanfit.errors import BundleError
from leanfit.io.outputs import atomic_path

BUNDLE_VERSION = 1
JSON_MEMBERS = ("meta.json", "schema.json", "encoder.json", "model.json")


def save(path: str | Path, parts: dict[str, dict], arrays: dict[str, np.ndarray]) -> None:
    """Write the bundle at ``path`` atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in JSON_MEMBERS:
            zf.writestr(name, json.dumps(parts[name.removesuffix(".json")], default=str))
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(array), allow_pickle=False)
            zf.writestr(f"arrays/{name}.npy", buffer.getvalue())


def load(path: str | Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Read a bundle; refuse anything but the expected JSON and ``.npy`` members."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such model file.")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            strange = [n for n in names if n not in JSON_MEMBERS and not _is_array(n)]
            if strange:
                raise BundleError(
                    f"{path}: unexpected members {strange}; a leanfit bundle holds only JSON and "
                    ".npy arrays. Refusing to load it."
                )
            parts = {n.removesuffix(".json"): json.loads(zf.read(n)) for n in JSON_MEMBERS}
            arrays = {n[7:-4]: _read_array(zf.read(n), path) for n in names if _is_array(n)}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not a valid leanfit model bundle ({exc}).") from None
    if parts["meta"].get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(f"{path}: bundle version {parts['meta'].get('bundle_version')} unknown.")
    return parts, arrays


def _is_array(name: str) -> bool:
    return name.startswith("arrays/") and name.endswith(".npy") and "/" not in name[7:]


def _read_array(raw: bytes, path: Path) -> np.ndarray:
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        raise BundleError(f"{path}: an array holds Python objects ({exc}); refusing it.") from None
