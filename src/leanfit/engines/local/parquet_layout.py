"""How ``leanfit shrink`` lays out its Parquet file, for lean readers.

* **Row groups sized in bytes** (:func:`leanfit.costs.group_rows`): a reader
  decodes a whole row group at a time, so a group holds about
  :data:`~leanfit.costs.GROUP_BYTES` as parsed, whatever the width of a row; the
  rows per group are written in the footer (:data:`GROUP_ROWS_KEY`), where the
  planner reads them.
* **Text as dictionaries where that is smaller** in memory than plain text
  (:func:`leanfit.costs.dictionary_pays`): pandas then reads a categorical. Each row
  group holds only the levels it uses, so a reader never decodes a level list of
  the whole file per row group.
* **pandas metadata** for what pandas would otherwise widen: dates stay ``date32``
  and integers or booleans with nulls keep their width (pyarrow-backed dtypes)
  instead of becoming objects or float64.

Frames are streamed from Polars' engine one row group at a time and written by
pyarrow's ParquetWriter, which keeps that metadata (Polars' writer drops it).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from leanfit.costs import dictionary_pays, group_rows
from leanfit.io.readers import GROUP_ROWS_KEY
from leanfit.memory import Monitor
from leanfit.schema.columns import Schema

TEXT_TYPES = (pl.String, pl.Categorical, pl.Enum)


def write_shrunk(lf: pl.LazyFrame, path: str | Path, schema: Schema, memory: Monitor) -> None:
    """Write ``lf`` (the schema's columns in their storage types) to Parquet at ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = group_rows(schema)
    layout = arrow_layout(lf.collect_schema(), schema)
    coded = [f.name for f in layout if not pa.types.is_floating(f.type)]
    with pq.ParquetWriter(path, layout, compression="zstd", use_dictionary=coded) as writer:
        for frame in lf.collect_batches(chunk_size=rows):
            memory.check()
            writer.write_table(as_layout(frame, layout), row_group_size=rows)
        # in the footer only, not in the Arrow schema, which a rewrite would carry over
        writer.add_key_value_metadata({GROUP_ROWS_KEY: str(rows)})


def arrow_layout(types: pl.Schema, schema: Schema):
    """The Arrow schema of the file: Polars' own types, text as a dictionary where
    that pays, and pandas metadata."""
    import pyarrow as pa

    fields = []
    for field in pl.DataFrame(schema=types).to_arrow().schema:
        col = schema.column(field.name)
        if isinstance(types[field.name], TEXT_TYPES):
            levels = col.distinct if col.distinct_exact else None  # else an estimate
            text = pa.dictionary(_index_type(levels), pa.string())
            text = text if dictionary_pays(col, schema.rows) else pa.large_string()
            field = field.with_type(text).remove_metadata()  # not Polars' Enum levels
        fields.append(field)
    widened = [f for f in fields if _widened_by_pandas(f.type, schema.column(f.name).nulls)]
    return pa.schema(fields, metadata={"pandas": json.dumps(pandas_metadata(widened))})


def _index_type(levels: int | None):
    """The narrowest signed index type for ``levels`` levels (None: not known exactly)."""
    import pyarrow as pa

    if levels is None:
        return pa.int32()
    return pa.int8() if levels <= 127 else pa.int16() if levels <= 32_767 else pa.int32()


def _widened_by_pandas(dtype, nulls: int) -> bool:
    """Whether pandas reads ``dtype`` wider than it is: dates become objects, integers
    with nulls float64, booleans with nulls objects."""
    import pyarrow as pa

    nullable = pa.types.is_integer(dtype) or pa.types.is_boolean(dtype)
    return pa.types.is_date32(dtype) or (nullable and nulls > 0)


def pandas_metadata(fields: list) -> dict:
    """pandas' metadata giving ``fields`` their pyarrow-backed dtypes (``uint8[pyarrow]``,
    ``date32[day][pyarrow]``); pandas reads other columns as it would anyway."""
    columns = [
        {
            "name": f.name,
            "field_name": f.name,
            "pandas_type": "date" if str(f.type).startswith("date") else str(f.type),
            "numpy_type": f"{f.type}[pyarrow]",
            "metadata": None,
        }
        for f in fields
    ]
    return {"index_columns": [], "column_indexes": [], "columns": columns}


def as_layout(frame: pl.DataFrame, layout):
    """One frame as an Arrow table of ``layout``: dictionary columns encoded with the
    levels this frame uses."""
    import pyarrow as pa

    table = frame.to_arrow()
    columns = []
    for field in layout:
        column = table.column(field.name).combine_chunks()
        if pa.types.is_dictionary(field.type):
            encoded = column.cast(pa.string()).dictionary_encode()
            indices = encoded.indices.cast(field.type.index_type)
            column = pa.DictionaryArray.from_arrays(indices, encoded.dictionary)
        else:
            column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=layout)
