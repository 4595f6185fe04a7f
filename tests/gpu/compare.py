#!/usr/bin/env python3
"""Compares two RUN directories trained from the same config: the per-step training losses in
metrics.jsonl and the exported weights (RUN/model/*.safetensors), read with the standard library only.

    compare.py RUN_A RUN_B --tolerance REL     exit 1 if a loss or a weight tensor differs beyond REL
    compare.py RUN_A RUN_B --bitwise           prints whether the weights are bit-identical (exit 0)

Tolerances are relative: a loss |a - b| / max(|a|, 1e-3); a network (all tensors of one safetensors
file) ||a - b|| / ||a|| (L2 over all its weights). Per tensor the worst relative difference is printed
but not judged: a convolution bias in front of a group norm with one channel per group (the tiny
configs) has a gradient of zero in exact arithmetic, so Adam turns each backend's round-off into
steps of its own and that tensor is noise on every backend, up to 1e-2 relative from run to run.
The largest of each is printed, so the report shows the margin.
"""
import argparse
import json
import math
import os
import struct
import sys

LOSS_KEYS = ("loss", "aux_loss", "critic_loss", "generator_adversarial", "map_l1", "critic_gap")


def losses(run):
    """{(model, step, key): value} of the training records (validation records hold no loss key)."""
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            for k in LOSS_KEYS:
                if k in r:
                    out[(r["model"], r["step"], k)] = r[k]
    return out


def tensors(path):
    """{name: (dtype, raw bytes)} of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], data[a:b])
    return out


def floats(dtype, raw):
    if dtype != "F32":
        raise SystemExit(f"compare.py: tensor dtype {dtype} is not F32")
    return struct.unpack(f"<{len(raw) // 4}f", raw)


def weights(run):
    d = os.path.join(run, "model")
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            for name, t in tensors(os.path.join(d, f)).items():
                out[f"{f[:-12]}:{name}"] = t
    if not out:
        raise SystemExit(f"compare.py: no weights in {d}")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--tolerance", type=float)
    g.add_argument("--bitwise", action="store_true")
    args = p.parse_args()
    wa, wb = weights(args.a), weights(args.b)
    if wa.keys() != wb.keys():
        raise SystemExit(f"compare.py: the runs have different tensors: {sorted(wa.keys() ^ wb.keys())[:5]}")

    if args.bitwise:
        same = [k for k in wa if wa[k] == wb[k]]
        la, lb = losses(args.a), losses(args.b)
        print(f"bit-identical weight tensors: {len(same)} of {len(wa)}; "
              f"identical loss values: {sum(la[k] == lb.get(k) for k in la)} of {len(la)}")
        return 0

    la, lb = losses(args.a), losses(args.b)
    if la.keys() != lb.keys() or not la:
        raise SystemExit(f"compare.py: the runs logged different losses ({len(la)} vs {len(lb)} values)")
    worst_loss = max(((abs(la[k] - lb[k]) / max(abs(la[k]), 1e-3), k) for k in la))
    worst_t, sums = (0.0, ""), {}
    for k in wa:
        x, y = floats(*wa[k]), floats(*wb[k])
        if any(math.isnan(v) or math.isinf(v) for v in y):
            raise SystemExit(f"FAIL: {k} has NaN or inf in {args.b}")
        d2, n2 = sum((u - v) ** 2 for u, v in zip(x, y)), sum(u * u for u in x)
        worst_t = max(worst_t, (math.sqrt(d2) / max(math.sqrt(n2), 1e-6), k))
        net = sums.setdefault(k.split(":")[0], [0.0, 0.0])
        net[0] += d2
        net[1] += n2
    worst_w = max((math.sqrt(d2) / max(math.sqrt(n2), 1e-6), net) for net, (d2, n2) in sums.items())
    print(f"losses: {len(la)} values, largest relative difference {worst_loss[0]:.2e} ({worst_loss[1]})")
    print(f"weights: {len(sums)} networks, largest relative L2 difference {worst_w[0]:.2e} ({worst_w[1]}); "
          f"largest of one of the {len(wa)} tensors {worst_t[0]:.2e} ({worst_t[1]}, not judged)")
    bad = [what for what, (v, _) in (("losses", worst_loss), ("weights", worst_w)) if not v <= args.tolerance]
    if bad:
        print(f"FAIL: {' and '.join(bad)} differ beyond the tolerance {args.tolerance:g}", file=sys.stderr)
        return 1
    print(f"within the tolerance {args.tolerance:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
