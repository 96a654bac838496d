"""The saved model: one zip file of JSON and ``.npy`` arrays, and no pickle.

Members: ``meta.json`` (format version, library versions, training summary and
metrics, data fingerprint and, from format 2, the manifest), ``schema.json``,
``encoder.json``, ``model.json`` (model class and settings) and
``arrays/<name>.npy``. Any other member, such as a pickle, is refused.

The manifest (``meta["manifest"]``) lists every other member: its ``sha256`` and
``bytes`` (uncompressed size) and, for arrays, ``dtype``, ``shape`` and ``nbytes``
(the data after the ``.npy`` header). A bundle is checked before anything is
allocated for it, in this order: the members' names; each member's uncompressed
size against the manifest and its compression ratio (a zip bomb claims or holds far
more than it stores); every ``.npy`` header (dtype and shape against the manifest,
no object dtype: arrays are never unpickled); the bytes the arrays need against the
memory budget; then each member's sha256 while it is read, and every floating array
for non-finite values. Format-1 bundles (no manifest) get every check but the
manifest's.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from leanfit.errors import BundleError, MemoryBudgetExceeded
from leanfit.io.outputs import atomic_path

BUNDLE_VERSION = 2
READABLE_VERSIONS = (1, 2)
META = "meta.json"
JSON_MEMBERS = (META, "schema.json", "encoder.json", "model.json")
MAX_RATIO = 200  # deflate stores real parameters at 1-15x; a bomb of zeros at ~1000x
RATIO_FLOOR = 1 << 20  # ratios of members smaller than this are not worth judging
MAX_JSON_BYTES = 256 << 20
JSON_OBJECT_FACTOR = 10  # Python objects of parsed JSON, per byte of text
ARRAY_COPIES = 2  # the array, and one copy the model makes of it (a booster's bytes)
SAFE_KINDS = "biufcSU"  # numbers and fixed-size text; never objects
CHUNK = 1 << 20
# zip and .npy parse errors (RuntimeError: an encrypted member or an unknown compression)
FORMAT_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    ValueError,
    RuntimeError,
)


@dataclass(frozen=True)
class Budget:
    """The memory a bundle may take: the limit and what the process holds already."""

    limit: int
    in_use: int


# --------------------------------------------------------------------------- writing


def save(
    path: str | Path, parts: dict[str, dict], arrays: dict[str, np.ndarray], durable: bool = False
) -> None:
    """Write the bundle at ``path`` atomically, with a manifest of every member
    (``durable``: fsynced before it is renamed into place, see ``atomic_path``)."""
    members = {name: _json_bytes(parts[name.removesuffix(".json")]) for name in JSON_MEMBERS[1:]}
    manifest = {name: {"sha256": _sha(raw), "bytes": len(raw)} for name, raw in members.items()}
    for name, array in arrays.items():
        array = np.asarray(array)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        member = f"arrays/{name}.npy"
        members[member] = raw = buffer.getvalue()
        manifest[member] = {"sha256": _sha(raw), "bytes": len(raw)} | _array_entry(array)
    meta = parts["meta"] | {"bundle_version": BUNDLE_VERSION, "manifest": manifest}
    with (
        atomic_path(path, durable=durable) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf,
    ):
        zf.writestr(META, _json_bytes(meta))
        for name, raw in members.items():
            zf.writestr(name, raw)


def _json_bytes(part: dict) -> bytes:
    return json.dumps(part, default=str).encode()


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _array_entry(array: np.ndarray) -> dict:
    return {"dtype": array.dtype.str, "shape": list(array.shape), "nbytes": int(array.nbytes)}


# --------------------------------------------------------------------------- reading


def load(
    path: str | Path, budget: Budget | None = None
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Read a bundle: its JSON parts (by name without ``.json``) and named arrays.

    Raises :class:`BundleError` naming the bundle and the member for anything
    edited, truncated, unsafe or of an unknown format, and
    :class:`MemoryBudgetExceeded` when its arrays would not fit ``budget``; both
    before any array is allocated.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a model file" if path.is_dir() else "no such model file"
        raise BundleError(f"{path}: {what}.")
    reader = _Reader(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return reader.read(zf, budget)
    except FORMAT_ERRORS as exc:
        if isinstance(exc, BundleError):
            raise
        where = f" member {reader.member}:" if reader.member else ""
        raise BundleError(
            f"{path}:{where} not a valid leanfit model bundle ({_first_line(exc)}); "
            "it is truncated or was edited: save it again with `leanfit train`."
        ) from None


class _Reader:
    """The checks of :func:`load`, in their order; ``member`` is the one being read."""

    def __init__(self, path: Path):
        self.path = path
        self.member: str | None = None

    def fail(self, what: str, member: str | None = None) -> BundleError:
        member = member or self.member
        return BundleError(f"{self.path}: {member + ': ' if member else ''}{what}")

    def read(self, zf: zipfile.ZipFile, budget: Budget | None):
        infos = self.members(zf)
        meta = self.meta(zf, infos[META])
        manifest = self.manifest(meta, infos)
        for info in infos.values():
            self.check_size(info, manifest)
        headers = {
            name: self.header(zf, info, manifest) for name, info in infos.items() if _is_array(name)
        }
        self.check_budget(infos, headers, budget)
        parts = {"meta": meta}
        for name in JSON_MEMBERS[1:]:
            parts[name.removesuffix(".json")] = self.json_part(zf, infos[name], manifest)
        arrays = {
            name[7:-4]: self.array(zf, infos[name], header, manifest)
            for name, header in headers.items()
        }
        self.member = None
        return parts, arrays

    def members(self, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            if info.filename in infos:
                raise self.fail(
                    "appears twice in the zip; refusing an ambiguous bundle.", info.filename
                )
            infos[info.filename] = info
        strange = [n for n in infos if n not in JSON_MEMBERS and not _is_array(n)]
        if strange:
            raise self.fail(
                f"unexpected members {strange}; a leanfit bundle holds only JSON and .npy "
                "arrays. Refusing to load it."
            )
        missing = [n for n in JSON_MEMBERS if n not in infos]
        if missing:
            raise self.fail("is missing; the bundle is incomplete or was edited.", missing[0])
        return infos

    def meta(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
        self.check_size(info, None)
        meta = self.parse_json(zf.read(info), info.filename)
        version = meta.get("bundle_version")
        if type(version) is int and version in READABLE_VERSIONS:
            return meta
        readable = f"formats {READABLE_VERSIONS[0]}-{READABLE_VERSIONS[-1]}"
        if type(version) is int and version > BUNDLE_VERSION:
            made_by = _made_by(meta)
            raise BundleError(
                f"{self.path}: made by leanfit {made_by} (bundle format {version}); this "
                f"leanfit ({_own_version()}) reads {readable}: upgrade leanfit "
                f"(pip install -U 'leanfit>={made_by}')."
            )
        raise self.fail(
            f"bundle format {version!r} is unknown; this leanfit reads {readable}.", META
        )

    def manifest(self, meta: dict, infos: dict[str, zipfile.ZipInfo]) -> dict | None:
        if meta["bundle_version"] < 2:
            return None
        manifest = meta.get("manifest")
        if not isinstance(manifest, dict):
            raise self.fail("has no manifest; the bundle was edited.", META)
        for name in infos:
            if name != META and name not in manifest:
                raise self.fail("is not in the manifest: added or renamed after saving.", name)
        for name in manifest:
            if name not in infos:
                raise self.fail(
                    "is in the manifest but not in the bundle: removed or renamed after saving.",
                    name,
                )
            self.entry(manifest, name)
        return manifest

    def entry(self, manifest: dict | None, name: str) -> dict | None:
        """The manifest's entry for ``name``, its fields checked for type."""
        if manifest is None or name == META:
            return None
        entry = manifest[name]
        fields = {"sha256": str, "bytes": int}
        if _is_array(name):
            fields |= {"dtype": str, "shape": list, "nbytes": int}
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), kind) for key, kind in fields.items()
        ):
            raise self.fail(f"the manifest's entry for {name} is malformed (edited).", META)
        return entry

    def check_size(self, info: zipfile.ZipInfo, manifest: dict | None) -> None:
        """The uncompressed size against the manifest, the JSON cap and the ratio."""
        self.member = name = info.filename
        entry = self.entry(manifest, name)
        if entry is not None and info.file_size != entry["bytes"]:
            raise self.fail(
                f"the zip says {info.file_size:,} bytes uncompressed, the manifest "
                f"{entry['bytes']:,}; the bundle was edited."
            )
        if name in JSON_MEMBERS and info.file_size > MAX_JSON_BYTES:
            raise self.fail(f"{_size(info.file_size)} of JSON is far more than a model holds.")
        ratio = info.file_size / max(info.compress_size, 1)
        # JSON is capped above; a model's JSON (a confusion matrix of many classes, a
        # long level) may compress far better than its parameters
        if name not in JSON_MEMBERS and info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            raise self.fail(
                f"{_size(info.compress_size)} in the zip would unpack to "
                f"{_size(info.file_size)} ({ratio:,.0f}x; a model's parameters compress "
                f"less than {MAX_RATIO}x): refusing a zip bomb."
            )

    def header(self, zf: zipfile.ZipFile, info, manifest: dict | None) -> tuple:
        """``(dtype, shape, fortran_order, header bytes)`` of an ``.npy`` member."""
        self.member = info.filename
        with zf.open(info) as raw:
            counted = _Hashing(raw)
            dtype, shape, fortran = _read_header(counted)
        if dtype.hasobject or dtype.kind not in SAFE_KINDS:
            raise self.fail(
                f"dtype {dtype} holds Python objects or is not numeric; arrays are read "
                "without unpickling, so this bundle is refused."
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if counted.count + nbytes != info.file_size:
            raise self.fail(
                f"the .npy header says {tuple(shape)} {dtype} ({nbytes:,} bytes) but the member "
                f"holds {info.file_size - counted.count:,} bytes of data; it was edited."
            )
        entry = self.entry(manifest, info.filename)
        if entry is not None:
            said = (entry["dtype"], entry["shape"], entry["nbytes"])
            if said != (dtype.str, list(shape), nbytes):
                raise self.fail(
                    f"the .npy header says {dtype.str} {list(shape)}, the manifest "
                    f"{entry['dtype']} {entry['shape']}; the bundle was edited."
                )
        return dtype, shape, fortran, nbytes

    def check_budget(self, infos: dict, headers: dict, budget: Budget | None) -> None:
        self.member = None
        if budget is None:
            return
        arrays = sum(h[3] for h in headers.values())
        texts = sum(infos[name].file_size for name in JSON_MEMBERS)
        need = ARRAY_COPIES * arrays + JSON_OBJECT_FACTOR * texts
        if budget.in_use + need <= budget.limit:
            return
        largest = max(headers, key=lambda n: headers[n][3], default=META)
        raise MemoryBudgetExceeded(
            f"{self.path}: loading this model needs {_size(need)} (arrays "
            f"{_size(arrays)}, the largest {largest}), with {_size(budget.in_use)} in use "
            f"that is over --memory-limit {_size(budget.limit)}. Nothing was read. Use "
            f"--memory-limit {_size((budget.in_use + need) * 1.25)} or more."
        )

    def json_part(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, manifest) -> dict:
        self.member = info.filename
        raw = zf.read(info)
        self.check_sha(_sha(raw), manifest)
        return self.parse_json(raw, info.filename)

    def parse_json(self, raw: bytes, name: str) -> dict:
        try:
            part = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self.fail(f"is not valid JSON ({exc}); the bundle was edited.", name) from None
        if not isinstance(part, dict):
            raise self.fail(f"holds a JSON {type(part).__name__}, not an object.", name)
        return part

    def array(self, zf: zipfile.ZipFile, info, header: tuple, manifest) -> np.ndarray:
        """Read the array into a buffer of its own size, hashing as it goes."""
        self.member = info.filename
        dtype, shape, fortran, nbytes = header
        data = np.empty(nbytes, dtype=np.uint8)
        with zf.open(info) as raw:
            hashing = _Hashing(raw)
            _read_header(hashing)
            filled = 0
            while filled < nbytes:
                chunk = hashing.read(min(CHUNK, nbytes - filled))
                if not chunk:
                    raise self.fail("ends before its data does; the bundle is truncated.")
                data[filled : filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                filled += len(chunk)
            hashing.read()  # to the end: zipfile checks the CRC there
        self.check_sha(hashing.hexdigest(), manifest)
        array = data.view(dtype).reshape(shape, order="F" if fortran else "C")
        if dtype.kind in "fc" and not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise self.fail(
                f"{bad:,} of {array.size:,} values are NaN or infinite; a trained model's "
                "parameters are finite, so this one is broken: train it again."
            )
        return array

    def check_sha(self, digest: str, manifest: dict | None) -> None:
        entry = self.entry(manifest, self.member)
        if entry is not None and digest != entry["sha256"]:
            raise self.fail("its sha256 differs from the manifest's; the bundle was edited.")


class _Hashing:
    """A reader that hashes and counts the bytes read through it."""

    def __init__(self, raw):
        self.raw, self.count, self._sha = raw, 0, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        self._sha.update(data)
        return data

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _read_header(fp) -> tuple[np.dtype, tuple[int, ...], bool]:
    version = npy.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(fp)
    else:
        raise ValueError(f".npy format {version} is not one leanfit writes")
    if any(n < 0 for n in shape):
        raise ValueError(f"negative shape {shape}")
    return dtype, shape, fortran


def _is_array(name: str) -> bool:
    return name.startswith("arrays/") and name.endswith(".npy") and "/" not in name[7:]


def _made_by(meta: dict) -> str:
    versions = meta.get("versions")
    found = versions.get("leanfit") if isinstance(versions, dict) else None
    return str(found) if found else "(unknown version)"


def _own_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("leanfit")
    except md.PackageNotFoundError:
        return "unknown version"


def _size(n: float) -> str:
    return f"{n / 1e9:,.1f}GB" if n >= 1e9 else f"{n / 1e6:,.0f}MB" if n >= 1e6 else f"{n:,.0f}B"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
