"""DATASET and RUN directories as pandas objects."""

import glob
import json
import math
import os

import numpy as np
import pandas as pd

MASK_LESION, MASK_MALIGNANCY, MASK_BREAST = 1, 2, 4


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_metrics(path):
    """metrics.jsonl as a DataFrame: columns step, model and one per metric (NaN where a record lacks it
    or held null). A last line cut short by a kill is skipped, as mammogan's own reader does."""
    rows = []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        lines.pop()  # no newline: a record cut short
    for i, line in enumerate(lines, 1):
        try:
            rows.append({k: (math.nan if v is None else v) for k, v in json.loads(line).items()})
        except ValueError as e:
            raise ValueError(f"{path}:{i}: not JSON: {e}") from None
    if not rows:
        return pd.DataFrame(columns=["step", "model"])
    df = pd.DataFrame(rows)
    cols = ["step", "model"] + sorted(c for c in df.columns if c not in ("step", "model"))
    return df[cols].sort_values(["model", "step"], kind="stable").reset_index(drop=True)


class Dataset:
    """A prepared DATASET: `info` (dataset.json), `index()` (index.csv), `patches()` and `masks()`."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.info = _json(os.path.join(self.path, "dataset.json"))
        self.patch_size = int(self.info["patch_size"])

    def index(self):
        """index.csv: one row per patch, in storage order (id, patient_id, split, label, source, x, y, w, h)."""
        return pd.read_csv(os.path.join(self.path, "index.csv"), dtype={"patient_id": str, "source": str})

    def _array(self, name, dtype, ids):
        s = self.patch_size
        arr = np.memmap(os.path.join(self.path, name), dtype=dtype, mode="r")
        if arr.size % (s * s):
            raise ValueError(f"{self.path}/{name}: {arr.size} values is not a whole number of {s}x{s} patches")
        arr = arr.reshape(-1, s, s)
        return arr if ids is None else arr[np.asarray(ids)]

    def patches(self, ids=None):
        """Patches as float32 in [0, 1] (N x S x S); `ids` selects rows of index()."""
        return self._array("patches.u16", "<u2", ids).astype(np.float32) / 65535.0

    def masks(self, ids=None):
        """Mask bit flags (N x S x S uint8): MASK_LESION, MASK_MALIGNANCY, MASK_BREAST."""
        return np.asarray(self._array("masks.u8", "u1", ids))

    def summary(self):
        """Patches per split and label."""
        return self.index().groupby(["split", "label"]).size().unstack(fill_value=0)


class Run:
    """A RUN directory: manifest(), config(), metrics(), eval_metrics(), overlays(), status."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(os.path.join(self.path, "manifest.json")):
            raise FileNotFoundError(f"{self.path}: no manifest.json (not a mammogan RUN directory)")

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.path))

    def manifest(self):
        return _json(os.path.join(self.path, "manifest.json"))

    @property
    def status(self):
        return self.manifest()["outcome"]["status"]

    def config(self):
        """The config as a flat Series (`train.steps` -> 20)."""
        flat = {}

        def walk(prefix, v):
            if isinstance(v, dict):
                for k, x in v.items():
                    walk(f"{prefix}.{k}" if prefix else k, x)
            else:
                flat[prefix] = v

        walk("", self.manifest()["inputs"]["config"])
        return pd.Series(flat, name=self.name, dtype=object)

    def metrics(self):
        """metrics.jsonl (see read_metrics)."""
        return read_metrics(os.path.join(self.path, "metrics.jsonl"))

    def curve(self, model, metric):
        """One metric of one model against the step, NaN rows dropped."""
        df = self.metrics()
        df = df[df["model"] == model]
        if metric not in df:
            raise KeyError(f"{self.path}: {model} logged no {metric!r} (has {sorted(c for c in df if c not in ('step', 'model'))})")
        return df.set_index("step")[metric].dropna()

    def eval_metrics(self):
        """eval/metrics.json as a Series (empty before `mammogan evaluate`)."""
        p = os.path.join(self.path, "eval", "metrics.json")
        if not os.path.isfile(p):
            return pd.Series(dtype=float, name=self.name)
        flat = {k: v for k, v in _json(p).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return pd.Series(flat, name=self.name, dtype=float)

    def overlays(self):
        """The evaluation's overlay PNGs (eval/images/*-overlay.png), sorted."""
        return sorted(glob.glob(os.path.join(self.path, "eval", "images", "*-overlay.png")))

    def images(self):
        """Every PNG of the evaluation, with the patch id and kind parsed from its name."""
        rows = []
        for p in sorted(glob.glob(os.path.join(self.path, "eval", "images", "patch-*-*.png"))):
            stem = os.path.basename(p)[len("patch-"):-len(".png")]
            pid, kind = stem.split("-", 1)
            rows.append({"patch_id": int(pid), "kind": kind, "path": p})
        return pd.DataFrame(rows, columns=["patch_id", "kind", "path"])


def compare_runs(paths):
    """Runs side by side: status, the config keys that differ, the last logged value of each metric,
    and the evaluation's numbers; one column per run."""
    runs = [Run(p) for p in paths]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        names = [r.path for r in runs]
    cfg = pd.concat([r.config() for r in runs], axis=1, keys=names)
    differs = cfg.astype(str).nunique(axis=1) > 1
    parts = [pd.DataFrame({n: [r.status] for n, r in zip(names, runs)}, index=["status"])]
    parts.append(cfg[differs].rename(index=lambda k: f"config.{k}"))
    last = {}
    for n, r in zip(names, runs):
        df = r.metrics()
        s = {}
        for model, g in df.groupby("model"):
            for c in g.columns:
                if c in ("step", "model"):
                    continue
                v = g[c].dropna()
                if len(v):
                    s[f"last.{model}.{c}"] = v.iloc[-1]
        last[n] = pd.Series(s, dtype=float)
    parts.append(pd.DataFrame(last))
    ev = pd.concat([r.eval_metrics() for r in runs], axis=1, keys=names)
    parts.append(ev.rename(index=lambda k: f"eval.{k}"))
    return pd.concat(parts)
