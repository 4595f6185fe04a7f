"""What the example notebooks share: a small phantom DATASET and runs on it, made once and reused."""

import os

from .binary import run

# Small enough for a notebook cell on a laptop CPU; the notebooks' STEPS sets the training length.
SMALL = ["--set", "train.batch_size=8", "--set", "attribution.gen_channels=8", "--set", "attribution.critic_channels=8"]


def ensure_dataset(work, cases=40, seed=3):
    """WORK/phantom (synthetic mammograms with exact masks) and WORK/dataset, prepared from it."""
    work = os.fspath(work)
    phantom, dataset = os.path.join(work, "phantom"), os.path.join(work, "dataset")
    if not os.path.isdir(phantom):
        run("phantom", "--out", phantom, "--cases", cases, "--seed", seed, "--width-mm", 80, "--spacing-mm", 0.4)
    if not os.path.isdir(dataset):
        run("prepare", "--format", "phantom", "--input", phantom, "--out", dataset, "--patch-size", 32)
    return dataset


def ensure_run(work, name, steps, *extra):
    """WORK/NAME trained on WORK/dataset for `steps` steps (extra: more train arguments), unless it is there."""
    out = os.path.join(os.fspath(work), name)
    if not os.path.isfile(os.path.join(out, "model", "classifier.safetensors")):
        data = ensure_dataset(work)
        run("train", "--data", data, "--out", out, "--set", f"train.steps={steps}", "--set", "train.log_every=1", *SMALL, *extra)
    return out
