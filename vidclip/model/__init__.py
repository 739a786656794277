"""The CLIP model: weights resolved from a tag, a local checkpoint or seeded random init (weights),
batched image / text encoding on the best device (encoder), the frame size decoders should deliver
for it (geometry), and CLIP4Clip checkpoint import (clip4clip).  Shared by ingest (frames), query
(text and image queries) and learn."""

import warnings

# open_clip imports huggingface_hub, which imports tqdm.auto; in a Jupyter kernel without
# ipywidgets that warns "IProgress not found" on import.  vidclip draws no notebook progress
# widget, so the warning is about nothing the user asked for.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")
