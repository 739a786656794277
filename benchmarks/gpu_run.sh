#!/usr/bin/env bash
# How benchmarks/gpu.json was produced on a lent GPU machine (the device tool's second call).
# Its Python has torch; vidclip's other dependencies arrive as an xz tarball of their unpacked wheels,
# split in two (one call carries at most 64 MiB): .whl1/p1 was staged to /tmp/stage by the first call.
set -uo pipefail
mkdir -p /tmp/site && cat /tmp/stage/p1 .whl2/p2 | xz -dc -T0 | tar -x -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch, av, decord, lancedb, open_clip, pyarrow, numpy; print('torch', torch.__version__, 'av', av.__version__, 'lancedb', lancedb.__version__, 'open_clip', open_clip.__version__, 'pyarrow', pyarrow.__version__, 'numpy', numpy.__version__)" || exit 1
python3 -m pytest -q -p no:cacheprovider tests/test_encoder.py -k cuda 2>&1 | tee "$OUT/pytest_cuda.log"
python3 -m vidclip bench gpu --budget-s "${BUDGET_S:-400}" --compile --cache /tmp/bench --out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"
