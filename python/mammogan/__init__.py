"""Read what mammogan writes into pandas, show its images, and call the binary.

Everything here reads files the Rust binary documents (README: The DATASET directory, Reproducible
runs): nothing is recomputed, so a notebook shows exactly what a run or a DATASET holds.

    import mammogan as mg
    ds = mg.Dataset("data/dataset")      # dataset.json, index.csv, patches, masks
    run = mg.Run("runs/r1")              # manifest.json, metrics.jsonl, eval/metrics.json, overlays
    run.metrics()                        # one row per (step, model), one column per metric
    mg.compare_runs(["runs/r1", "runs/r2"])
    mg.run("train", "--data", "data/dataset", "--out", "runs/r3", "--set", "train.steps=50")
"""

from .data import Dataset, Run, compare_runs, read_metrics
from .display import show_image, show_images
from .binary import MammoganError, binary, run
from . import examples

__all__ = [
    "Dataset",
    "Run",
    "compare_runs",
    "read_metrics",
    "show_image",
    "show_images",
    "MammoganError",
    "binary",
    "run",
]
__version__ = "0.1.0"
