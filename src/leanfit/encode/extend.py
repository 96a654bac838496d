"""An encoder grown with new category levels (``leanfit update --extend-categories``).

A one-hot categorical gets one new slot per new level, placed before its unknown
slot; one whose rarer levels share hashed slots gets the new levels in its level
list, so each goes to its hashed slot instead of the unknown one (no new columns). Everything else is unchanged:
the standardisation and the levels already known keep their meaning.

>>> enc = Encoder(categorical=[{"name": "c", "levels": ["a"], "slots": [0], "width": 2}],
...               numeric=[{"name": "x", "mean": 0.0, "std": 1.0, "indicator": False}])
>>> grown, columns = with_new_levels(enc, {"c": ["b", "z"]})
>>> grown.feature_names, columns.tolist()
(['x', 'c=a', 'c=b', 'c=z', 'c=<unknown>'], [0, 1, 4])
"""

from __future__ import annotations

import numpy as np

from leanfit.encode.encoder import Encoder, hashed_slot, own_levels


def with_new_levels(encoder: Encoder, new: dict[str, list[str]]) -> tuple[Encoder, np.ndarray]:
    """The encoder with ``new`` levels (by column) added, and where each of the old
    encoder's features is in the new one (column indices)."""
    raw = encoder.to_dict()
    columns = list(range(encoder.n_dense))
    start = encoder.n_dense
    for c in raw["categorical"]:
        added = [level for level in new.get(c["name"], []) if level not in set(c["levels"])]
        old_width = c["width"]
        if c.get("hashed", not c["levels"]):
            own = own_levels(c)
            width = c["width"] - 1 - own
            c["slots"] = c["slots"] + [hashed_slot(level, own, width) for level in added]
        else:
            c["slots"] = c["slots"] + list(range(len(c["levels"]), len(c["levels"]) + len(added)))
            c["width"] += len(added)
        c["levels"] = c["levels"] + added
        columns += [start + j for j in range(old_width - 1)] + [start + c["width"] - 1]
        start += c["width"]
    columns += range(start, start + len(encoder.sparse_numeric))  # encode.sparse: last
    return Encoder.from_dict(raw), np.asarray(columns, dtype=np.intp)
