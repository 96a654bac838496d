"""Bundles checked before anything is allocated (issue 11, item 5).

Real bundles are trained on generated data, then tampered with as a hostile user
would: members rewritten (with or without a matching manifest), zip headers patched,
zip bombs. Every refusal must be a BundleError (or MemoryBudgetExceeded) naming the
bundle and the member, before the arrays are allocated (tracemalloc counts numpy's
allocations), and the CLI must print one ``Error:`` line and write nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from numpy.lib import format as npy

import leanfit
from leanfit.cli import main
from leanfit.errors import BundleError, MemoryBudgetExceeded
from leanfit.memory import Monitor, current_rss, parse_limit
from leanfit.options import BoostOptions, TrainOptions

MB = 10**6


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "d.csv"
    leanfit.write_data(path, rows=3_000, seed=11)
    return path


@pytest.fixture(scope="module")
def sgd(data) -> Path:
    out = data.with_name("sgd.leanfit")
    leanfit.train(data, "label", out=out)
    return out


@pytest.fixture(scope="module")
def mlp(data) -> Path:
    out = data.with_name("mlp.leanfit")
    leanfit.train(data, "label", out=out, options=TrainOptions(model="mlp"))
    return out


@pytest.fixture(scope="module")
def xgb(data) -> Path:
    out = data.with_name("xgb.leanfit")
    leanfit.train(
        data, "label", out=out, options=TrainOptions(model="xgboost"), boost=BoostOptions(rounds=3)
    )
    return out


# --------------------------------------------------------------------------- tampering


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def entry_of(name: str, raw: bytes) -> dict:
    """A manifest entry computed here, independently of leanfit's writer."""
    entry = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    if name.endswith(".npy"):
        fp = io.BytesIO(raw)
        npy.read_magic(fp)
        shape, _, dtype = npy.read_array_header_1_0(fp)
        entry |= {"dtype": dtype.str, "shape": list(shape), "nbytes": len(raw) - fp.tell()}
    return entry


def rewrite(src: Path, dst: Path, changes: dict, *, manifest: bool = True, meta=None) -> Path:
    """``src`` with members replaced (bytes), dropped (None) or edited (a function of
    the parsed JSON); with ``manifest`` the manifest is made to match, so that only
    the check under test can catch the change."""
    parts = members(src)
    for name, change in changes.items():
        if change is None:
            parts.pop(name)
        elif callable(change):
            parts[name] = json.dumps(change(json.loads(parts[name]))).encode()
        else:
            parts[name] = change
    info = json.loads(parts["meta.json"])
    if manifest and "manifest" in info:
        info["manifest"] = {n: entry_of(n, raw) for n, raw in parts.items() if n != "meta.json"}
    parts["meta.json"] = json.dumps(meta(info) if meta else info).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in parts.items():
            zf.writestr(name, raw)
    return dst


def as_v1(meta: dict) -> dict:
    """The meta.json of a format-1 bundle: no manifest."""
    meta.pop("manifest")
    return meta | {"bundle_version": 1}


def claim_size(path: Path, member: str, size: int) -> None:
    """Patch the zip's local and central headers of ``member`` to claim ``size``
    uncompressed bytes (under 4 GB: no zip64 fields to patch)."""
    with zipfile.ZipFile(path) as zf:
        info, start = zf.getinfo(member), zf.start_dir
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, info.header_offset + 22, size)
    at = start
    while raw[at : at + 4] == b"PK\x01\x02":
        name_len, extra, comment = struct.unpack_from("<HHH", raw, at + 28)
        if raw[at + 46 : at + 46 + name_len].decode() == member:
            struct.pack_into("<I", raw, at + 24, size)
        at += 46 + name_len + extra + comment
    path.write_bytes(bytes(raw))


def write_big_member(src: Path, dst: Path, name: str, shape: tuple, compress: int) -> None:
    """``src`` with ``name`` replaced by a genuinely large float64 array of zeros,
    streamed into the zip (never whole in memory), its manifest entry matching."""
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    nbytes = int(np.prod(shape)) * 8
    sha = hashlib.sha256(header.getvalue())
    chunk = bytes(1 << 20)
    for _ in range(nbytes // len(chunk)):
        sha.update(chunk)
    sha.update(bytes(nbytes % len(chunk)))
    entry = {"sha256": sha.hexdigest(), "bytes": len(header.getvalue()) + nbytes}
    entry |= {"dtype": "<f8", "shape": list(shape), "nbytes": nbytes}
    parts = members(src)
    meta = json.loads(parts.pop("meta.json"))
    meta["manifest"][name] = entry
    parts.pop(name)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", json.dumps(meta))
        for other, raw in parts.items():
            zf.writestr(other, raw)
        info = zipfile.ZipInfo(name)
        info.compress_type = compress
        with zf.open(info, "w", force_zip64=True) as out:
            out.write(header.getvalue())
            for _ in range(nbytes // len(chunk)):
                out.write(chunk)
            out.write(bytes(nbytes % len(chunk)))


def allocated_while(fn) -> tuple[Exception | None, int]:
    """The exception ``fn`` raised and the peak bytes Python and numpy allocated."""
    tracemalloc.start()
    try:
        fn()
    except Exception as exc:
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return None, 0


def refused(path: Path, *names: str) -> str:
    """The one-line BundleError of loading ``path``; it names the bundle and ``names``."""
    with pytest.raises(BundleError) as info:
        leanfit.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for name in names:
        assert name in message, message
    return message


# --------------------------------------------------------------------------- the format


def test_manifest_lists_every_member_with_its_hash_and_shape(sgd):
    parts = members(sgd)
    meta = json.loads(parts["meta.json"])
    assert meta["bundle_version"] == 2
    assert set(meta["manifest"]) == set(parts) - {"meta.json"}
    for name, entry in meta["manifest"].items():
        assert entry["sha256"] == hashlib.sha256(parts[name]).hexdigest()
        assert entry["bytes"] == len(parts[name])
        if name.endswith(".npy"):
            array = np.load(io.BytesIO(parts[name]), allow_pickle=False)
            assert (entry["dtype"], entry["shape"]) == (array.dtype.str, list(array.shape))
            assert entry["nbytes"] == array.nbytes


def test_version_1_bundles_still_load_and_predict_the_same(sgd, data, tmp_path):
    old = rewrite(sgd, tmp_path / "v1.leanfit", {}, meta=as_v1)
    np.testing.assert_array_equal(
        leanfit.load(old).predict_proba(data), leanfit.load(sgd).predict_proba(data)
    )


def test_every_model_kind_loads_through_the_checks(data, sgd, mlp, xgb):
    for path in (sgd, mlp, xgb):
        p = leanfit.load(path).predict_proba(data)
        assert p.shape == (3_000, 2) and np.isfinite(p).all()


# --------------------------------------------------------------------------- sizes


def test_a_zip_bomb_that_claims_gigabytes_is_refused_before_allocating(sgd, tmp_path):
    """A few KB in the zip whose headers and manifest claim a 4 GB array."""
    member = "arrays/coef_.npy"
    shape = (499_999_984,)  # 4.0 GB of float64, header included: under 2**32
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    raw = header.getvalue() + bytes(4096)
    claimed = len(header.getvalue()) + shape[0] * 8

    def claim(meta):
        meta["manifest"][member] |= {"bytes": claimed, "nbytes": shape[0] * 8, "shape": [*shape]}
        return meta

    bomb = rewrite(sgd, tmp_path / "bomb.leanfit", {member: raw}, meta=claim)
    claim_size(bomb, member, claimed)
    error, peak = allocated_while(lambda: leanfit.load(bomb))
    assert isinstance(error, BundleError) and "zip bomb" in str(error), error
    assert member in str(error) and peak < 50 * MB, peak


def test_a_manifest_claiming_more_than_the_zip_holds_is_refused(sgd, tmp_path):
    member = "arrays/coef_.npy"

    def claim(meta):
        meta["manifest"][member]["bytes"] = 12_700_000_000
        return meta

    edited = rewrite(sgd, tmp_path / "claim.leanfit", {}, meta=claim)
    assert "12,700,000,000" in refused(edited, member, "manifest")


def test_a_genuinely_huge_member_that_compresses_to_nothing_is_refused(sgd, tmp_path):
    """64 MB of zeros deflated to ~64 KB: file_size is true, the ratio (~1000x) is not
    what model parameters compress to."""
    bomb = tmp_path / "zeros.leanfit"
    write_big_member(sgd, bomb, "arrays/coef_.npy", (1, 8_000_000), zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 2 * MB
    error, peak = allocated_while(lambda: leanfit.load(bomb))
    assert isinstance(error, BundleError) and "zip bomb" in str(error), error
    assert peak < 20 * MB, peak


def test_arrays_over_the_memory_budget_are_refused_before_reading(sgd, tmp_path):
    """40 MB stored uncompressed (no ratio to judge): the budget alone refuses it."""
    big = tmp_path / "big.leanfit"
    write_big_member(sgd, big, "arrays/coef_.npy", (1, 5_000_000), zipfile.ZIP_STORED)
    limit = current_rss() + 30 * MB
    error, peak = allocated_while(lambda: leanfit.load(big, memory=Monitor(limit)))
    assert isinstance(error, MemoryBudgetExceeded), error
    message = str(error)
    assert str(big) in message and "needs" in message and "--memory-limit" in message
    assert peak < 20 * MB, peak
    with pytest.raises(BundleError, match=r"coef_\.npy: shape \(1, 5000000\)"):
        leanfit.load(big)  # without a budget it is read, and its shape is wrong


MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
)


def test_predict_under_a_memory_limit_refuses_a_bundle_too_big_for_it(sgd, data, tmp_path):
    """200 MB of parameters (stored, honest headers and manifest) under 460MB: loading
    it would take the process past the limit; the OS's peak says it was not loaded."""
    big = tmp_path / "big.leanfit"
    write_big_member(sgd, big, "arrays/coef_.npy", (1, 25_000_000), zipfile.ZIP_STORED)
    out = tmp_path / "p.csv"
    command = [sys.executable, "-m", "leanfit.cli", "predict", big, data, "--out", out]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, command), "--memory-limit", "460MB"],
        capture_output=True,
        text=True,
        check=True,
    )
    code, peak = map(int, done.stdout.split())
    lines = done.stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert str(big) in lines[0] and "needs" in lines[0] and "460MB" in lines[0]
    assert peak < parse_limit("460MB"), f"peak {peak / MB:.0f} MB"
    assert not out.exists()


# --------------------------------------------------------------------------- contents


def test_nan_coefficients_are_refused(sgd, tmp_path):
    coef = np.load(io.BytesIO(members(sgd)["arrays/coef_.npy"]))
    coef[0, 3] = np.nan
    edited = rewrite(sgd, tmp_path / "nan.leanfit", {"arrays/coef_.npy": npy_bytes(coef)})
    assert "NaN" in refused(edited, "arrays/coef_.npy")


def test_nan_coefficients_in_a_version_1_bundle_are_refused(sgd, tmp_path):
    coef = np.load(io.BytesIO(members(sgd)["arrays/coef_.npy"]))
    coef[0, 0] = np.inf

    edited = rewrite(
        sgd, tmp_path / "v1.leanfit", {"arrays/coef_.npy": npy_bytes(coef)}, meta=as_v1
    )
    refused(edited, "arrays/coef_.npy", "infinite")


def test_a_coefficient_matrix_of_the_wrong_shape_is_refused(sgd, tmp_path):
    coef = np.load(io.BytesIO(members(sgd)["arrays/coef_.npy"]))
    edited = rewrite(sgd, tmp_path / "shape.leanfit", {"arrays/coef_.npy": npy_bytes(coef[:, 1:])})
    refused(edited, "arrays/coef_.npy", f"shape (1, {coef.shape[1] - 1})", f"{coef.shape[1]}")


def test_an_encoder_with_another_feature_count_is_refused(sgd, tmp_path):
    def drop_numeric(encoder):
        encoder["numeric"] = encoder["numeric"][1:]
        return encoder

    edited = rewrite(sgd, tmp_path / "enc.leanfit", {"encoder.json": drop_numeric})
    refused(edited, "arrays/coef_.npy", "features")


def test_an_mlp_layer_of_the_wrong_shape_is_refused(mlp, tmp_path):
    layer = np.load(io.BytesIO(members(mlp)["arrays/intercepts_[0].npy"]))
    edited = rewrite(
        mlp, tmp_path / "mlp.leanfit", {"arrays/intercepts_[0].npy": npy_bytes(layer[:-1])}
    )
    refused(edited, "intercepts_[0]")


def test_a_booster_with_another_feature_list_is_refused(xgb, tmp_path):
    def drop_feature(model):
        model["features"] = model["features"][1:]
        return model

    edited = rewrite(xgb, tmp_path / "xgb.leanfit", {"model.json": drop_feature})
    refused(edited, "arrays/booster.npy", "features")


def test_a_booster_with_another_class_count_is_refused(xgb, tmp_path):
    edited = rewrite(xgb, tmp_path / "xgb.leanfit", {"model.json": lambda m: m | {"n_classes": 3}})
    refused(edited, "arrays/booster.npy", "classes")


def test_an_object_array_is_refused_without_unpickling_it(sgd, tmp_path):
    """Kills the mutant that reads arrays with allow_pickle=True (or skips the dtype
    check): unpickling this array would create ``marker``."""
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    array = np.empty(1, dtype=object)
    array[0] = Payload()
    raw = npy_bytes(array, allow_pickle=True)
    assert b"unpickled" in raw
    pickle.loads(raw[raw.index(b"\x80") :])[0].close()  # the payload is live: opens marker
    assert marker.exists()
    marker.unlink()
    edited = rewrite(sgd, tmp_path / "obj.leanfit", {"arrays/coef_.npy": raw})
    refused(edited, "arrays/coef_.npy", "dtype object holds Python objects")
    assert not marker.exists()


def test_a_newer_format_says_which_leanfit_reads_it(sgd, tmp_path):
    def future(meta):
        meta["versions"]["leanfit"] = "9.1.0"
        return meta | {"bundle_version": 3, "manifest": "a new kind"}

    edited = rewrite(sgd, tmp_path / "v3.leanfit", {}, meta=future)
    message = refused(edited, "made by leanfit 9.1.0 (bundle format 3)", "reads formats 1-2")
    assert "upgrade leanfit" in message


def test_a_changed_byte_fails_the_sha256(sgd, tmp_path):
    coef = np.load(io.BytesIO(members(sgd)["arrays/coef_.npy"]))
    coef[0, 1] += 1.0
    changed = {"arrays/coef_.npy": npy_bytes(coef)}
    edited = rewrite(sgd, tmp_path / "sha.leanfit", changed, manifest=False)
    refused(edited, "arrays/coef_.npy", "sha256")
    schema = rewrite(
        sgd,
        tmp_path / "schema.leanfit",
        {"schema.json": lambda s: s | {"rows": s["rows"] - 1}},
        manifest=False,
    )
    refused(schema, "schema.json", "sha256")


# --------------------------------------------------------------------------- the CLI


def _truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def _renamed(src: Path, dst: Path) -> Path:
    parts = members(src)
    parts["arrays/coef.npy"] = parts.pop("arrays/coef_.npy")
    with zipfile.ZipFile(dst, "w") as zf:
        for name, raw in parts.items():
            zf.writestr(name, raw)
    return dst


EDITS = {
    "truncated zip": _truncated,
    "member renamed": _renamed,
    "extra member": lambda s, d: rewrite(s, d, {"arrays/extra.npy": npy_bytes(np.zeros(3))}),
    "extra member, not in the manifest": lambda s, d: rewrite(
        s, d, {"arrays/extra.npy": npy_bytes(np.zeros(3))}, manifest=False
    ),
    "pickle member": lambda s, d: rewrite(s, d, {"model.pkl": b"\x80\x04K\x01."}),
    "member removed": lambda s, d: rewrite(s, d, {"arrays/intercept_.npy": None}),
    "json not json": lambda s, d: rewrite(s, d, {"encoder.json": b"{not json"}),
    "json of the wrong types": lambda s, d: rewrite(
        s, d, {"encoder.json": lambda e: e | {"numeric": 5}}
    ),
    "schema without classes": lambda s, d: rewrite(
        s, d, {"schema.json": lambda e: e | {"classes": []}}
    ),
    "unknown model class": lambda s, d: rewrite(
        s, d, {"model.json": lambda m: m | {"class": "os.system"}}
    ),
    "edited scalar setting": lambda s, d: rewrite(
        s, d, {"model.json": lambda m: m | {"scalars": {"n_features_in_": 7}}}
    ),
    "bad npy header": lambda s, d: rewrite(
        s,
        d,
        {"arrays/coef_.npy": b"\x93NUMPY\x01\x00\x10\x00{garbage}      \n"},
        manifest=False,
        meta=as_v1,
    ),
    "manifest entry malformed": lambda s, d: rewrite(
        s, d, {}, meta=lambda m: m | {"manifest": {**m["manifest"], "schema.json": "x"}}
    ),
    "format not a number": lambda s, d: rewrite(
        s, d, {}, meta=lambda m: m | {"bundle_version": "2"}
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_bundle_is_one_error_line_and_no_output(sgd, data, tmp_path, edit):
    edited = EDITS[edit](sgd, tmp_path / "edited.leanfit")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(main, ["predict", str(edited), str(data), "--out", str(out)])
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {edited}"), result.stderr
    assert not out.exists()


def test_a_model_of_two_thousand_classes_loads(tmp_path):
    """Its metrics' confusion matrix (4 million counts, mostly 0) is JSON that deflates
    far more than parameters do; JSON is capped by size, not judged by its ratio."""
    rng = np.random.default_rng(0)
    labels = np.arange(6_000) % 2_000
    frame = pd.DataFrame({"x": labels + rng.random(6_000), "label": [f"k{i}" for i in labels]})
    frame.to_csv(tmp_path / "classes.csv", index=False)
    out = tmp_path / "many.leanfit"
    leanfit.train(tmp_path / "classes.csv", target="label", model="nb", out=out)
    with zipfile.ZipFile(out) as zf:
        meta = zf.getinfo("meta.json")
    assert meta.file_size > 1 << 20 and meta.file_size / meta.compress_size > 200
    assert len(leanfit.load(out).classes) == 2_000
