"""Connecting to Ray: a local cluster started on demand (loopback only, no dashboard), or an
existing cluster by address.  Ray Data's own progress bars and chatter are turned off so the CLI
prints its own progress on stderr and `--json` output stays clean on stdout."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import sys
import warnings

from vidclip.errors import VidclipError

from pipelines.options import JobOptions, default_object_store_bytes

log = logging.getLogger("vidclip")

CONNECT_TIMEOUT_S = 5.0  # a cluster address that does not answer within this is refused


class ClusterError(VidclipError):
    """Ray could not be started or joined."""


def _import_ray_for_loopback():
    """Import ray so that a local cluster binds every socket to 127.0.0.1.

    Ray only keeps a local node on loopback when it believes it runs on a desktop OS; the switch is
    this environment variable, read when ray is imported.  If ray was imported earlier, the same
    constant is set on the module."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Token authentication stays on, with a fresh random token for this process's local clusters (no
    # token file under ~/.ray, no warning).  Ray reads these when it is imported, so they are only
    # set before the first import: set afterwards, the driver and the new cluster would disagree.
    if "ray" not in sys.modules and "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    import ray
    from ray._private import ray_constants

    if getattr(ray_constants, "ENABLE_RAY_CLUSTER", False):
        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


@contextlib.contextmanager
def ray_session(options: JobOptions):
    """Ray for the duration of a job.  Ray's own messages (e.g. "(raylet) A worker died ...") are
    printed on stdout by a background thread; stdout is pointed at stderr meanwhile, so a
    `--json` report on stdout stays clean."""
    address, source = cluster_address(options.ray_address)
    if address:
        resolved = check_reachable(address, source)
        address = resolved if address == "auto" else address  # never Ray's own search for "any" cluster
    ray = _import_ray_for_loopback() if not address else __import__("ray")
    # lancedb warns on every fork; Ray and the decode sandbox fork only to exec a new program.
    warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)
    for name in ("ray", "ray.data", "ray._private"):  # before ray.init too (_quiet_ray_data runs after it)
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):
        with _session(ray, options, address):
            yield ray


def cluster_address(given: str | None) -> tuple[str | None, str]:
    """(address to join, where it came from): --ray-address, else RAY_ADDRESS, else None (start a
    local cluster).  Ray itself ignores RAY_ADDRESS when asked for a local cluster."""
    if given:
        return given, "--ray-address"
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env:
        return env, "RAY_ADDRESS"
    return None, ""


def check_reachable(address: str, source: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """Resolve `auto` to the cluster `ray start` recorded on this machine (never, as Ray's own `auto`
    may, to whatever other Ray instance happens to run here), and make sure something answers at
    the address, in seconds: ray.init would retry a dead or stale address for minutes, silently.
    Returns HOST:PORT."""
    if address == "auto":
        record = os.path.join(_ray_temp_dir(), "ray_current_cluster")
        try:
            with open(record, encoding="utf-8") as fh:
                resolved = fh.read().strip()
        except OSError:
            resolved = ""
        if not resolved:
            raise ClusterError(f"{source} auto: no Ray cluster was started on this machine ({record} is missing): "
                               "start one with 'ray start --head', or give HOST:PORT")
        where = f"{source} auto found {resolved} (recorded in {record})"
    else:
        resolved = address.split("://", 1)[-1]
        where = f"{source} {address}"
    host, _, port = resolved.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{where}: expected HOST:PORT, 'auto' or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"{where}, but nothing answers there ({exc.strerror or exc}): start the "
                           "cluster or fix the address") from None
    return resolved


def _ray_temp_dir() -> str:
    """Where `ray start` records the cluster it started (Ray's own rule: RAY_TMPDIR, TMPDIR, /tmp)."""
    base = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None)
    return os.path.join(base or "/tmp", "ray")


def describe_init_failure(exc: BaseException, where: str) -> str:
    """One line for a failed ray.init; token authentication is named when it is the cause."""
    raw = " ".join(str(exc).split())
    if re.search(r"auth|unauthenticated|token", raw, re.IGNORECASE):
        return (f"Ray at {where} refused this driver: the cluster uses token authentication; export RAY_AUTH_MODE=token "
                f"and RAY_AUTH_TOKEN=<the cluster's token> (or RAY_AUTH_TOKEN_PATH=FILE) and run again ({raw[:160]})")
    return f"cannot start or join Ray ({where}): {raw[:200]}"


@contextlib.contextmanager
def _session(ray, options: JobOptions, address: str | None):
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
            if address:
                ray.init(address=address, runtime_env=env, **kwargs)
            else:
                ray.init(
                    address="local",
                    object_store_memory=options.object_store_bytes or default_object_store_bytes(),
                    runtime_env=env,
                    **kwargs,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(describe_init_failure(exc, address or "a local cluster")) from None
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
    ctx.execution_options.verbose_progress = False
    # Small blocks: a decode task's frames stream to the encoders while it still runs, so a long
    # video never sits whole in the object store.
    ctx.target_max_block_size = 8 << 20
    for name in ("ray", "ray.data", "ray._private"):
        logging.getLogger(name).setLevel(logging.ERROR)
