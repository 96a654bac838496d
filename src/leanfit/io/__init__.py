"""Inputs and outputs: where data is (:mod:`.source`), scanning it as a stream of
frames (:mod:`.scan`), partitions for the Dask engine (:mod:`.partitions`), finding a
bad line (:mod:`.diagnose`), foreign errors made leanfit errors (:mod:`.translate`)
and outputs written atomically (:mod:`.outputs`)."""
