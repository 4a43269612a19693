#!/usr/bin/env bash
# One script for a session that is lent a GPU: the GPU tests, then the capture, attention,
# lens and at-scale benchmarks on CUDA in bf16 and fp16 (and a two-GPU device map when there
# are two). Each step has its own timeout, 450 s in all (under 8 minutes even if every step
# hits it; a step that times out is reported and the next one runs). Without CUDA it runs the GPU tests only to see them skip, and exits 0.
#
#     bash benchmarks/gpu_check.sh            # from the repository root; log on stdout
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
status=0
step() {  # step SECONDS TITLE COMMAND...: run, report, remember a failure, go on
  local limit=$1 title=$2
  shift 2
  echo; echo "== $title"
  local start=$SECONDS
  timeout "$limit" "$@" || { echo "!! $title failed (exit $?)"; status=1; }
  echo "   ($((SECONDS - start)) s)"
}

gpus=$($PY -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
if [ "$gpus" = "0" ]; then
  echo "gpu_check: no CUDA device here; the GPU tests should all skip"
  step 120 "GPU tests (expect skips)" $PY -m pytest -q -rs tests/test_gpu.py
  exit $status
fi
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
$PY -c 'import torch, transformers, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__, "accelerate", accelerate.__version__)'

step 120 "GPU tests ($gpus GPUs)" $PY -m pytest -q -rs tests/test_gpu.py
for dtype in bfloat16 float16; do
  step 40 "capture, cuda $dtype" $PY benchmarks/bench_capture.py --device cuda --dtype $dtype --lengths 512 2048 --repeats 3
  step 40 "attention, cuda $dtype" $PY benchmarks/bench_attention.py --device cuda --dtype $dtype --lengths 512 2048 --no-browser --bertviz-max 0
  step 30 "lens, cuda $dtype" $PY benchmarks/bench_lens.py --device cuda --dtype $dtype --tokens 1024 --repeats 3
done
# device map with the far half of the blocks offloaded to the CPU (or on a second GPU)
step 70 "at scale, cuda bfloat16" $PY benchmarks/bench_scale.py --device cuda --dtype bfloat16 --tokens 2048 --memory-tokens 1024 8192 --repeats 3
if [ "$gpus" -ge 2 ]; then
  step 40 "at scale, two GPUs" $PY benchmarks/bench_scale.py --device cuda --far cuda:1 --dtype bfloat16 --tokens 2048 --memory-tokens --repeats 3
fi
echo; echo "gpu_check: done, status $status"
exit $status
