"""Ray Data stages.  Rows are plain scalar columns (bytes for frames and vectors), so blocks
of different videos concatenate whatever their frame sizes.

decode row ->  frame rows  {video_id, kind="frame", position, frame(bytes), height, width, meta=b""}
               + one end row {video_id, kind="done", meta=pickle(VideoFacts, done-info)}
                 or          {video_id, kind="error", meta=reason}
encode     ->  same rows with `vector` (float32 bytes) instead of `frame`
"""

from __future__ import annotations

import pickle

import numpy as np

from vidclip.config import DecodeConfig, ModelConfig, SamplingConfig
from vidclip.errors import MediaError
from vidclip.ingest.sandbox import CHUNK, DONE, FACTS, make_decoder

FRAME, END, ERROR = "frame", "done", "error"

# One decode sandbox per Ray worker process, reused by every task that worker runs.
_DECODERS: dict = {}


def _decoder(decode: DecodeConfig):
    key = (decode.job, decode.timeout_s, decode.isolate)
    if key not in _DECODERS:
        _DECODERS[key] = make_decoder(decode.job, decode.timeout_s, decode.isolate)
    return _DECODERS[key]


def _row(video_id: str, kind: str, position: int = -1, frame: bytes = b"", h: int = 0, w: int = 0, meta: bytes = b"") -> dict:
    return {"video_id": video_id, "kind": kind, "position": position, "frame": frame, "height": h, "width": w, "meta": meta}


def decode_rows(row: dict, sampling: SamplingConfig, decode: DecodeConfig, geometry):
    """flat_map stage: one work row -> the video's frame rows and one end row, streamed."""
    vid, uri = row["video_id"], row["uri"]
    facts = None
    try:
        for kind, payload in _decoder(decode).run(uri, sampling, decode, geometry):
            if kind == FACTS:
                facts = payload
            elif kind == CHUNK:
                for pos, frame in zip(payload.position, payload.frames):
                    h, w = frame.shape[:2]
                    yield _row(vid, FRAME, int(pos), np.ascontiguousarray(frame).tobytes(), h, w)
            elif kind == DONE:
                yield _row(vid, END, meta=pickle.dumps((facts, payload)))
    except MediaError as exc:
        yield _row(vid, ERROR, meta=exc.reason.encode())


class EncodeActor:
    """map_batches stage on actors: the model is built inside the worker, never pickled."""

    def __init__(self, model: ModelConfig, batch_size: int, threads: int = 0):
        from vidclip.model.encoder import Encoder

        if threads:  # a CPU actor uses the cores Ray reserved for it, no more (decode tasks hold the rest)
            import torch

            torch.set_num_threads(threads)
        self.encoder = Encoder.load(model, batch_size=batch_size)

    def __call__(self, batch: dict) -> dict:
        kinds = np.asarray(batch["kind"])
        idx = np.flatnonzero(kinds == FRAME)  # (N,)
        vectors = [b""] * len(kinds)
        if len(idx):
            frames = [
                np.frombuffer(batch["frame"][i], np.uint8).reshape(int(batch["height"][i]), int(batch["width"][i]), 3)
                for i in idx
            ]
            encoded = self.encoder.encode_frames(frames, normalize=False).numpy().astype(np.float32)  # (N, D) raw
            for j, i in enumerate(idx):
                vectors[i] = encoded[j].tobytes()
        return {
            "video_id": batch["video_id"],
            "kind": kinds,
            "position": batch["position"],
            "vector": np.array(vectors, dtype=object),
            "meta": batch["meta"],
        }


def hash_chunk(uris: list[str], storage) -> dict[str, str]:
    from vidclip.ingest.video import hash_files

    return hash_files(uris, storage)
