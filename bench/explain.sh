#!/usr/bin/env bash
# Whole-mammogram inference speed (issue 17): `mammogan explain` of one 12-megapixel image at 0.05 mm
# (decode, preparation, every tile, map, overlay and the three PNGs) and batch scoring of a directory,
# with peak memory. There is no peer to run beside it (no PyTorch tool explains a whole mammogram), so the
# figures are absolute; run it on an otherwise idle machine and compare rows of one machine.
#
#   bench/explain.sh RUN [--repeat N] [--images N] [--bin PATH] [--no-append]
#
# RUN is a run directory with trained models (e.g. a quickstart's `run/`: the time does not depend on
# how well it was trained, only on the patch size and the image). The images are phantom DICOMs written
# to $TMPDIR/mammogan-bench-explain: 3200 x 3840 px (12.3 MP) at 0.05 mm, 16-bit. Appends a table with
# the machine, the commit and the command to bench/RESULTS.md unless --no-append.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${1:?usage: bench/explain.sh RUN [--repeat N] [--images N] [--bin PATH] [--no-append]}"; shift
REPEAT=7 IMAGES=8 APPEND=1
BIN="${CARGO_TARGET_DIR:-/var/tmp/mammogan-target}/release/mammogan"
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) REPEAT="$2"; shift 2 ;;
    --images) IMAGES="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --no-append) APPEND=0; shift ;;
    *) echo "bench/explain.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "bench/explain.sh: no binary at $BIN (cargo build --release -p mammogan, or --bin)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/explain.sh: needs GNU time (apt-get install time)" >&2; exit 2; }
DIR="${TMPDIR:-/tmp}/mammogan-bench-explain"
export MAMMOGAN_KEY_FILE="$DIR/pseudonym.key"
if [ ! -d "$DIR/phantom" ] || [ "$(find "$DIR/phantom/images" -name '*.dcm' | wc -l)" -lt "$IMAGES" ]; then
  rm -rf "$DIR"; mkdir -p "$DIR"
  "$BIN" -q phantom --out "$DIR/phantom" --cases "$IMAGES" --seed 17 --spacing-mm 0.05 --width-mm 160
fi
ONE="$DIR/phantom/images/case-00000.dcm"
CORES="$(nproc)"
load() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_BEFORE="$(load)"

# One image, REPEAT times after a warm-up: wall seconds and peak RSS of each run.
"$BIN" -q explain "$RUN" "$ONE" --out "$DIR/one" >/dev/null
walls=() rss=()
for _ in $(seq "$REPEAT"); do
  out="$( { /usr/bin/time -f '%e %M' "$BIN" -q explain "$RUN" "$ONE" --out "$DIR/one" >/dev/null; } 2>&1 | tail -1)"
  walls+=("${out% *}") rss+=("${out#* }")
done
# The directory: every image, once (one process, models loaded once).
out="$( { /usr/bin/time -f '%e %U %S %M' "$BIN" -q explain "$RUN" "$DIR/phantom/images" --out "$DIR/many" >/dev/null; } 2>&1 | tail -1)"
read -r dir_wall dir_user dir_sys dir_rss <<<"$out"
LOAD_AFTER="$(load)"

python3 - "$APPEND" "$DIR/one/result.json" "$IMAGES" "$CORES" "$dir_wall" "$dir_user" "$dir_sys" "$dir_rss" "$LOAD_BEFORE" "$LOAD_AFTER" \
  "$BIN" "$RUN" "${walls[*]}" "${rss[*]}" <<'PY'
import datetime, json, platform, statistics, subprocess, sys
append, result, images, cores, dwall, duser, dsys, drss, lb, la, binary, run, walls, rss = sys.argv[1:]
walls = [float(w) for w in walls.split()]
rss = [int(r) for r in rss.split()]
images, cores, dwall = int(images), int(cores), float(dwall)
res = json.load(open(result))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
mp = res["width"] * res["height"] / 1e6
rows = [
    ("explain, one image (%d x %d px, %.1f MP at %.2f mm, %d tiles), median / best of %d" % (res["width"], res["height"], mp, res["spacing_mm"], res["tiles"], len(walls)),
     "%.2f s / %.2f s" % (statistics.median(walls), min(walls)), "%.0f MiB" % (max(rss) / 1024)),
    ("explain of a directory of %d such images (one process)" % images,
     "%.2f s: %.2f images/s, %.2f images/s per core (CPU %.1f s user + %.1f s system)" % (dwall, images / dwall, images / dwall / cores, float(duser), float(dsys)),
     "%.0f MiB" % (int(drss) / 1024)),
]
table = ["| what | time | peak RSS |", "|---|---|---|"] + ["| %s | %s | %s |" % r for r in rows]
print("\n".join(table))
if append == "1":
    head = "\n## %s — explain of 12-megapixel mammograms (%s, %d cores)\n\n" % (datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), cpu, cores)
    body = ("Command: `bench/explain.sh RUN` (binary `%s`, commit %s). Load average (1/5/15 min) before: %s; after: %s.\n\n" % (binary, commit, lb, la)) + "\n".join(table) + "\n"
    with open("bench/RESULTS.md", "a") as f:
        f.write(head + body)
    print("appended to bench/RESULTS.md")
PY
