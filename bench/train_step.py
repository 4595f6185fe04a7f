#!/usr/bin/env python3
"""Training-step time: mammo-nn (burn 0.22.1, flex CPU backend) against PyTorch, side by side.

    python3 bench/train_step.py [--rounds R] [--steps N] [--warmup W] [--threads T] [--no-append]

1. Builds mammo-nn's timing test (`cargo build --release -p mammo-nn --tests`) and copies the binary of
   `crates/mammo-nn/tests/timing.rs` aside, so a rebuild by someone else during the run cannot change it.
2. Builds a PyTorch copy of mammo-nn's default models, layer for layer (see `crates/mammo-nn/src/model/`
   and `config.rs`): the classifier (residual CNN, group norm) with AdamW, and the attribution GAN (U-Net
   map generator, spectrally normalised critic, hinge loss, L1 weight, one power iteration per critic
   update, n_critic critic updates + one generator update per step) with Adam; batch 32, 64 px patches.
3. Alternates the two sides in rounds (ours, PyTorch, ours, PyTorch, ...), so the load of this shared
   machine falls on both alike:
   - ours: one run of the ignored test `step_timings_at_default_sizes` with RAYON_NUM_THREADS=T. It trains
     8 steps of each model and prints the mean time of steps 3-8 (`classifier step: 0.220 s (T threads)`,
     `attribution step (...): 2.080 s`); that mean is one sample per round and model.
   - PyTorch (this process, `torch.set_num_threads(T)`, W warm-up steps once at the start): N timed steps
     of each model per round; the mean of the N is one sample per round and model, and every single step
     is kept as well.
4. Prints, per model, the median and best of the per-round samples of both sides and the ratio
   ours / PyTorch (< 1: ours is faster), and appends it with the machine, its load and the command to
   bench/RESULTS.md (`--no-append` only prints).

Both sides do the whole step: drawing and augmenting the batch from a small pool of patches, forward,
loss, reading the loss values back (`into_scalar` / `.item()`), backward and the optimizer update.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# The defaults of crates/mammo-nn/src/config.rs.
BATCH = 32
SIZE = 64
# [train] lr, [classifier]
CLS_LR = 1e-3
CLS_CHANNELS = 8
CLS_BLOCKS = 3
CLS_WEIGHT_DECAY = 1e-4
CLS_INTENSITY_JITTER = 0.05
CLS_CONTRAST_JITTER = 0.1
# [attribution]
GEN_CHANNELS = 8
GEN_DEPTH = 3
CRITIC_CHANNELS = 8
CRITIC_DEPTH = 3
LR_G = 1e-3
LR_C = 2e-3
BETAS_GAN = (0.5, 0.9)
N_CRITIC = 1
L1_WEIGHT = 2.0
MAP_SCALE = 1.0
POWER_ITERATIONS = 1
# burn's AdamConfig / AdamWConfig defaults (burn-optim 0.22.1): betas (0.9, 0.999), epsilon 1e-5.
BETAS_CLS = (0.9, 0.999)
ADAM_EPS = 1e-5
GN_EPS = 1e-5
LEAK = 0.2


# --------------------------------------------------------------------------------------------------------
# Layers (model/layers.rs)
# --------------------------------------------------------------------------------------------------------


def he_uniform_(weight: torch.Tensor, gain: float = 1.0) -> None:
    """Conv::new: uniform in +-gain*sqrt(6/fan_in), fan_in = c_in*k*k; the bias starts at 0."""
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    bound = gain * math.sqrt(6.0 / fan_in)
    with torch.no_grad():
        weight.uniform_(-bound, bound)


def conv(c_in: int, c_out: int, k: int, stride: int, gain: float = 1.0) -> nn.Conv2d:
    """A square convolution with bias and "same" padding (k // 2)."""
    c = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=True)
    he_uniform_(c.weight, gain)
    nn.init.zeros_(c.bias)
    return c


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm::new: the largest of 4, 3, 2, 1 groups that divides the channels; gamma 1, beta 0."""
    groups = next(g for g in (4, 3, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=GN_EPS, affine=True)


class ConvNormAct(nn.Module):
    """3x3 conv -> group norm -> LeakyReLU(0.2)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv = conv(c_in, c_out, 3, stride)
        self.norm = group_norm(c_out)

    def forward(self, x):
        return F.leaky_relu(self.norm(self.conv(x)), LEAK)


class SnConv(nn.Module):
    """SnConv: the weight divided by sigma = u^T W v, W the weight as [out, in*k*k].

    As in mammo-nn (not as torch.nn.utils.spectral_norm, which iterates at every training forward): u is
    state, advanced by `power_iteration` once per critic update; each forward recomputes
    v = normalize(W^T u) from the detached weight, and sigma is differentiated through W only.
    """

    def __init__(self, c_in: int, c_out: int, k: int, stride: int):
        super().__init__()
        self.stride = stride
        self.padding = k // 2
        self.weight = nn.Parameter(torch.empty(c_out, c_in, k, k))
        he_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(c_out))
        u = torch.empty(c_out).uniform_(-1.0, 1.0)
        self.register_buffer("u", u / u.norm().clamp_min(1e-12))

    def matrix(self):
        return self.weight.reshape(self.weight.shape[0], -1)

    @staticmethod
    def normalize(v):
        return v / (v.square().sum().sqrt() + 1e-12)

    @torch.no_grad()
    def power_iteration(self, iterations: int) -> None:
        w = self.matrix()
        u = self.u.unsqueeze(1)
        for _ in range(iterations):
            v = self.normalize(w.t() @ u)
            u = self.normalize(w @ v)
        self.u.copy_(u.reshape(-1))

    def sigma(self):
        w = self.matrix()
        u = self.u.unsqueeze(1)
        v = self.normalize(w.detach().t() @ u)
        return (u.t() @ (w @ v)).reshape(1)

    def forward(self, x):
        w = self.weight / self.sigma().reshape(1, 1, 1, 1)
        return F.conv2d(x, w, self.bias, stride=self.stride, padding=self.padding)


def global_mean(x):
    return x.mean(dim=(2, 3), keepdim=True)


# --------------------------------------------------------------------------------------------------------
# Models (model/classifier.rs, unet.rs, critic.rs)
# --------------------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = conv(c_in, c_out, 3, stride)
        self.norm1 = group_norm(c_out)
        self.conv2 = conv(c_out, c_out, 3, 1)
        self.norm2 = group_norm(c_out)
        self.shortcut = conv(c_in, c_out, 1, stride) if (c_in != c_out or stride != 1) else None

    def forward(self, x):
        skip = self.shortcut(x) if self.shortcut is not None else x
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + skip)


class Classifier(nn.Module):
    def __init__(self, channels: int = CLS_CHANNELS, blocks: int = CLS_BLOCKS):
        super().__init__()
        c = channels
        self.stem = ConvNormAct(1, c, 1)
        self.stages = nn.ModuleList(ResBlock(c << b, c << (b + 1), 2) for b in range(blocks))
        self.head = conv(c << blocks, 1, 1, 1)

    def forward(self, x):
        h = self.stem(x * 2.0 - 1.0)
        for stage in self.stages:
            h = stage(h)
        return self.head(global_mean(h)).reshape(x.shape[0])


class DoubleConv(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.a = ConvNormAct(c_in, c_out)
        self.b = ConvNormAct(c_out, c_out)

    def forward(self, x):
        return self.b(self.a(x))


class UpLevel(nn.Module):
    def __init__(self, c_deep: int, c: int):
        super().__init__()
        self.reduce = ConvNormAct(c_deep, c)
        self.convs = DoubleConv(2 * c, c)


class MapGenerator(nn.Module):
    def __init__(self, channels: int = GEN_CHANNELS, depth: int = GEN_DEPTH, map_scale: float = MAP_SCALE):
        super().__init__()
        c = channels
        self.down = nn.ModuleList(DoubleConv(1 if l == 0 else c << (l - 1), c << l) for l in range(depth))
        self.up = nn.ModuleList(UpLevel(c << (l + 1), c << l) for l in range(max(depth - 1, 0)))
        self.out = conv(c, 1, 1, 1, gain=0.1)
        self.map_scale = map_scale

    def forward(self, x):
        skips = []
        h = x * 2.0 - 1.0
        for l, level in enumerate(self.down):
            if l > 0:
                h = F.avg_pool2d(h, 2, 2)
            h = level(h)
            skips.append(h)
        skips.pop()
        for level in reversed(self.up):
            skip = skips.pop()
            reduced = level.reduce(h)
            up = F.interpolate(reduced, size=skip.shape[2:], mode="nearest")
            h = level.convs(torch.cat([up, skip], 1))
        return torch.tanh(self.out(h)) * self.map_scale


class Critic(nn.Module):
    def __init__(self, channels: int = CRITIC_CHANNELS, depth: int = CRITIC_DEPTH):
        super().__init__()
        c = channels
        layers = [SnConv(1, c, 3, 1)]
        layers += [SnConv(c << l, c << (l + 1), 3, 2) for l in range(depth)]
        self.layers = nn.ModuleList(layers)
        self.head = SnConv(c << depth, 1, 1, 1)

    def power_iteration(self, iterations: int) -> None:
        for layer in list(self.layers) + [self.head]:
            layer.power_iteration(iterations)

    def forward(self, x):
        h = x * 2.0 - 1.0
        for layer in self.layers:
            h = F.leaky_relu(layer(h), LEAK)
        return self.head(global_mean(h)).reshape(x.shape[0])


# --------------------------------------------------------------------------------------------------------
# Batches (train/mod.rs draw_batch, augment.rs)
# --------------------------------------------------------------------------------------------------------


class Patches:
    """A pool of random patches per class, drawn with replacement and augmented one patch at a time, like
    `draw_batch` (flips, quarter turns and, for the classifier, intensity and contrast jitter)."""

    def __init__(self, rng: np.random.Generator, per_class: int = 28):
        self.rng = rng
        self.pool = {k: rng.random((per_class, SIZE, SIZE), dtype=np.float32) for k in ("malignant", "benign")}

    def draw(self, label: str, n: int, jitter: bool) -> torch.Tensor:
        pool, rng = self.pool[label], self.rng
        out = np.empty((n, 1, SIZE, SIZE), dtype=np.float32)
        for i in range(n):
            p = pool[rng.integers(len(pool))]
            if rng.random() < 0.5:
                p = p[:, ::-1]
            if rng.random() < 0.5:
                p = p[::-1, :]
            p = np.rot90(p, int(rng.integers(4)))
            if jitter:
                offset = rng.uniform(-1, 1) * CLS_INTENSITY_JITTER
                gain = 1.0 + rng.uniform(-1, 1) * CLS_CONTRAST_JITTER
                mean = p.mean(dtype=np.float64)
                p = np.clip((p - mean) * gain + mean + offset, 0.0, 1.0)
            out[i, 0] = p
        return torch.from_numpy(out)


# --------------------------------------------------------------------------------------------------------
# Training steps (train/classifier.rs, train/attribution.rs)
# --------------------------------------------------------------------------------------------------------


class ClassifierStep:
    def __init__(self, data: Patches):
        self.data = data
        self.model = Classifier()
        self.optim = torch.optim.AdamW(
            self.model.parameters(), lr=CLS_LR, betas=BETAS_CLS, eps=ADAM_EPS, weight_decay=CLS_WEIGHT_DECAY
        )
        n_pos = (BATCH + 1) // 2
        self.targets = torch.tensor([1.0] * n_pos + [0.0] * (BATCH - n_pos))

    def __call__(self) -> None:
        n_pos = (BATCH + 1) // 2
        x = torch.cat([self.data.draw("malignant", n_pos, True), self.data.draw("benign", BATCH - n_pos, True)])
        logits = self.model(x)
        loss = F.binary_cross_entropy_with_logits(logits, self.targets)
        loss_value = loss.item()
        assert math.isfinite(loss_value)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        _correct = ((logits.detach() > 0) == (self.targets > 0.5)).sum().item()


class AttributionStep:
    def __init__(self, data: Patches):
        self.data = data
        self.generator = MapGenerator()
        self.critic = Critic()
        self.optim_g = torch.optim.Adam(self.generator.parameters(), lr=LR_G, betas=BETAS_GAN, eps=ADAM_EPS)
        self.optim_c = torch.optim.Adam(self.critic.parameters(), lr=LR_C, betas=BETAS_GAN, eps=ADAM_EPS)

    def __call__(self) -> None:
        g, d = self.generator, self.critic
        # Critic updates: real reference patches against x + M(x), the generator run without autograd.
        for _ in range(N_CRITIC):
            real = self.data.draw("benign", BATCH, False)
            x = self.data.draw("malignant", BATCH, False)
            with torch.no_grad():
                fake = x + g(x)
            d.power_iteration(POWER_ITERATIONS)
            d_real = d(real)
            d_fake = d(fake)
            _gap = (d_real.mean() - d_fake.mean()).item()
            loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
            critic_loss = loss.item()
            assert math.isfinite(critic_loss)
            self.optim_c.zero_grad(set_to_none=True)
            loss.backward()
            self.optim_c.step()
        # Generator update through the frozen critic.
        x = self.data.draw("malignant", BATCH, False)
        m = g(x)
        for p in d.parameters():
            p.requires_grad_(False)
        adversarial = -d(x + m).mean()
        l1 = m.abs().mean()
        loss = adversarial + l1 * L1_WEIGHT
        _values = (adversarial.item(), l1.item(), loss.item())
        self.optim_g.zero_grad(set_to_none=True)
        loss.backward()
        self.optim_g.step()
        for p in d.parameters():
            p.requires_grad_(True)


# --------------------------------------------------------------------------------------------------------
# Ours
# --------------------------------------------------------------------------------------------------------

OURS_PATTERNS = {
    "classifier": re.compile(r"^classifier step: ([0-9.]+) s \((\d+) threads\)"),
    "attribution": re.compile(r"^attribution step \(.*\): ([0-9.]+) s"),
}


def build_ours(given: Path | None) -> Path:
    """Builds the test binaries (unless `given`) and returns a private copy of the timing test's."""
    exe = str(given) if given else None
    cmd = ["cargo", "build", "--release", "-p", "mammo-nn", "--tests", "--message-format=json"]
    out = "" if given else subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        t = msg.get("target", {})
        if msg.get("reason") == "compiler-artifact" and t.get("name") == "timing" and msg.get("executable"):
            exe = msg["executable"]
    if exe is None:
        sys.exit("could not find the mammo-nn timing test binary in cargo's output")
    copy = Path(tempfile.mkdtemp(prefix="mammogan-train-step-")) / "timing"
    shutil.copy2(exe, copy)
    return copy


def run_ours(exe: Path, threads: int) -> dict[str, float]:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    proc = subprocess.run(
        [str(exe), "--ignored", "--nocapture", "--exact", "step_timings_at_default_sizes"],
        cwd=ROOT / "crates" / "mammo-nn",
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"the timing test failed:\n{proc.stdout}\n{proc.stderr}")
    found: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        for model, pat in OURS_PATTERNS.items():
            m = pat.match(line.strip())
            if m:
                found[model] = float(m.group(1)) * 1000.0
                if model == "classifier" and int(m.group(2)) != threads:
                    sys.exit(f"the timing test ran with {m.group(2)} threads, not {threads}")
    missing = set(OURS_PATTERNS) - set(found)
    if missing:
        sys.exit(f"the timing test's output lacks {sorted(missing)}:\n{proc.stdout}")
    return found


# --------------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of (ours, PyTorch); default 5")
    ap.add_argument("--steps", type=int, default=6, help="timed PyTorch steps per round and model (ours: 6)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed PyTorch steps per model at the start")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="classifier,attribution")
    ap.add_argument("--torch-only", action="store_true", help="time PyTorch alone (no cargo)")
    ap.add_argument("--ours-binary", type=Path, help="time this build of the timing test instead of building it")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true", help="print only, do not append to RESULTS.md")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]

    load_before = load()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    data = Patches(np.random.default_rng(42))
    steps = {"classifier": ClassifierStep(data), "attribution": AttributionStep(data)}
    steps = {k: v for k, v in steps.items() if k in models}
    for step in steps.values():
        for _ in range(args.warmup):
            step()

    exe = None if args.torch_only else build_ours(args.ours_binary)
    ours: dict[str, list[float]] = {m: [] for m in steps}
    theirs: dict[str, list[float]] = {m: [] for m in steps}
    theirs_steps: dict[str, list[float]] = {m: [] for m in steps}
    for r in range(args.rounds):
        if exe is not None:
            o = run_ours(exe, args.threads)
            for m in steps:
                ours[m].append(o[m])
        for m, step in steps.items():
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                step()
                times.append((time.perf_counter() - t0) * 1000.0)
            theirs[m].append(statistics.fmean(times))
            theirs_steps[m].extend(times)
        line = "  ".join(
            f"{m}: ours {ours[m][-1]:.0f} ms, PyTorch {theirs[m][-1]:.1f} ms" if exe else f"{m}: PyTorch {theirs[m][-1]:.1f} ms"
            for m in steps
        )
        print(f"round {r + 1}/{args.rounds}: {line}  (load {load()})", flush=True)
    load_after = load()
    if exe is not None:
        shutil.rmtree(exe.parent, ignore_errors=True)

    rows = []
    for m in steps:
        t_med, t_best = statistics.median(theirs[m]), min(theirs[m])
        ts_med, ts_best = statistics.median(theirs_steps[m]), min(theirs_steps[m])
        if exe is not None:
            o_med, o_best = statistics.median(ours[m]), min(ours[m])
            rows.append(
                f"| {m} | {o_med:.0f} / {o_best:.0f} | {t_med:.1f} / {t_best:.1f} | {ts_med:.1f} / {ts_best:.1f} "
                f"| {o_med / t_med:.2f} ({o_best / t_best:.2f}) |"
            )
        else:
            rows.append(f"| {m} | - | {t_med:.1f} / {t_best:.1f} | {ts_med:.1f} / {ts_best:.1f} | - |")
    what = {
        "classifier": "one AdamW step",
        "attribution": f"{N_CRITIC} critic + 1 generator Adam update",
    }
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_")))
    cmd = (env + " " if env else "") + "python3 bench/train_step.py " + " ".join(sys.argv[1:])
    report = [
        f"## {now} — {cpu_model()}, {os.cpu_count()} cores, {args.threads} thread{'s' if args.threads != 1 else ''} per side",
        "",
        f"Command: `{cmd.strip()}`. Python {platform.python_version()}, torch {torch.__version__}"
        f" (MKL-DNN {'on' if torch.backends.mkldnn.is_available() else 'off'}); mammo-nn at burn 0.22.1 (flex),"
        f" RAYON_NUM_THREADS={args.threads}. Load average (1/5/15 min) before: {load_before}; after: {load_after}."
        f" {args.rounds} rounds; per round ours = mean of steps 3-8 of one run of the timing test, PyTorch = mean"
        f" of {args.steps} steps after {args.warmup} warm-up steps.",
        "",
        "| model (step) | ours ms/step (median / best round) | PyTorch ms/step (median / best round)"
        " | PyTorch single steps (median / best) | ratio ours / PyTorch, median (best) |",
        "|---|---|---|---|---|",
        *[row.replace(f"| {m} |", f"| {m} ({what[m]}) |", 1) for row, m in zip(rows, steps)],
        "",
    ]
    text = "\n".join(report)
    print()
    print(text)
    if not args.no_append and exe is not None:
        with open(args.results, "a") as f:
            f.write("\n" + text)
        print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
