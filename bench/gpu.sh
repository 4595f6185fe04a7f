#!/usr/bin/env bash
# The device check for a machine with an NVIDIA GPU (issue 18). Builds nothing: it runs binaries built
# beforehand and writes every figure to one Markdown file.
#
#   bench/gpu.sh [RESULT_FILE]        (default: gpu-bench-YYYYmmdd-HHMMSS.md here)
#
# Environment:
#   MAMMOGAN_WGPU_BIN  the `--features wgpu` binary (default: $CARGO_TARGET_DIR/release/mammogan, with
#                      CARGO_TARGET_DIR defaulting to /var/tmp/mammogan-target as in scripts/test)
#   MAMMOGAN_CUDA_BIN  the `--features cuda` binary, if one was built (optional)
#   BENCH_SECONDS      seconds of each training benchmark (default 30)
#   PYTHON             the Python with torch (bench/requirements-torch.txt) for the PyTorch side
#
# What it does, each part's output into the file:
# 1. `mammogan env` of each binary (the Vulkan adapters and verdicts; the CUDA driver check).
# 2. The timed training benchmark, `mammogan env --bench`: the default classifier (batch 32, 64 px
#    patches, AdamW, the auxiliary mask head) on the first hardware Vulkan adapter (wgpu:N), on CUDA
#    where that build exists, and on the CPU (flex) for scale.
# 3. PyTorch on the same GPU: bench/train_step.py --device cuda (the same classifier step, layer for
#    layer), so the ratio ours / PyTorch is per step of the same work.
# 4. Numerics on the real GPU: tests/gpu/compare.py on a few steps of both models, wgpu vs CPU (the
#    tolerance tests/gpu/run states), and two identical wgpu runs compared bit for bit.
# A missing part (no hardware adapter, no torch) is written down and makes the exit status 2; the other
# parts still run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTFILE="${1:-gpu-bench-$(date -u +%Y%m%d-%H%M%S).md}"
TARGET="${CARGO_TARGET_DIR:-/var/tmp/mammogan-target}"
WGPU_BIN="${MAMMOGAN_WGPU_BIN:-$TARGET/release/mammogan}"
CUDA_BIN="${MAMMOGAN_CUDA_BIN:-}"
SECONDS_EACH="${BENCH_SECONDS:-30}"
PY="${PYTHON:-python3}"
TOLERANCE=1e-3
STATUS=0
W="$(mktemp -d /tmp/mammogan-gpu-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT

say() { printf '%s\n' "$*" | tee -a "$OUTFILE"; }
block() { { echo '```'; cat "$1"; echo '```'; } >> "$OUTFILE"; cat "$1"; }
missing() { say "**Not measured:** $*"; STATUS=2; }
json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

: > "$OUTFILE"
say "# mammogan GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
say ""
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$W/smi" 2>&1 || true
say "GPU (nvidia-smi): $(tr '\n' ';' < "$W/smi")"

[ -x "$WGPU_BIN" ] || { say "no wgpu binary at $WGPU_BIN: build it first (cargo build --release -p mammogan --features wgpu)"; exit 1; }
"$WGPU_BIN" --version >/dev/null || exit 1
json_features() { "$1" env --json 2>/dev/null > "$W/envj" ; json "$W/envj" "','.join(d['build']['features'])"; }
[[ ",$(json_features "$WGPU_BIN")," == *",wgpu,"* ]] || { say "$WGPU_BIN was not built with --features wgpu"; exit 1; }

say ""
say "## 1. mammogan env"
say ""
say "wgpu build ($WGPU_BIN):"
"$WGPU_BIN" env > "$W/env-wgpu" 2>&1
block "$W/env-wgpu"
"$WGPU_BIN" env --json > "$W/env-wgpu.json" 2>/dev/null
if [ -n "$CUDA_BIN" ]; then
  say "CUDA build ($CUDA_BIN):"
  "$CUDA_BIN" env > "$W/env-cuda" 2>&1
  block "$W/env-cuda"
fi
# The first hardware adapter, as `--device auto` would take it (never lavapipe/llvmpipe).
ADAPTER="$(json "$W/env-wgpu.json" "next((a['index'] for a in d['environment'].get('vulkan_adapters', []) \
  if a['kind'] == 'discrete'), next((a['index'] for a in d['environment'].get('vulkan_adapters', []) \
  if a['kind'] not in ('cpu',) and 'llvmpipe' not in a['name']), ''))")"

say ""
say "## 2. Training benchmark (mammogan env --bench: default classifier, batch 32, 64 px, ${SECONDS_EACH} s each)"
say ""
say "| device | steps/s | ms/step |"
say "|---|---|---|"
bench() { # bench LABEL BIN DEVICE
  if timeout $((SECONDS_EACH * 4 + 300)) "$2" env --json --bench --device "$3" --bench-seconds "$SECONDS_EACH" \
    > "$W/bench.json" 2> "$W/bench.err"; then :; fi
  local sps
  sps="$(json "$W/bench.json" "d['bench']['steps_per_s'] if d.get('bench') else ''" 2>/dev/null)"
  if [ -n "$sps" ]; then
    say "| $1 | $(printf '%.2f' "$sps") | $("$PY" -c "print(f'{1000/$sps:.1f}')") |"
  else
    say "| $1 | failed: $(tail -1 "$W/bench.err") | |"; STATUS=2
  fi
}
if [ -n "$ADAPTER" ]; then
  bench "wgpu:$ADAPTER ($(json "$W/env-wgpu.json" "d['environment']['vulkan_adapters'][$ADAPTER]['name']"))" \
    "$WGPU_BIN" "wgpu:$ADAPTER"
else
  missing "no hardware Vulkan adapter (see the vulkan check above: NVIDIA_DRIVER_CAPABILITIES must include graphics)"
fi
[ -n "$CUDA_BIN" ] && bench "cuda:0 (CUDA build)" "$CUDA_BIN" cuda:0
bench "flex (CPU, all cores)" "$WGPU_BIN" cpu

say ""
say "## 3. PyTorch on the same GPU (bench/train_step.py --device cuda)"
say ""
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  timeout 1200 "$PY" bench/train_step.py --device cuda --models classifier,attribution --rounds 3 --steps 20 \
    --warmup 3 --no-append > "$W/torch" 2>&1 || STATUS=2
  block "$W/torch"
else
  missing "PyTorch with CUDA is not importable by $PY (python3 -m pip install -r bench/requirements-torch.txt)"
fi

say ""
say "## 4. Numerics on this GPU: wgpu vs CPU (tolerance $TOLERANCE), and wgpu run to run"
say ""
if [ -n "$ADAPTER" ]; then
  export MAMMOGAN_KEY_FILE="$W/key"
  M() { "$WGPU_BIN" --quiet "$@" >> "$W/log" 2>&1; }
  SMALL=(--set train.steps=4 --set train.log_every=1 --set train.checkpoint_every=0 --set train.image_every=0
    --set train.batch_size=8 --set attribution.gen_channels=4 --set attribution.critic_channels=4)
  if M phantom --out "$W/phantom" --cases 24 --seed 3 --width-mm 80 --spacing-mm 0.4 \
    && M prepare --format phantom --input "$W/phantom" --out "$W/dataset" --patch-size 32 \
    && M train --data "$W/dataset" --out "$W/cpu" --device cpu "${SMALL[@]}" \
    && M train --data "$W/dataset" --out "$W/wgpu" --device "wgpu:$ADAPTER" "${SMALL[@]}" \
    && M train --data "$W/dataset" --out "$W/wgpu2" --device "wgpu:$ADAPTER" "${SMALL[@]}"; then
    { "$PY" tests/gpu/compare.py "$W/cpu" "$W/wgpu" --tolerance "$TOLERANCE" || STATUS=2
      echo "two identical wgpu runs: $("$PY" tests/gpu/compare.py "$W/wgpu" "$W/wgpu2" --bitwise)"; } > "$W/num" 2>&1
    block "$W/num"
  else
    block "$W/log"; missing "the short training runs failed (log above)"
  fi
else
  missing "numerics: no hardware Vulkan adapter"
fi

say ""
say "exit status $STATUS; written to $OUTFILE"
exit $STATUS
