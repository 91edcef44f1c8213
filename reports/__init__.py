"""Reports on finished runs: layer 4 of 6 (imports ``broker``, ``checkpoints``, ``pipeline``).

``diff`` and ``diff_page`` (what a new run changed), ``run`` and
``run_page`` (what a run took and cost; ``RunReport`` writes
``_REPORT.json`` as a job ends; ``timeline``, its images per second in
buckets that fit the run), ``outputs`` (reading a run's parts),
``incremental`` (what an incremental run skips: its base joined with the listing),
``page`` and ``charts`` (the HTML pages).
"""
