"""The CLIP model: weights resolved from a tag, a local checkpoint or seeded random init (weights),
batched image / text encoding on the best device (encoder), the frame size decoders should deliver
for it (geometry), and CLIP4Clip checkpoint import (clip4clip).  Shared by ingest (frames), query
(text and image queries) and learn."""
