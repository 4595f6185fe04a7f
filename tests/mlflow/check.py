#!/usr/bin/env python3
"""Reads a run back from an MLflow tracking server through its REST API and compares it with the RUN
directory it came from: params = the config keys (and nothing that names a path), tags, the metric
history of every key of metrics.jsonl step by step (no step missing, none twice), evaluation metrics,
every artifact byte for byte, the final status, and how many runs the experiment holds.

usage: check.py TRACKING_URI RUN_DIR --runs N [--forbid TEXT ...]
Exit 1 with the differences on any mismatch."""
import argparse
import json
import math
import os
import sys
import urllib.parse
import urllib.request


def api(base, path, query=None, body=None):
    url = f"{base}/api/2.0/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return raw if path.startswith("mlflow-artifacts/artifacts/") else json.loads(raw or b"{}")


def flatten(prefix, v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            flatten(f"{prefix}.{k}" if prefix else k, x, out)
    elif isinstance(v, str):
        out[prefix] = v
    else:
        out[prefix] = json.dumps(v, separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("run")
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--forbid", action="append", default=[])
    a = ap.parse_args()
    base = a.uri.rstrip("/")
    errors = []
    state = json.load(open(os.path.join(a.run, "mlflow.json")))
    manifest = json.load(open(os.path.join(a.run, "manifest.json")))
    if not state.get("complete") or state.get("not_sent"):
        errors.append(f"mlflow.json: not complete: {state.get('not_sent')}")
    run_id, exp_id = state["run_id"], state["experiment_id"]
    run = api(base, "mlflow/runs/get", {"run_id": run_id})["run"]
    if run["info"]["status"] != "FINISHED":
        errors.append(f"status {run['info']['status']}")

    # Params: exactly the config keys, with their values.
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    expected = {}
    flatten("", manifest["inputs"]["config"], expected)
    for k, v in expected.items():
        if k not in params:
            errors.append(f"param {k} missing")
        elif params[k] != v and not _same_number(params[k], v) and not _same_json(params[k], v):
            errors.append(f"param {k}: {params[k]!r} != {v!r}")
    for k in params:
        if k not in expected:
            errors.append(f"param {k} is not a config key")
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    if tags.get("mlflow.source.git.commit") != manifest["build"]["git_commit"]:
        errors.append(f"tag commit {tags.get('mlflow.source.git.commit')}")
    if tags.get("mammogan.dataset_hash") != manifest["inputs"]["dataset"]["content_hash"]:
        errors.append("tag mammogan.dataset_hash")
    if tags.get("mammogan.config_blake3") != manifest["inputs"]["config_toml_blake3"]:
        errors.append("tag mammogan.config_blake3")
    for text in a.forbid:
        for k, v in list(params.items()) + list(tags.items()):
            if text in v or text in k:
                errors.append(f"{k}={v!r} contains {text!r}")

    # Metrics: every key's history equals metrics.jsonl, step by step.
    want = {}
    for line in open(os.path.join(a.run, "metrics.jsonl")):
        r = json.loads(line)
        for k, v in r.items():
            if k not in ("step", "model"):
                want.setdefault(f"{r['model']}/{k}", []).append((r["step"], math.nan if v is None else v))
    n_values = 0
    for key, rows in sorted(want.items()):
        hist = api(base, "mlflow/metrics/get-history", {"run_id": run_id, "metric_key": key, "max_results": 25000})
        got = sorted((m.get("step", 0), m["value"]) for m in hist.get("metrics", []))
        rows = sorted(rows)
        n_values += len(got)
        if [s for s, _ in got] != [s for s, _ in rows]:
            errors.append(f"metric {key}: steps {[s for s, _ in got][:10]}... ({len(got)}) != {[s for s, _ in rows][:10]}... ({len(rows)})")
            continue
        for (s, g), (_, w) in zip(got, rows):
            g = float(g)
            if not (math.isnan(w) and math.isnan(g)) and abs(g - w) > 1e-6 * max(1.0, abs(w)):
                errors.append(f"metric {key} step {s}: {g} != {w}")
                break
    for k, v in manifest["outcome"].get("eval", {}).items():
        key = f"eval/{k}"
        hist = api(base, "mlflow/metrics/get-history", {"run_id": run_id, "metric_key": key})
        vals = [m["value"] for m in hist.get("metrics", [])]
        if not vals or not (abs(float(vals[-1]) - v) <= 1e-9 * max(1.0, abs(v)) or (math.isnan(v) and math.isnan(float(vals[-1])))):
            errors.append(f"eval metric {key}: {vals} != {v}")

    # Artifacts: the list, and each file's bytes.
    def listing(path=""):
        out = []
        q = {"run_id": run_id}
        if path:
            q["path"] = path
        for f in api(base, "mlflow/artifacts/list", q).get("files", []):
            out += listing(f["path"]) if f.get("is_dir") else [f["path"]]
        return out

    arts = sorted(listing())
    need = ["config.toml"] + [f"model/{m}.safetensors" for m in manifest["inputs"]["models"]]
    if manifest["outcome"].get("eval"):
        need += ["eval/report.html", "eval/metrics.json"]
        if not any(p.startswith("eval/images/") and p.endswith("-overlay.png") for p in arts):
            errors.append("no overlay among the artifacts")
    for p in need:
        if p not in arts:
            errors.append(f"artifact {p} missing (have {arts})")
    root = urllib.parse.urlparse(run["info"]["artifact_uri"]).path.strip("/")
    for p in arts:
        got = api(base, f"mlflow-artifacts/artifacts/{root}/{urllib.parse.quote(p)}")
        with open(os.path.join(a.run, p), "rb") as f:
            if f.read() != got:
                errors.append(f"artifact {p}: bytes differ")

    runs = api(base, "mlflow/runs/search", body={"experiment_ids": [exp_id], "max_results": 1000}).get("runs", [])
    if len(runs) != a.runs:
        errors.append(f"experiment {exp_id} holds {len(runs)} runs, expected {a.runs}")
    if errors:
        print("check.py: " + a.run + ":\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    print(f"check.py: run {run_id}: {len(params)} params, {len(want)} metric keys ({n_values} values), {len(arts)} artifacts, all as in {a.run}")
    return 0


def _same_json(a, b):
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def _same_number(a, b):
    try:
        return float(a) == float(b)
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
