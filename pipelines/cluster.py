"""Connecting to Ray: a local cluster started on demand (loopback only, no dashboard), or an
existing cluster by address.  Ray Data's own progress bars and chatter are turned off so the CLI
prints its own progress on stderr and `--json` output stays clean on stdout."""

from __future__ import annotations

import contextlib
import logging
import os

from vidclip.errors import VidclipError

from pipelines.options import JobOptions, default_object_store_bytes

log = logging.getLogger("vidclip")


class ClusterError(VidclipError):
    """Ray could not be started or joined."""


@contextlib.contextmanager
def ray_session(options: JobOptions):
    import ray

    started_here = False
    if not ray.is_initialized():
        kwargs = dict(
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
        # Workers must import the project exactly as the driver does.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)}}
        try:
            if options.ray_address:
                ray.init(address=options.ray_address, runtime_env=env, **kwargs)
            else:
                ray.init(
                    address="local",
                    _node_ip_address="127.0.0.1",
                    object_store_memory=options.object_store_bytes or default_object_store_bytes(),
                    runtime_env=env,
                    **kwargs,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = options.ray_address or "a local cluster"
            raise ClusterError(f"cannot start or join Ray ({where}): {' '.join(str(exc).split())[:200]}") from None
        started_here = True
    _quiet_ray_data()
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def _quiet_ray_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if hasattr(ctx, "enable_operator_progress_bars"):
        ctx.enable_operator_progress_bars = False
    for name in ("ray", "ray.data", "ray._private"):
        logging.getLogger(name).setLevel(logging.WARNING)
