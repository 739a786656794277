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
import tempfile
import warnings

from vidclip.errors import VidclipError

from pipelines.options import JobOptions, default_object_store_bytes

log = logging.getLogger("vidclip")

CONNECT_TIMEOUT_S = 5.0  # a cluster address that does not answer within this is refused


class ClusterError(VidclipError):
    """Ray could not be started or joined."""


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback():
    """Ray, imported so that a private local cluster binds every socket to 127.0.0.1, for one session.

    Ray only keeps a local node on loopback when it believes it runs on a desktop OS; the switch is
    an environment variable read when ray is imported (and by the processes the cluster starts), and
    the constant it sets.  Both are restored when the session ends: left behind, a later join to a
    real cluster from the same process would advertise 127.0.0.1 as the driver's address, and a
    `ray start --address` run from it would refuse to join ("not supported on Windows and OSX")."""
    saved_env = os.environ.get(LOOPBACK_ENV)
    os.environ.setdefault(LOOPBACK_ENV, "0")
    # Token authentication stays on, with a fresh random token for this process's local clusters (no
    # token file under ~/.ray, no warning).  Ray reads these when it is imported, so they are only
    # set before the first import: set afterwards, the driver and the new cluster would disagree.
    if "ray" not in sys.modules and "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield ray
    finally:
        if saved_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved_env
        # Ray's own rule, on the caller's environment (ray may have been imported above, with "0").
        ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(LOOPBACK_ENV, not ray_constants.IS_WINDOWS_OR_OSX)


@contextlib.contextmanager
def ray_session(options: JobOptions):
    """Ray for the duration of a job.  Ray's own messages (e.g. "(raylet) A worker died ...") are
    printed on stdout by a background thread, and its C++ core writes to file descriptor 2.  Both go
    to a log file (`ray_log_path`) unless logging is at DEBUG (`vidclip -v`), so a `--json` report on
    stdout stays clean and stderr holds vidclip's own lines only.  (The CLI writes its own stderr
    through a duplicate of descriptor 2, vidclip/cli/main.py, so pointing 2 elsewhere loses nothing
    of vidclip's; a program that did not do that keeps Ray's lines on its stderr.)"""
    address, source = cluster_address(options.ray_address)
    if address:
        resolved = check_reachable(address, source)
        address = resolved if address == "auto" else address  # never Ray's own search for "any" cluster
    with contextlib.ExitStack() as stack:
        ray = stack.enter_context(_loopback()) if not address else __import__("ray")
        # lancedb warns on every fork; Ray and the decode sandbox fork only to exec a new program.
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)
        for name in ("ray", "ray.data", "ray._private"):  # before ray.init too (_quiet_ray_data runs after it)
            logging.getLogger(name).setLevel(logging.ERROR)
        out = stack.enter_context(_ray_output())
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(_session(ray, options, address))
        yield ray


def ray_log_path() -> str:
    return os.path.join(tempfile.gettempdir(), f"vidclip-ray-{os.getpid()}.log")


@contextlib.contextmanager
def _ray_output():
    """Where Ray's output goes for the session: a text stream for its Python prints, and file
    descriptor 2 pointed at the same log file while vidclip's own stderr is a duplicate of it."""
    own_stderr = sys.stderr
    try:
        separate = own_stderr.fileno() != 2
    except (AttributeError, OSError, ValueError):
        separate = False
    if logging.getLogger().isEnabledFor(logging.DEBUG) or not separate:
        yield own_stderr
        return
    path = ray_log_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        with os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace") as log_text:
            yield log_text
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        with contextlib.suppress(OSError):
            if os.path.getsize(path) == 0:
                os.unlink(path)


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


def _ray_log_tail(limit: int = 1 << 16) -> str:
    """The end of what Ray's C++ core wrote during this session (the reason a join failed is there:
    ray.init itself only says "Failed to connect to Ray cluster")."""
    try:
        with open(ray_log_path(), "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def describe_init_failure(exc: BaseException, where: str, native_log: str = "") -> str:
    """One line for a failed ray.init; token authentication is named when it is the cause (Ray's
    core logs "Unauthenticated: ... InvalidAuthToken" while ray.init retries, then gives up with
    "Failed to connect to Ray cluster")."""
    raw = " ".join(str(exc).split())
    if re.search(r"auth|unauthenticated|token", raw + " " + native_log, re.IGNORECASE):
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
                    _system_config=local_system_config(),
                    **kwargs,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(describe_init_failure(exc, address or "a local cluster", _ray_log_tail())) from None
        started_here = True
    _quiet_ray_data()
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def local_system_config() -> dict:
    """Ray settings for a cluster vidclip starts for one job.  Ray starts its workers at niceness 15
    (so that on a big shared cluster they yield to the raylet and GCS), which on a busy machine
    starves the job: against two ordinary busy processes on 2 cores a local ingest ran 9x slower than
    quiet (201 s against 21 s), its workers given ~3% of the CPU while the in-process runner ran at
    the user's own priority.  A private local cluster is the user's job, so its workers run at the
    driver's niceness; RAY_worker_niceness, when set, is the user's choice and is left to Ray."""
    if "RAY_worker_niceness" in os.environ:
        return {}
    return {"worker_niceness": 0}


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
