"""Where the stages run: :mod:`.local` (this process) and :mod:`.dask` (a Dask
cluster). Both call the same stages below them; the Dask engine adds only what
differs on a cluster: partitions, task placement and merging of results."""
