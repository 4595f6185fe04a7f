#!/usr/bin/env python3
"""Preparing full-field mammograms: `mammogan prepare` against the same pipeline in pydicom + numpy/scipy.

    python3 bench/prepare.py [--cases N] [--dir DIR] [--results bench/RESULTS.md] [--no-append]

1. Writes N phantom mammograms at full-field size (`mammogan phantom --width-mm 203 --spacing-mm 0.07`:
   2900 x 3480 px, 14 bits; DICOM in rotating transfer syntaxes: explicit, implicit, deflated, RLE).
2. Times `mammogan prepare --format phantom` with 1 thread and with all cores.
3. Times the reference a Python user would write, one thread: pydicom decode, MONOCHROME1 inversion,
   anti-aliased resampling to 0.4 mm (scipy.ndimage uniform filter + linear zoom), Otsu threshold, largest
   connected component and hole filling (scipy.ndimage), orientation, percentile normalisation, lesion masks
   (PNG via imagecodecs) resampled alongside, and the same number of 64 px patches cut and written as .npy.
4. Prints seconds per image for both and the ratio, and appends it to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/mammogan-target"))


def build() -> Path:
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "mammogan"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    return TARGET / "release" / "mammogan"


def reference_prepare(phantom: Path, out: Path, spacing=0.4, size=64, per_lesion=4, normal=4, seed=0) -> int:
    rng = np.random.default_rng(seed)
    manifest = json.loads((phantom / "phantom.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    patches = []
    for case in manifest["cases"]:
        ds = pydicom.dcmread(phantom / case["image"])
        img = ds.pixel_array.astype(np.float32)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            img = float(2 ** ds.BitsStored - 1) - img
        src = float(ds.ImagerPixelSpacing[0])
        f = src / spacing
        img = ndimage.zoom(ndimage.uniform_filter(img, size=max(1, round(1 / f))), f, order=1)
        masks = []
        for les in case["lesions"]:
            m = imagecodecs.png_decode((phantom / les["mask"]).read_bytes()) > 0
            masks.append(ndimage.zoom(m.astype(np.float32), f, order=1) >= 0.5)
        hist, edges = np.histogram(img, bins=256)
        w0 = np.cumsum(hist); w1 = w0[-1] - w0
        mids = (edges[:-1] + edges[1:]) / 2
        m0 = np.cumsum(hist * mids) / np.maximum(w0, 1)
        m1 = (np.sum(hist * mids) - np.cumsum(hist * mids)) / np.maximum(w1, 1)
        t = mids[np.argmax(w0 * w1 * (m0 - m1) ** 2)]
        lab, n = ndimage.label(img > t)
        if n == 0:
            continue
        breast = ndimage.binary_fill_holes(lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1))
        img[~breast] = 0
        band = max(1, img.shape[1] // 10)
        if breast[:, -band:].sum() > breast[:, :band].sum():
            img, breast = img[:, ::-1], breast[:, ::-1]
            masks = [m[:, ::-1] for m in masks]
        lo, hi = np.percentile(img[breast], [1, 99])
        img = np.where(breast, np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1), 0)
        pad = np.pad(img, size)
        for m in masks:
            ys, xs = np.nonzero(m)
            if len(ys) == 0:
                continue
            for _ in range(per_lesion):
                cy, cx = (int(ys.mean() + rng.uniform(-10, 10)), int(xs.mean() + rng.uniform(-10, 10)))
                patches.append(pad[cy + size // 2: cy + size // 2 + size, cx + size // 2: cx + size // 2 + size])
        for _ in range(normal):
            y = rng.integers(0, img.shape[0] - size); x = rng.integers(0, img.shape[1] - size)
            patches.append(img[y:y + size, x:x + size])
    np.save(out / "patches.npy", (np.stack(patches) * 65535).round().astype(np.uint16))
    return len(patches)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "mammogan-bench-prepare")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    exe = build()
    shutil.rmtree(a.dir, ignore_errors=True)
    a.dir.mkdir(parents=True)
    ph = a.dir / "phantom"
    subprocess.run([str(exe), "-q", "phantom", "--out", str(ph), "--cases", str(a.cases), "--width-mm", "203",
                    "--spacing-mm", "0.07"], check=True)

    def timed(f):
        t = time.perf_counter(); r = f(); return time.perf_counter() - t, r

    rows = []
    for threads in (1, 0):
        out = a.dir / f"ds{threads}"
        s, _ = timed(lambda: subprocess.run([str(exe), "-q", "prepare", "--format", "phantom", "--input", str(ph),
                                             "--out", str(out), "--threads", str(threads)], check=True))
        rows.append((f"mammogan prepare, {'1 thread' if threads == 1 else f'{os.cpu_count()} threads'}", s))
    s, n = timed(lambda: reference_prepare(ph, a.dir / "ref"))
    rows.append(("pydicom + numpy/scipy, 1 thread", s))
    ref = rows[-1][1]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    lines = [
        f"### Prepare: {a.cases} full-field phantom images (2900 x 3480, 14-bit DICOM) to 64 px patches at 0.4 mm",
        "",
        f"{dt.date.today()}, {cpu}, {os.cpu_count()} cores; command: `python3 bench/prepare.py --cases {a.cases}`",
        "",
        "| pipeline | s total | s / image | speed-up vs reference |",
        "|---|---|---|---|",
    ]
    for name, s in rows:
        lines.append(f"| {name} | {s:.2f} | {s / a.cases:.3f} | {ref / s:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.no_append:
        with open(a.results, "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
