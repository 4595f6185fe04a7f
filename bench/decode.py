#!/usr/bin/env python3
"""Decode throughput: mammo-io (`read_image`) against pydicom (`dcmread` + `pixel_array`), side by side.

    python3 bench/decode.py [--repeat M] [--dir DIR] [--results bench/RESULTS.md] [--no-append]

1. Writes full-field mammogram-like images (4096 x 3328 and 4700 x 2900, 16 bits allocated, 14 stored, a
   breast shape with texture and noise on a flat background, as tests/fixtures/gen_dicom.py draws them) as
   Explicit VR Little Endian and RLE Lossless DICOM files (pydicom; RLE encoded with pylibjpeg-rle).
2. Times pydicom on each file M times, in this process: `dcmread(path).pixel_array` with every RLE decoder
   pydicom has here (its own numpy one, 'pydicom', and pylibjpeg-rle, 'pylibjpeg', when installed).
3. Builds and runs mammo-io's timer (`cargo test --release -p mammo-io --test decode_bench -- --ignored`),
   which reads the same files M times with `mammo_io::read_image` and prints JSON.
4. Prints a table of ms/image and the ratios, and appends it to bench/RESULTS.md with the machine.

Both sides run one decode at a time on one thread, each file read once first (page cache warm), and the
median of M runs is reported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom import uid as U  # noqa: E402

import gen_dicom as G  # noqa: E402  (same image model and dataset builder as the fixtures)

SIZES = [(4096, 3328), (4700, 2900)]  # rows, cols
BITS_STORED = 14


def make_files(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(G.SEED + 99)
    files = []
    from pydicom.pixels.encoders import RLELosslessEncoder
    rle_plugin = "pylibjpeg" if "pylibjpeg" in RLELosslessEncoder.available_plugins else "pydicom"
    for rows, cols in SIZES:
        img = G.mammogram(rng, rows, cols, BITS_STORED)
        for fmt in ("explicit", "rle"):
            name = f"bench_{rows}x{cols}_{fmt}"
            path = out / f"{name}.dcm"
            ds = G.base_dataset(name, rows, cols, bits_stored=BITS_STORED)
            if fmt == "explicit":
                G.set_native(ds, img, U.ExplicitVRLittleEndian)
            else:
                ds.compress(U.RLELossless, img, encoding_plugin=rle_plugin, generate_instance_uid=False)
            if not path.exists():
                ds.save_as(path, enforce_file_format=True)
            files.append({"name": name, "path": str(path), "format": fmt, "rows": rows, "cols": cols,
                          "bytes": path.stat().st_size})
    return files


def time_pydicom(path: str, repeat: int, plugin: str | None) -> list[float]:
    def once() -> float:
        t = time.perf_counter()
        ds = pydicom.dcmread(path)
        if plugin:
            ds.pixel_array_options(decoding_plugin=plugin)
        arr = ds.pixel_array
        t = time.perf_counter() - t
        assert arr.shape == (ds.Rows, ds.Columns)
        return t

    once()  # warm-up (page cache, imports, plugin discovery)
    return [once() for _ in range(repeat)]


def run_ours(files: list[dict], repeat: int) -> dict[str, dict]:
    env = dict(os.environ, MAMMOGAN_BENCH_FILES="\n".join(f["path"] for f in files),
               MAMMOGAN_BENCH_REPEAT=str(repeat))
    cmd = ["cargo", "test", "--release", "-p", "mammo-io", "--test", "decode_bench", "--", "--ignored",
           "--nocapture", "--test-threads=1"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"decode.py: {' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    out = {}
    for line in p.stdout.splitlines():
        at = line.find("BENCH_JSON ")  # the test harness may print "test decode_bench ... " first
        if at >= 0:
            r = json.loads(line[at + len("BENCH_JSON "):])
            out[r["file"]] = r
    if len(out) != len(files):
        sys.exit(f"decode.py: expected {len(files)} results from mammo-io, got {len(out)}:\n{p.stdout}")
    return out


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "mammogan-bench")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true", help="print only, do not append to RESULTS.md")
    a = ap.parse_args()

    from pydicom.pixels.decoders import RLELosslessDecoder
    rle_plugins = list(RLELosslessDecoder.available_plugins)  # 'pydicom' always, 'pylibjpeg' with pylibjpeg-rle
    default_rle = next(iter(RLELosslessDecoder._available))  # the one pixel_array tries first

    t0 = time.time()
    files = make_files(a.dir)
    print(f"wrote {len(files)} files to {a.dir} in {time.time() - t0:.1f} s", file=sys.stderr)
    ours = run_ours(files, a.repeat)

    rows = []
    for f in files:
        mp = f["rows"] * f["cols"] / 1e6
        o = ours[f["path"]]
        row = {"file": f["name"], "format": f["format"], "size": f"{f['rows']}x{f['cols']}", "mp": mp,
               "mb": f["bytes"] / 1e6, "ours_ms": o["median_ms"], "ours_best": o["best_ms"], "py": {}}
        plugins = [None] if f["format"] == "explicit" else rle_plugins
        for plugin in plugins:
            ts = time_pydicom(f["path"], a.repeat, plugin)
            row["py"][plugin or "native"] = (statistics.median(ts) * 1e3, min(ts) * 1e3)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    head = ["image (rows x cols)", "format", "file MB", "pydicom decoder", "pydicom ms (median / best)",
            "mammo-io ms (median / best)", "mammo-io MP/s (median)", "speed-up, median (best)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        for plugin, (ms, best) in r["py"].items():
            label = {"native": "native (numpy)", "pydicom": "RLE: pydicom's own (numpy)",
                     "pylibjpeg": "RLE: pylibjpeg-rle"}[plugin]
            if plugin == default_rle:
                label += " (default)"
            lines.append(f"| {r['size']} | {r['format']} | {r['mb']:.1f} | {label} | {ms:.1f} / {best:.1f} | "
                         f"{r['ours_ms']:.1f} / {r['ours_best']:.1f} | {r['mp'] / (r['ours_ms'] / 1e3):.0f} | "
                         f"{ms / r['ours_ms']:.1f}x ({best / r['ours_best']:.1f}x) |")
    import importlib.metadata as md
    vers = ", ".join(f"{p} {md.version(p)}" for p in ("pydicom", "numpy", "pylibjpeg", "pylibjpeg-rle")
                     if _installed(p))
    report = "\n".join([
        f"## {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} — {cpu_model()}, {os.cpu_count()} cores",
        "",
        f"Command: `python3 bench/decode.py --repeat {a.repeat}` (median of {a.repeat} decodes per file, one "
        f"thread, warm page cache; {BITS_STORED} bits stored in 16). Python {platform.python_version()}: {vers}. "
        f"pydicom's default RLE decoder here: `{default_rle}`.",
        "",
        *lines,
        "",
    ])
    print(report)
    if not a.no_append:
        with open(a.results, "a") as fh:
            if a.results.stat().st_size == 0:
                fh.write("# Decode benchmark results\n\nAppended by `bench/decode.py`; newest last.\n\n")
            fh.write(report + "\n")
        print(f"appended to {a.results}", file=sys.stderr)


def _installed(dist: str) -> bool:
    import importlib.metadata as md
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
