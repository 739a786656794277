"""The ingestion job on Ray Data.

    work rows --flat_map(decode_rows, CPU tasks, `decode_workers` at once)--> frame rows
              --map_batches(EncodeActor, `batch_size` frames across videos, GPU or CPU actors)-->
              vector rows --> this driver: assemble per video, aggregate, single committer -> LanceDB

The driver is the single committer, so LanceDB sees bulk writes from one writer.  Ray retries a
decode task whose worker died and restarts a dead encoder actor; rows a retried task delivers
twice are dropped here by (video_id, position), and a video already finished ignores late rows,
so the committed row set is exact.  Every work item ends ok or failed: one the pipeline never
answered for is recorded as failed, never lost.
"""

from __future__ import annotations

import contextlib

import logging
import queue as queue_mod
import threading
import time
from typing import Iterable

from vidclip.ingest.committer import CommitPolicy, Committer
from vidclip.config import DecodeConfig, ModelConfig, SamplingConfig
from vidclip.errors import StallError
from vidclip.model.geometry import FrameGeometry
from vidclip.ingest.video import Failure, IngestReport, Skip, Work, triage
from vidclip.store.store import Store
from vidclip.ingest.watchdog import DEFAULT_STALL_S, StallWatchdog

from pipelines.assembly import Assembler
from pipelines.cluster import ray_session
from pipelines.options import JobOptions
from pipelines.stages import EncodeActor, decode_rows, hash_chunk

log = logging.getLogger("vidclip")
RAY_START_S = 900.0  # the stall allowance before the pipeline's first result (worker start-up)


def run_on_ray(
    store: Store,
    entries: Iterable,
    model: ModelConfig,
    dim: int,
    geometry: FrameGeometry,
    aggregator,
    temporal_name: str,
    sampling: SamplingConfig,
    decode: DecodeConfig,
    options: JobOptions,
    retry_failed: bool = False,
    commit: CommitPolicy = CommitPolicy(),
    progress: bool = True,
    total: int | None = None,
    stall_s: float = DEFAULT_STALL_S,
) -> IngestReport:
    committer = Committer.begin(store, dim, commit, progress, total)
    waiting = {"for": lambda: "the Ray cluster to start or answer"}

    def committed() -> str:
        return f"{committer.committed_videos} video(s) of this run"

    def starting() -> bool:
        import ray

        return not ray.is_initialized() or all(n.get("Alive") for n in ray.nodes())

    # Every wait on Ray is watched, from ray.init to the last result.  Until the pipeline's first
    # result the workers are still starting (importing torch, building the model): allow at least
    # RAY_START_S for that, even under a short stall timeout, unless the cluster loses a node
    # meanwhile (then nothing is starting: the stall timeout applies).
    watchdog = StallWatchdog(stall_s, lambda: waiting["for"](), committed, first_s=RAY_START_S, starting=starting)
    # The Ray session (entered in `stack`) ends after the watchdog has stopped asking Ray questions.
    with contextlib.ExitStack() as stack, watchdog:
        session: dict = {}

        def cluster():
            """Ray, started (or joined) on first use: a rerun whose files are all known unchanged
            (same path, size and mtime) needs no hashing and no pipeline, so it never starts Ray."""
            if "ray" not in session:
                session["ray"] = stack.enter_context(ray_session(options))
            return session["ray"]

        hashed = {"n": 0}

        def hasher(uris: list[str]) -> dict[str, str]:
            if "hash" not in session:  # the remote function is made once, at the first batch to hash
                ray = cluster()
                waiting["for"] = lambda: _waiting_for(ray, f"Ray tasks hashing the inputs ({hashed['n']} done)", "hash tasks")
                session["hash"] = _ray_hasher(ray, decode.storage)
            return session["hash"](uris)

        work: dict[str, Work] = {}
        for item in triage(entries, store.sources(), store.video_status(), retry_failed, hasher, options.hash_batch):
            watchdog.tick(started=False)
            hashed["n"] += 1
            if isinstance(item, Skip):
                committer.skipped(item)
            elif isinstance(item, Failure):
                committer.failed(item, item.error)
            else:
                work[item.video_id] = item
        if work:
            _run_pipeline(cluster(), work, model, dim, geometry, aggregator, temporal_name, sampling, decode, options,
                          committer, watchdog, waiting)
    return committer.close()


def _run_pipeline(ray, work, model, dim, geometry, aggregator, temporal_name, sampling, decode, options, committer,
                  watchdog, waiting) -> None:
    import ray.data

    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    node_cpus = min((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=cpus)
    actors, threads = options.resolved_encoders(gpus, cpus, node_cpus)
    decode_workers = options.resolved_decode_workers(cpus, 0.0 if gpus >= 1 else float(actors * threads))
    rows = [{"video_id": w.video_id, "uri": w.entry.uri} for w in work.values()]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    # Ray's defaults already retry a task whose worker died and restart a dead actor (retrying its
    # batch); our own errors are never raised out of the stages, they travel as "error" rows.
    ds = ds.flat_map(
        decode_rows,
        fn_kwargs={"sampling": sampling, "decode": decode, "geometry": geometry},
        compute=ray.data.TaskPoolStrategy(size=decode_workers),
        num_cpus=1,
    )
    # A GPU actor takes no CPU slot, or it can starve the decode tasks of theirs.
    placement = {"num_gpus": 1, "num_cpus": 0} if gpus >= 1 else {"num_cpus": threads}
    ds = ds.map_batches(
        EncodeActor,
        fn_constructor_kwargs={"model": model, "batch_size": options.batch_size, "threads": threads},
        batch_size=options.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **placement,
    )
    log.info("ray: %d video(s), %d decode worker(s), %d encoder actor(s) on %s", len(rows), decode_workers, actors,
             "GPU" if gpus >= 1 else f"CPU ({threads} thread(s) each)")
    with Assembler(work, dim, aggregator, temporal_name, sampling.max_frames, committer) as assembler:
        waiting["for"] = lambda: _waiting_for(
            ray, f"results for {len(work) - len(assembler.finished)} video(s) from the Ray pipeline",
            "decode tasks", f"; {decode_workers} decode worker(s) wanted")
        batches = _watched(ds.iter_batches(batch_size=None, batch_format="numpy"), watchdog, lambda: _stop_execution(ds))
        with contextlib.closing(batches):
            for batch in batches:
                watchdog.tick()
                assembler.take(batch)
        for item in assembler.unanswered():
            committer.failed(item, "no result from the Ray pipeline (worker lost)")


_END = object()


# How long a job that leaves Ray Data's iterator early (a stall, Ctrl-C, an error) waits for Ray Data's
# threads to stop before Ray is shut down.
STOP_S = 30.0


def _stop_execution(ds) -> None:
    """Stop Ray Data's execution of `ds` from this thread, and wait for its scheduling thread to end.

    Ray Data runs a dataset on threads of its own (the scheduler, block prefetchers) that call into
    Ray until the execution is shut down; it shuts it down itself only when its iterator is used up
    or raises in the thread that iterates.  Left running when a job stops early, those threads call
    into Ray after ray.shutdown(), and Ray's core then ends the whole process with status 1 ("The
    core worker has already been shutdown ... The process will exit"): a loaded test run lost its
    pytest process that way after a stalled Ray job.  The executor of this dataset's current run is
    found among the live threads (it is one, named after the dataset id; Ray Data keeps a handle on
    it only once the first block is out, and a stall may come before that)."""
    try:
        from ray.data._internal.execution.streaming_executor import StreamingExecutor
    except ImportError:  # a Ray Data whose internals moved: test_watchdog's Ray stall test says so
        log.warning("cannot stop Ray Data's execution (its executor class moved in this Ray version)")
        return
    wanted = ds.get_dataset_id()
    for thread in threading.enumerate():
        if isinstance(thread, StreamingExecutor) and getattr(thread, "_dataset_id", None) == wanted:
            thread.shutdown(force=True)
            thread.join(STOP_S)


def _watched(batches, watchdog: StallWatchdog, stop_execution=lambda: None):
    """Ray Data's batches, pulled on a thread of their own, so this (main) thread waits with a
    timeout and sees the watchdog's verdict itself.  A driver joined to a cluster that lost a node
    was seen to stay in Ray Data's iterator through every SIGINT the watchdog sent.

    Closed early, it stops the execution (`stop_execution`) and waits for the pulling thread to end,
    so nothing of Ray Data's still calls into Ray when the session shuts Ray down."""
    box: queue_mod.Queue = queue_mod.Queue(maxsize=2)  # a little read-ahead; Ray Data backpressures the rest
    stop = threading.Event()

    def offer(item) -> bool:
        """Put `item` unless the consumer has gone; False once it has."""
        while not stop.is_set():
            try:
                box.put(item, timeout=0.5)
                return True
            except queue_mod.Full:
                continue
        return False

    def pump() -> None:
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            offer(exc)

    puller = threading.Thread(target=pump, name="vidclip-ray-batches", daemon=True)
    puller.start()
    try:
        while True:
            try:
                item = box.get(timeout=1.0)
            except queue_mod.Empty:
                if watchdog.message is not None:
                    raise StallError(watchdog.message) from None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        if watchdog.message is not None:
            watchdog.acknowledge()  # stopping on its verdict: its next interrupt would cut this clean-up short
        if puller.is_alive():
            # On a thread of its own, with a deadline: stopping talks to the cluster, which may be
            # the thing that stopped answering (nothing watches this clean-up any more).
            deadline = time.monotonic() + STOP_S
            stopper = threading.Thread(target=stop_execution, name="vidclip-ray-stop", daemon=True)
            stopper.start()
            stopper.join(STOP_S)
            puller.join(max(0.0, deadline - time.monotonic()))
            if puller.is_alive():
                log.warning("Ray Data's iterator did not stop within %.0fs; shutting Ray down anyway", STOP_S)


def _waiting_for(ray, what: str, tasks: str, wanted: str = "") -> str:
    """What a stalled Ray job waits for (`what`), and the cluster's own view of why."""
    parts = [what]
    nodes = ray.nodes()
    dead = [n for n in nodes if not n.get("Alive")]
    if dead:
        lost = ", ".join(str(n.get("NodeManagerAddress", "?")) for n in dead[:3])
        parts.append(f"{len(dead)} of {len(nodes)} node(s) lost ({lost})")
    total = ray.cluster_resources().get("CPU", 0.0)
    free = ray.available_resources().get("CPU", 0.0)
    if free < 1:
        parts.append(f"no free CPU for {tasks} ({free:g} of {total:g} free{wanted})")
    return "; ".join(parts)


def _ray_hasher(ray, storage):
    """Hash files (and objects) in parallel Ray tasks, a chunk of uris per task."""
    remote = ray.remote(num_cpus=1)(hash_chunk)

    def hasher(uris: list[str]) -> dict[str, str]:
        step = max(1, len(uris) // 8)
        refs = [remote.remote(uris[i : i + step], storage) for i in range(0, len(uris), step)]
        out: dict[str, str] = {}
        for part in ray.get(refs):
            out.update(part)
        return out

    return hasher
