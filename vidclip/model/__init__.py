"""The CLIP model: weights resolved from a tag, a local checkpoint or seeded random init (weights),
batched image / text encoding on the best device (encoder), the frame size decoders should deliver
for it (geometry), and CLIP4Clip checkpoint import (clip4clip).  Shared by ingest (frames), query
(text and image queries) and learn."""

import warnings

from vidclip.deferral import defer_vision_packages

# Before anything here imports torchvision or open_clip: what open_clip does not use of torchvision
# and timm (their models, ops and torch._dynamo) is imported only if somebody asks (vidclip/deferral.py).
defer_vision_packages()

# open_clip imports huggingface_hub, which imports tqdm.auto; in a Jupyter kernel without
# ipywidgets that warns "IProgress not found" on import.  vidclip draws no notebook progress
# widget, so the warning is about nothing the user asked for.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")
