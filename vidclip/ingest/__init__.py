"""Ingest: a library of video files -> rows in a store.

manifest (what to ingest) -> probe (what a file is) -> sampling (which frames) -> decoder (those
frames, in a sandbox child process) -> model encoder (frame vectors) -> video (clips aggregated by a
temporal module, rows) -> committer (bulk, crash-safe writes).  runner is the in-process loop over
these stages; pipelines/ runs the same stages on Ray.  watchdog ends a job that stops making progress.
"""
