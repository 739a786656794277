"""The CLIP model: weights resolved from a tag, a local checkpoint or seeded random init (weights),
and batched image / text encoding on the best device (encoder).  Shared by ingest (frames), query
(text and image queries) and learn."""
