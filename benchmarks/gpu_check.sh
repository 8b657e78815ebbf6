#!/usr/bin/env bash
# The GPU figures of issue 16 and the CUDA paths, in one call on a lent GPU machine (about 6 min).
#
#   bash benchmarks/gpu_check.sh             # on the GPU machine: logs under $OUT (or ./gpu-check)
#   bash benchmarks/gpu_check.sh --dry-run   # here, on the CPU: the same scripts at tiny size, to check
#                                            # the plumbing before device time is spent
#
# Needs only what the GPU image has (python3 with torch, numpy, pandas, safetensors): the full-size
# models are built with random weights directly on the GPU, ours alone (no diffusers), and nothing
# here imports ray, PyAV or diffusers. Each step has its own time limit, so one that hangs still
# leaves the others' figures; every log is copied under $OUT as it is written.
#   1. nvidia-smi and the torch build.
#   2. generate_speed.py --cuda: 121x512x768, 20 steps, CFG 3, bf16, SDPA (flash / memory-efficient):
#      wall, text / per-step / decode, peak memory, MFU, x the FLOP-bound time (target <= 1.5x) and
#      x the paper's 2 s. Then the same with --compile (regional torch.compile of the DiT blocks).
#   3. scaling.py --gpu: one training step loop of the small and full DiT at 121x512x768 on every
#      visible GPU: nccl process group, FSDP2 (fully_shard) with bf16 mixed precision and activation
#      checkpointing; step time, tokens/s, MFU, peak memory against `inspect`'s estimate.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=()
[ "${1:-}" = "--dry-run" ] && dry=(--dry-run)
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ ${#dry[@]} -gt 0 ] && py=.venv/bin/python

step() {  # step NAME SECONDS CMD...: run with a limit, log to $out/NAME.txt, say how it ended
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s (limit $limit s)" >>"$out/$name.txt"
  tail -n 25 "$out/$name.txt"
}

{ nvidia-smi 2>&1 || echo "no nvidia-smi"; "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"; } >"$out/machine.txt" 2>&1
cat "$out/machine.txt"
steps=(--steps 20)
[ ${#dry[@]} -gt 0 ] && steps=(--steps 3)
step generate 150 "$py" benchmarks/generate_speed.py --cuda "${dry[@]}" "${steps[@]}" --repeats 5
step generate_compiled 200 "$py" benchmarks/generate_speed.py --cuda --compile "${dry[@]}" "${steps[@]}" --repeats 5
step scaling 150 "$py" benchmarks/scaling.py --gpu "${dry[@]}" --steps 8
