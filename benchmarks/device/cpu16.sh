#!/usr/bin/env bash
# The performance model's blind check on 16 cores, as run on the GPU machine lent to a session (16 cores, no
# TensorFlow, no network): the tensorflow-cpu wheel (less its C++ headers) and the wheels the GPU machine lacks
# arrive in parts under /tmp/parts (see benchmarks/device/README.md). Profiles MobileNetV2 there, then records
# the CPU16 configs of record_grid.py, one round, a second as time allows, and the NVML tests. Writes to $OUT.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/out}
LOG=$OUT/run.log
mkdir -p /tmp/bundle /tmp/site "$OUT"
{
  echo "== host"; nproc; grep -m1 "model name" /proc/cpuinfo; uname -r; python3 --version; nvidia-smi -L
  cat /tmp/parts/part.* | tar -x -C /tmp/bundle || exit 3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/bundle/*.whl
  python3 -m zipfile -e /tmp/bundle/tensorflow_cpu.zip /tmp/site || exit 4  # no unzip there
  echo "== installed in $(( $(date +%s) - T0 )) s"
} >"$LOG" 2>&1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
CHECK="import tensorflow as tf, numpy, google.protobuf as pb; print('tf', tf.__version__, 'numpy', numpy.__version__, 'protobuf', pb.__version__)"
if ! python3 -c "$CHECK" >>"$LOG" 2>&1; then  # the host's numpy may be newer than TensorFlow's: bring ours
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/np /tmp/bundle/np/*.whl
  export PYTHONPATH=$PWD:/tmp/np:/tmp/site
  python3 -c "$CHECK" >>"$LOG" 2>&1 || exit 5
fi
timeout 200 python3 -m autotune.cli profile mobilenet --max-batch 64 --budget-s 10 --transport grpc --json \
  >"$OUT/profile-mobilenet-cpu16.json" 2>>"$LOG"
echo "== profiled at $(( $(date +%s) - T0 )) s" >>"$LOG"
LEFT=$(( ${DEADLINE_S:-380} - ($(date +%s) - T0) ))
python3 benchmarks/record_grid.py --model mobilenet --grid cpu16 --protocol grpc --concurrency 32 --window-s 1 \
  --slo-ms 1000 --max-error-rate 0.001 --repeats 2 --deadline-s "$LEFT" --out "$OUT/grid-mobilenet-cpu16.csv" \
  >>"$LOG" 2>&1
echo "== grid done at $(( $(date +%s) - T0 )) s" >>"$LOG"
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py >>"$LOG" 2>&1
echo "== all done at $(( $(date +%s) - T0 )) s" >>"$LOG"
