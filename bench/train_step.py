#!/usr/bin/env python3
"""Training-step time: mammo-nn (burn 0.22.1, flex CPU backend) against PyTorch, side by side.

    python3 bench/train_step.py [--rounds R] [--steps N] [--warmup W] [--threads T] [--no-append]
    python3 bench/train_step.py --device cuda ...   PyTorch alone on a GPU (bench/gpu.sh times ours there)

1. Builds mammo-nn's timing test (`cargo build --release -p mammo-nn --tests`) and copies the binary of
   `crates/mammo-nn/tests/timing.rs` aside, so a rebuild by someone else during the run cannot change it.
2. Builds a PyTorch copy of mammo-nn's default models, layer for layer (see `crates/mammo-nn/src/model/`,
   `train/` and `config.rs`), batch 32, 64 px patches:
   - the classifier: high-pass input ((x - 3x3 local mean) * 40), a stem of `stem_convs` units, residual
     stages (group norm), global mean, 1x1 head; plus the auxiliary 1x1 mask head on stage `aux_stage`
     (2 planes: lesion and malignancy-feature fraction per 4x4 cell), trained with a weighted binary
     cross-entropy against the cell fractions of each drawn patch's (flipped/turned) mask; AdamW with the
     cosine learning-rate schedule (the rate set per step);
   - the attribution GAN: U-Net generator on 2 channels (centred x, high-pass x) with the deletion-form
     output m = -binomial3x3(sigmoid(.)) * relu(x - gaussian_blur(x)) (replicate padding, separable blur,
     sigma 1.5) and the L1 penalty on the gate; the critic is a copy of the classifier network scoring
     minus its logit (`critic_from_classifier`: no spectral norm, no power iteration), and sees every
     patch cut to a random 56 px window (`critic_crop` 8, an offset per patch); hinge loss for the
     critic, softplus(-D) + l1_weight * mean|g| for the generator; n_critic critic updates (fakes computed
     without autograd) + one generator update per step, Adam betas (0.5, 0.9).
3. Alternates the two sides in rounds (ours, PyTorch, ours, PyTorch, ...), so the load of this shared
   machine falls on both alike:
   - ours: one run of the ignored test `step_timings_at_default_sizes` with RAYON_NUM_THREADS=T. It trains
     8 steps of the classifier, then 8 of the attribution GAN in the same run directory (so its critic
     starts from that classifier, as by default), and prints the mean time of steps 3-8
     (`classifier step: 0.220 s (T threads)`, `attribution step (...): 2.080 s`); that mean is one sample
     per round and model.
   - PyTorch (this process, `torch.set_num_threads(T)`, W warm-up steps of each model once at the start,
     the classifier's first, then the GAN's with its critic copied from that classifier): N timed steps
     of each model per round; the mean of the N is one sample per round and model, and every single step
     is kept as well.
4. Prints, per model, the median and best of the per-round samples of both sides and the ratio
   ours / PyTorch (< 1: ours is faster), and appends it with the machine, its load and the command to
   bench/RESULTS.md (`--no-append` only prints).

Both sides do the whole step: drawing and augmenting the batch (and, for the classifier, its masks' cell
fractions) from a small pool of patches, forward, loss, reading the loss values back (`into_scalar` /
`.item()`), backward and the optimizer update.
"""

from __future__ import annotations

import argparse
import copy
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
CLS_LR = 3e-3
CLS_STEPS = 2000  # DEFAULT_CLASSIFIER_STEPS: the length of the cosine schedule
CLS_CHANNELS = 8
CLS_BLOCKS = 3
CLS_STEM_CONVS = 1
CLS_AUX_WEIGHT = 1.0
CLS_AUX_STAGE = 0
CLS_WEIGHT_DECAY = 1e-4
CLS_INTENSITY_JITTER = 0.05
CLS_CONTRAST_JITTER = 0.1
# [attribution]
GEN_CHANNELS = 8
GEN_DEPTH = 3
LR_G = 3e-3
LR_C = 2e-3
BETAS_GAN = (0.5, 0.9)
N_CRITIC = 1
L1_WEIGHT = 6.0
BLUR_SIGMA = 1.5
CRITIC_CROP = 8
# critic_from_classifier = true, map_form = "deletion", map_smooth = true, loss = "hinge".
# burn's AdamConfig / AdamWConfig defaults (burn-optim 0.22.1): betas (0.9, 0.999), epsilon 1e-5.
BETAS_CLS = (0.9, 0.999)
ADAM_EPS = 1e-5
GN_EPS = 1e-5
LEAK = 0.2
HIGHPASS_GAIN = 40.0
# data.rs mask bits; the auxiliary head predicts AUX_MASK_BITS = [lesion, malignancy].
MASK_LESION, MASK_MALIGNANCY, MASK_BREAST = 1, 2, 4
AUX_MASK_BITS = (MASK_LESION, MASK_MALIGNANCY)


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


def global_mean(x):
    return x.mean(dim=(2, 3), keepdim=True)


def highpass(x):
    """model/classifier.rs highpass: each pixel minus the mean of its 3x3 neighbourhood (padding not
    counted), times 40."""
    local = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return (x - local) * HIGHPASS_GAIN


def gaussian_taps(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps out to 3 sigma (11 for sigma 1.5)."""
    r = max(math.ceil(3.0 * sigma), 1)
    w = torch.tensor([math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(-r, r + 1)], dtype=torch.float64)
    return (w / w.sum()).float()


def gaussian_blur(x, taps: torch.Tensor):
    """Separable Gaussian blur of [n, c, h, w], borders replicated: a row pass then a column pass."""
    n, c, h, w = x.shape
    k = taps.numel()
    r = k // 2
    padded = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), mode="replicate")
    t = F.conv2d(padded, taps.reshape(1, 1, 1, k))
    return F.conv2d(t, taps.reshape(1, 1, k, 1)).reshape(n, c, h, w)


BINOMIAL3 = (torch.tensor([1.0, 2.0, 1.0]).outer(torch.tensor([1.0, 2.0, 1.0])) / 16.0).reshape(1, 1, 3, 3)


# Where PyTorch computes (`--device`): the models, their buffers and every tensor made without a
# device follow `torch.set_default_device`; the batches, drawn from numpy, are moved here.
DEVICE = "cpu"


def binomial3(m):
    """3x3 binomial blur ([1 2 1] x [1 2 1] / 16), borders replicated."""
    n, c, h, w = m.shape
    padded = F.pad(m.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, BINOMIAL3.to(m.device)).reshape(n, c, h, w)


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
    def __init__(
        self,
        channels: int = CLS_CHANNELS,
        blocks: int = CLS_BLOCKS,
        stem_convs: int = CLS_STEM_CONVS,
        aux_stage: int = CLS_AUX_STAGE,
        aux: bool = CLS_AUX_WEIGHT > 0.0,
    ):
        super().__init__()
        c = channels
        self.stem = nn.ModuleList(ConvNormAct(1 if i == 0 else c, c, 1) for i in range(max(stem_convs, 1)))
        self.stages = nn.ModuleList(ResBlock(c << b, c << (b + 1), 2) for b in range(blocks))
        self.head = conv(c << blocks, 1, 1, 1)
        self.aux_stage = min(aux_stage, blocks - 1)
        self.aux = conv(c << (self.aux_stage + 1), len(AUX_MASK_BITS), 1, 1) if aux else None

    def aux_factor(self) -> int:
        return 1 << (self.aux_stage + 1)

    def forward_with_aux(self, x, want_aux: bool):
        h = highpass(x)
        for unit in self.stem:
            h = unit(h)
        aux = None
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if want_aux and i == self.aux_stage and self.aux is not None:
                aux = self.aux(h)
        return self.head(global_mean(h)).reshape(x.shape[0]), aux

    def forward(self, x):
        return self.forward_with_aux(x, False)[0]


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
    def __init__(self, channels: int = GEN_CHANNELS, depth: int = GEN_DEPTH, blur_sigma: float = BLUR_SIGMA):
        super().__init__()
        c = channels
        self.down = nn.ModuleList(DoubleConv(2 if l == 0 else c << (l - 1), c << l) for l in range(depth))
        self.up = nn.ModuleList(UpLevel(c << (l + 1), c << l) for l in range(max(depth - 1, 0)))
        self.out = conv(c, 1, 1, 1, gain=0.1)
        self.register_buffer("blur_taps", gaussian_taps(blur_sigma))

    def forward(self, x):
        return self.forward_with_cost(x)[0]

    def forward_with_cost(self, x):
        """The deletion map m = -g * relu(x - blur(x)) and the gate g (what the L1 penalty is on)."""
        skips = []
        h = torch.cat([x * 2.0 - 1.0, highpass(x)], 1)
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
        g = binomial3(torch.sigmoid(self.out(h)))
        excess = F.relu(x - gaussian_blur(x, self.blur_taps))
        return g * -excess, g


class Critic(nn.Module):
    """critic_from_classifier: the classifier's network (and weights), scoring minus its logit."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return -self.classifier(x)


def random_crops(x, crop: int, rng: np.random.Generator):
    """train/attribution.rs random_crops: each patch cut to its (S - crop) px window at its own offset."""
    n, s = x.shape[0], x.shape[2]
    if crop == 0 or crop >= s:
        return x
    w = s - crop
    windows = []
    for i in range(n):
        dy, dx = int(rng.integers(crop + 1)), int(rng.integers(crop + 1))
        windows.append(x[i : i + 1, :, dy : dy + w, dx : dx + w])
    return torch.cat(windows, 0)


# --------------------------------------------------------------------------------------------------------
# Batches (train/mod.rs draw_batch, augment.rs)
# --------------------------------------------------------------------------------------------------------


class Patches:
    """A pool of random patches per class with their masks, drawn with replacement and augmented one patch at
    a time, like `draw_batch_with_masks` (flips, quarter turns and, for the classifier, intensity and
    contrast jitter; the mask takes the same flips and turns, then gives the fraction of each cell that has
    each of AUX_MASK_BITS)."""

    LABELS = ("malignant", "benign")

    def __init__(self, rng: np.random.Generator, per_class: int = 28):
        self.rng = rng
        self.pool = {k: rng.random((per_class, SIZE, SIZE), dtype=np.float32) for k in self.LABELS}
        # As the timing test's synthetic data: the breast everywhere, a lesion disc near the centre.
        yy, xx = np.mgrid[:SIZE, :SIZE]
        self.masks = {}
        for k in self.LABELS:
            m = np.full((per_class, SIZE, SIZE), MASK_BREAST, dtype=np.uint8)
            for i in range(per_class):
                cy, cx = SIZE / 2 + rng.uniform(-2, 2, size=2)
                r = SIZE / 5 + rng.uniform(-1, 1)
                m[i][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] |= MASK_LESION
            self.masks[k] = m

    def draw(self, label: str, n: int, jitter: bool, aux_factor: int | None = None):
        """[n, 1, S, S] patches; with `aux_factor`, also the cell fractions [n, bits, S/f, S/f] and the
        known flags [n, bits]."""
        pool, rng = self.pool[label], self.rng
        out = np.empty((n, 1, SIZE, SIZE), dtype=np.float32)
        if aux_factor is not None:
            cells = SIZE // aux_factor
            targets = np.empty((n, len(AUX_MASK_BITS), cells, cells), dtype=np.float32)
            known = np.empty((n, len(AUX_MASK_BITS)), dtype=np.float32)
        for i in range(n):
            j = rng.integers(len(pool))
            p = pool[j]
            mask = self.masks[label][j] if aux_factor is not None else None
            flip_h, flip_v, turns = rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(4))
            if flip_h:
                p = p[:, ::-1]
            if flip_v:
                p = p[::-1, :]
            p = np.rot90(p, turns)
            if jitter:
                offset = rng.uniform(-1, 1) * CLS_INTENSITY_JITTER
                gain = 1.0 + rng.uniform(-1, 1) * CLS_CONTRAST_JITTER
                mean = p.mean(dtype=np.float64)
                p = np.clip((p - mean) * gain + mean + offset, 0.0, 1.0)
            out[i, 0] = p
            if mask is not None:
                if flip_h:
                    mask = mask[:, ::-1]
                if flip_v:
                    mask = mask[::-1, :]
                mask = np.rot90(mask, turns)
                for b, bit in enumerate(AUX_MASK_BITS):
                    has = (mask & bit) != 0
                    targets[i, b] = has.reshape(cells, aux_factor, cells, aux_factor).mean(axis=(1, 3))
                    # train/mod.rs: known where the data vouches for the plane (a benign patch has no
                    # malignancy features; otherwise only a drawn mask counts).
                    certain_absent = label == "benign" and bit == MASK_MALIGNANCY
                    known[i, b] = float(certain_absent or bool(has.any()))
        # Drawn on the CPU as ours are, then moved (a no-op on the CPU; one transfer per batch on a GPU).
        x = torch.from_numpy(out).to(DEVICE)
        if aux_factor is None:
            return x
        return x, torch.from_numpy(targets).to(DEVICE), torch.from_numpy(known).to(DEVICE)


# --------------------------------------------------------------------------------------------------------
# Training steps (train/classifier.rs, train/attribution.rs)
# --------------------------------------------------------------------------------------------------------


def cosine_lr(lr: float, step: int, total: int) -> float:
    """config.rs Schedule::Cosine: linear warm-up over the first 5 % of the steps, then a half cosine to 0."""
    total = max(total, 1)
    warmup = max(math.ceil(0.05 * total), 1.0)
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min((step - warmup) / max(total - warmup, 1.0), 1.0)
    return lr * 0.5 * (1.0 + math.cos(math.pi * t))


class ClassifierStep:
    def __init__(self, data: Patches):
        self.data = data
        self.model = Classifier()
        self.optim = torch.optim.AdamW(
            self.model.parameters(), lr=CLS_LR, betas=BETAS_CLS, eps=ADAM_EPS, weight_decay=CLS_WEIGHT_DECAY
        )
        n_pos = (BATCH + 1) // 2
        self.targets = torch.tensor([1.0] * n_pos + [0.0] * (BATCH - n_pos))
        self.step = 0

    def __call__(self) -> None:
        n_pos = (BATCH + 1) // 2
        f = self.model.aux_factor() if self.model.aux is not None else None
        xp, tp, kp = self.data.draw("malignant", n_pos, True, f)
        xn, tn, kn = self.data.draw("benign", BATCH - n_pos, True, f)
        x, masks, known = torch.cat([xp, xn]), torch.cat([tp, tn]), torch.cat([kp, kn])
        logits, z = self.model.forward_with_aux(x, True)
        loss = F.binary_cross_entropy_with_logits(logits, self.targets)
        if z is not None:
            # Each (patch, bit) plane counts only where its mask is known; averaged over the weights.
            w = known[:, :, None, None].expand_as(z)
            aux_loss = F.binary_cross_entropy_with_logits(z, masks, weight=w, reduction="sum") / w.sum().clamp_min(1.0)
            _aux_value = aux_loss.item()
            loss = loss + aux_loss * CLS_AUX_WEIGHT
        loss_value = loss.item()
        assert math.isfinite(loss_value)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        lr = cosine_lr(CLS_LR, self.step % CLS_STEPS, CLS_STEPS)
        for group in self.optim.param_groups:
            group["lr"] = lr
        self.optim.step()
        self.step += 1
        _correct = ((logits.detach() > 0) == (self.targets > 0.5)).sum().item()


class AttributionStep:
    def __init__(self, data: Patches, classifier: Classifier):
        self.data = data
        self.generator = MapGenerator()
        # critic_from_classifier: the critic starts as (a copy of) the trained classifier.
        self.critic = Critic(copy.deepcopy(classifier))
        self.optim_g = torch.optim.Adam(self.generator.parameters(), lr=LR_G, betas=BETAS_GAN, eps=ADAM_EPS)
        self.optim_c = torch.optim.Adam(self.critic.parameters(), lr=LR_C, betas=BETAS_GAN, eps=ADAM_EPS)

    def __call__(self) -> None:
        g, d, rng = self.generator, self.critic, self.data.rng
        # Critic updates: real reference patches against x + M(x), the generator run without autograd;
        # both cut to random windows.
        for _ in range(N_CRITIC):
            real = self.data.draw("benign", BATCH, False)
            x = self.data.draw("malignant", BATCH, False)
            with torch.no_grad():
                fake = x + g(x)
            d_real = d(random_crops(real, CRITIC_CROP, rng))
            d_fake = d(random_crops(fake, CRITIC_CROP, rng))
            _gap = (d_real.mean() - d_fake.mean()).item()
            loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
            critic_loss = loss.item()
            assert math.isfinite(critic_loss)
            self.optim_c.zero_grad(set_to_none=True)
            loss.backward()
            self.optim_c.step()
        # Generator update through the frozen critic: non-saturating loss, L1 penalty on the gate.
        x = self.data.draw("malignant", BATCH, False)
        m, cost = g.forward_with_cost(x)
        for p in d.parameters():
            p.requires_grad_(False)
        d_fake = d(random_crops(x + m, CRITIC_CROP, rng))
        adversarial = F.softplus(-d_fake).mean()
        l1 = cost.abs().mean()
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
    ap.add_argument(
        "--device", default="cpu", help="PyTorch's device: cpu, or cuda / cuda:N (implies --torch-only; bench/gpu.sh)"
    )
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    global DEVICE
    DEVICE = args.device
    gpu = args.device != "cpu"
    if gpu:
        # Ours on a GPU is timed by bench/gpu.sh (`mammogan env --bench`), not by the flex timing test.
        args.torch_only = True
        torch.set_default_device(args.device)
        torch.backends.cudnn.benchmark = True

    load_before = load()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    data = Patches(np.random.default_rng(42))
    # As the timing test: the classifier first (its warm-up steps train it), then the GAN, whose critic
    # starts from a copy of it.
    classifier = ClassifierStep(data)
    for _ in range(args.warmup if "classifier" in models else 0):
        classifier()
    attribution = AttributionStep(data, classifier.model)
    for _ in range(args.warmup if "attribution" in models else 0):
        attribution()
    if gpu:
        torch.cuda.synchronize()
    steps = {"classifier": classifier, "attribution": attribution}
    steps = {k: v for k, v in steps.items() if k in models}

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
                if gpu:
                    torch.cuda.synchronize()  # the step's kernels are queued: wait for them
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
        "classifier": "one AdamW step, with the auxiliary mask head",
        "attribution": f"{N_CRITIC} critic + 1 generator Adam update, critic from the classifier",
    }
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_")))
    cmd = (env + " " if env else "") + "python3 bench/train_step.py " + " ".join(sys.argv[1:])
    report = [
        f"## {now} — {cpu_model()}, {os.cpu_count()} cores, {args.threads} thread{'s' if args.threads != 1 else ''} per side",
        "",
        f"Command: `{cmd.strip()}`. Python {platform.python_version()}, torch {torch.__version__}"
        f" (MKL-DNN {'on' if torch.backends.mkldnn.is_available() else 'off'}), PyTorch on {args.device}"
        f"{' (' + torch.cuda.get_device_name() + ')' if gpu else ''}; mammo-nn at burn 0.22.1 (flex),"
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
