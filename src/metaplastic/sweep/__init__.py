"""Sweeps: grids of independent cells on one machine or a Dask cluster (``metaplastic sweep``).

* :mod:`.grid`: the TOML grid file, cells, validation and content keys.
* :mod:`.executor`: where cells run (serial, local processes, dask.distributed).
* :mod:`.tasks`: what a worker runs (a cell, or seeds batched as one ensemble).
* :mod:`.run`: the driver (one result file per cell, resume, retries, progress).
* :mod:`.results`: results.csv / Parquet, SUMMARY.md and the plot.
"""
