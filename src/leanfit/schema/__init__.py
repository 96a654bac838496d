"""What the data is: the Schema (:mod:`.columns`), the statistics of the inspect pass
with their merge rules (:mod:`.statistics`, :mod:`.counting`, :mod:`.sketches`), the
rules that choose kinds and storage types (:mod:`.rules`) and the local pass
(:mod:`.inspection`)."""

from leanfit.schema.columns import Column, Schema
from leanfit.schema.inspection import inspect

__all__ = ["Column", "Schema", "inspect"]
