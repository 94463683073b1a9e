"""Training-speed benchmark: ``make bench`` writes ``results/bench/{bench.csv,table.md}``.

Everything is measured in one run on one machine: the copy bandwidth, then per case the epoch
time (forward + backward + Adam over ``--signals`` signals of length 256, batch 32) of numnet's
symmetric ResNet with 20 blocks and of a naive baseline written the obvious way inside this
script (``F.pad`` + ``F.conv1d`` per block, eager, same numerics), the memory-traffic lower bound,
the Lightning ``fit`` / raw-loop ratio, the effect of torch threads, and the speed-up of a small
Fig. 5 sweep with 2 parallel jobs against 1. Epoch times are extrapolated from ``--steps`` timed
steps after warm-up steps; the table says so. Ratios, never absolute times, are what transfer
between machines.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from numnet.models import build_model
from numnet.nn.activations import flux_function
from numnet.nn.normalisation import norm_bound, paper_bound, provable_bound
from numnet.nn.stencil import apply_k_reference, apply_kt_reference
from numnet.report.artefact import write_artefact
from numnet.runs import provenance

N = 256
BATCH = 32
ACTS = ["relu", "charbonnier", "perona_malik"]
REPEATS = 5
MIN_TIMED_S = 0.5


class NaiveSymResNet(torch.nn.Module):
    """The obvious implementation: per block ``F.pad`` + ``F.conv1d`` for K, the transposed
    convolution plus boundary folding for K^T (``numnet.nn.stencil``'s reference functions) and the
    flux as its formula in tensor operations."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        net = self.net
        u = f.expand(-1, net.channels, -1) if net.channels > 1 else f
        for k in range(net.depth):
            i = net.idx(k)
            w = net.normalised(net.w[i])
            s = apply_k_reference(u, w)
            lam = net.fluxes[i].lam if net.fluxes[i].has_contrast else None
            u = u - net.tau(i) * apply_kt_reference(flux_function(net.activation)(s, lam), w)
        return u.mean(dim=1, keepdim=True) if net.channels > 1 else u


class NaiveResNet(torch.nn.Module):
    """The obvious ResNet (Eq. 6 with ``sigma_2 = Id``): per block ``F.pad`` + ``F.conv1d`` twice, the flux as
    its formula; with own weights, Eq. (27)'s regulariser through autograd (:meth:`regulariser`)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        net, u = self.net, f
        for k in range(net.depth):
            i = net.idx(k)
            lam = net.fluxes[i].lam if net.fluxes[i].has_contrast else None
            s = apply_k_reference(u, net.w1[i]) + net.b1[i][:, None]
            u = u + apply_k_reference(flux_function(net.activation)(s, lam), net.w2[i]) + net.b2[i][:, None]
        return u

    def regulariser(self):
        return self.net.regulariser()


def copy_bandwidth(mb: int = 512, repeats: int = 5) -> float:
    """Bytes read + written per second by ``copy_`` between two large tensors (best of ``repeats``)."""
    x = torch.empty(mb * 2**20 // 4)
    x.fill_(1.0)
    y = torch.empty_like(x)
    y.fill_(0.0)  # touch the pages before timing
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - t)
    return 2 * x.numel() * 4 / best


def epoch_time(model: torch.nn.Module, data: torch.Tensor, signals: int, steps: int, warmup: int = 3,
               naive: bool = False, repeats: int = REPEATS, min_s: float = MIN_TIMED_S) -> float:
    """Seconds per epoch of ``signals`` signals, extrapolated from ``steps`` timed steps. numnet's step is
    the one its training runs (``numnet.tasks.denoising.train_step`` with the task's optimiser: the
    fused step where the model has one); the naive one is the obvious autograd step with the
    ``torch.optim.Adam`` defaults."""
    from numnet.tasks.denoising import DenoisingTask, train_step

    opt = torch.optim.Adam(model.parameters(), lr=1e-3) if naive else DenoisingTask(model).configure_optimizers()
    n = data.shape[0]

    def step(i):
        x = data[(i * BATCH) % (n - BATCH) : (i * BATCH) % (n - BATCH) + BATCH]
        if naive:
            loss = F.mse_loss(model(x), x)
            reg = model.regulariser() if hasattr(model, "regulariser") else None
            loss = loss if reg is None else loss + reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            train_step(model, opt, x, x)

    t = time.perf_counter()
    for i in range(warmup):
        step(i)
    # at least `steps` steps and about `min_s` seconds per repeat; the median of `repeats` repeats
    # (this VM's timings scatter by about 20 % between runs)
    steps = max(steps, math.ceil(min_s * warmup / max(time.perf_counter() - t, 1e-9)))
    times = []
    for r in range(repeats):
        t = time.perf_counter()
        for i in range(steps):
            step(warmup + r * steps + i)
        times.append((time.perf_counter() - t) / steps)
    return statistics.median(times) * signals / BATCH


def traffic_bound(signals: int, depth: int, channels: int, bandwidth: float) -> float:
    """Bytes an epoch must move: per block and element, forward reads u and writes u' (8 B), backward
    reads u and the incoming gradient and writes the outgoing one (12 B); divided by the bandwidth."""
    return 20.0 * signals * N * channels * depth / bandwidth


def step_flops(depth: int, channels: int) -> float:
    """Floating-point operations of one training step of a two-step network (batch ``BATCH``, length ``N``): per
    block six products of ``BATCH N`` samples with a ``C x 3C`` matrix (``K u``, ``K^T Phi``, ``K g``,
    ``K^T (Phi' K g)`` and the two kernel gradients), two operations per multiply-add; elementwise work left out."""
    return depth * 6 * 2 * BATCH * N * channels * 3 * channels


def matmul_rate(repeats: int = 200) -> float:
    """FLOP/s of the products the 16-channel path runs: ``(BATCH (N + 2), 16) x (16, 16)``, three accumulated on
    shifted rows (:func:`numnet.nn.multichannel._band`); the best of five timings of ``repeats`` calls."""
    from numnet.nn.multichannel import _band

    c, rows = 16, BATCH * (N + 2)
    x, mats, out = torch.randn(rows + 2, c), torch.randn(3, c, c), torch.empty(rows, c)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeats):
            _band(x, mats, out)
        best = min(best, (time.perf_counter() - t) / repeats)
    return 2 * rows * 3 * c * c / best


def lightning_overhead(signals: int, epochs: int, pairs: int = 5) -> tuple[float, float, float]:
    """Lightning ``fit`` against a raw loop over the same model, data, batches, epochs and validation:
    ``pairs`` back-to-back (raw, Lightning) runs; returns the median of the per-pair ratios (this VM's
    speed drifts by 20 % between runs, less within a pair) and the fastest time of each."""
    import logging

    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from numnet.config import CONFIG_DIR
    from numnet.data.signals import TensorBatches, make_splits
    from numnet.metrics import psnr
    from numnet.tasks.denoising import DenoisingTask, train_step

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    steps_per_batch = int(OmegaConf.load(CONFIG_DIR / "trainer" / "cpu.yaml").steps_per_batch)
    data = make_splits(signals, 200, 10, seed=0)
    times: dict[str, list[float]] = {"raw": [], "lightning": []}
    warm = build_model("symresnet", depth=20, activation="perona_malik")
    x0, y0 = data["train"].noisy[:BATCH], data["train"].clean[:BATCH]
    warm(x0).sum().backward()  # load the compiled kernels first
    warm.fused_mse_step(x0, y0)
    for mode in ("raw", "lightning") * pairs:
        torch.manual_seed(0)
        model = build_model("symresnet", depth=20, activation="perona_malik")
        chunk = 1 if mode == "raw" else steps_per_batch  # Lightning gets chunks of minibatches, as numnet.train does
        batches = TensorBatches(data["train"], BATCH * chunk, shuffle=True, seed=0)
        val = TensorBatches(data["val"], 1000, shuffle=False)
        t = time.perf_counter()
        if mode == "raw":
            opt = DenoisingTask(model).configure_optimizers()
            for _ in range(epochs):
                for x, y in batches:
                    train_step(model, opt, x, y)
                with torch.no_grad():  # validation as the task does it: PSNR read once per epoch
                    float(sum(psnr(model(x), y, 255.0).sum() for x, y in val) / len(data["val"]))
        else:
            trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                                 enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0)
            task = DenoisingTask(model, batch_size=BATCH, val_data=(data["val"].noisy, data["val"].clean))
            trainer.fit(task, train_dataloaders=batches)
        times[mode].append(time.perf_counter() - t)
    ratio = statistics.median(lit / raw for lit, raw in zip(times["lightning"], times["raw"]))
    return ratio, min(times["lightning"]), min(times["raw"])


def sweep_speedup(tmp: Path) -> tuple[float, float]:
    """Wall seconds of the same small Fig. 5-style sweep with 1 and with 2 joblib jobs."""
    walls = []
    for jobs in (1, 2):
        cmd = [sys.executable, "-m", "numnet.train", "-m", "model=resnet,symresnet,dufort_frankel,fsi",
               "activation=charbonnier,perona_malik", "model.depth=10", "profile=quick", "profile.max_epochs=10",
               "logger=none", "trainer.progress_bar=false", f"output_root={tmp}/j{jobs}",
               "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, WANDB_MODE="disabled"))
        walls.append(time.perf_counter() - t)
    return walls[0], walls[1]


def packed_speedup(tmp: Path, epochs: int) -> tuple[int, float, float]:
    """Wall time of a Fig. 5-style set of networks (4 architectures x 3 activations, depths 1, 5, 20, one
    channel, shared weights; 2000 signals, ``epochs`` epochs) trained one by one by the per-run engine inside
    this process (no process starts counted) and as one pack (``numnet.train.train_pack``)."""
    from numnet.config import compose_config
    from numnet.train import execute, train_pack

    cfgs = [compose_config(f"model={m}", f"activation={a}", f"model.depth={d}", "profile=quick",
                           "profile.n_train=2000", f"profile.max_epochs={epochs}", "profile.val_every=1",
                           "logger=none", "trainer.progress_bar=false", "trainer.checkpoint_every_s=0")
            for m in ("resnet", "symresnet", "dufort_frankel", "fsi") for a in ACTS for d in (1, 5, 20)]
    dirs = {k: [tmp / k / str(i) for i in range(len(cfgs))] for k in ("alone", "packed")}
    for d in dirs["alone"] + dirs["packed"]:
        d.mkdir(parents=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the runs' one-line reports
        t = time.perf_counter()
        for c, d in zip(cfgs, dirs["alone"]):
            execute(c, d)
        alone = time.perf_counter() - t
        t = time.perf_counter()
        train_pack(cfgs, dirs["packed"])
        packed = time.perf_counter() - t
    return len(cfgs), alone, packed


def _fourier_bound_65(w: torch.Tensor) -> torch.Tensor:
    """Baseline: the provable rule's spectral bound as it was before the Szegő grid, 65 frequencies and a
    Lipschitz grid margin, ``sqrt(2) (max_j sigma_max + margin)``, with the Schur bound beside it."""
    omega = torch.linspace(0.0, math.pi, 65, dtype=w.dtype)
    one = torch.ones_like(omega)
    taps = torch.stack([torch.polar(one, -omega), one.to(torch.complex64), torch.polar(one, omega)], -1)
    peak = torch.linalg.svdvals(torch.einsum("...abt,wt->...wab", w.to(taps.dtype), taps)).amax(dim=(-2, -1))
    margin = 0.5 * math.pi / 64 * (w[..., 0].flatten(-2).norm(dim=-1) + w[..., 2].flatten(-2).norm(dim=-1))
    return torch.minimum(norm_bound(w), math.sqrt(2.0) * (peak + margin))


def normalisation_cost(repeats: int) -> dict[str, float]:
    """Milliseconds for the divisor of 20 sets of 16-channel kernels, forward and backward (one step's
    normalisation in a 20-block network): the paper's rule, the provable and the tight rule, and the 65-frequency
    baseline."""
    w = torch.empty(20, 16, 16, 3).uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    cases = {"paper": lambda: paper_bound(w), "provable": lambda: provable_bound(w),
             "tight": lambda: provable_bound(w, tight=True), "65-frequency baseline": lambda: _fourier_bound_65(w)}
    out = {}
    for name, fn in cases.items():
        for _ in range(2):
            fn().sum().backward()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn().sum().backward()
            times.append(time.perf_counter() - t)
        out[name] = 1000 * sorted(times)[len(times) // 2]
    return out


def paper_protocol_estimate(data: torch.Tensor, signals: int, steps: int, timing: dict) -> list[dict]:
    """Figs. 5, 6 and 7 under ``profile=paper`` without early stop, estimated: for each figure, the epoch time
    per block of each architecture of its grid (``configs/experiment/<fig>.yaml``: its channels, weight
    sharing and ``beta``; 20 blocks, Perona--Malik), times the grid's blocks, activations, the profile's
    epochs and seeds, over 2 parallel jobs."""
    from omegaconf import OmegaConf

    from numnet.config import CONFIG_DIR

    profile = OmegaConf.load(CONFIG_DIR / "profile" / "paper.yaml")
    epochs, seeds, jobs = int(profile.max_epochs), len(profile.seeds), 2
    out = []
    for fig in ("fig5", "fig6", "fig7"):
        exp = OmegaConf.load(CONFIG_DIR / "experiment" / f"{fig}.yaml")
        params = exp.hydra.sweeper.params
        model = {"channels": 1, "shared": True, "beta": 10.0, **OmegaConf.to_container(exp.get("model", {}))}
        acts, depths = str(params.activation).split(","), [int(d) for d in str(params["model.depth"]).split(",")]
        per_block = {}
        for arch in str(params.model).split(","):
            torch.manual_seed(0)
            net = build_model(arch, depth=20, activation="perona_malik", **model)
            per_block[arch] = epoch_time(net, data, signals, max(3, steps // 2), **timing) / 20
            print(f"[bench] {fig} {arch}: {per_block[arch]:.4f} s per block-epoch", flush=True)
        hours = sum(per_block.values()) * sum(depths) * len(acts) * epochs * seeds / jobs / 3600
        out.append({"figure": fig, "model": model, "per_block": per_block, "depths": depths, "activations": len(acts),
                    "epochs": epochs, "seeds": seeds, "jobs": jobs, "hours": hours})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--signals", type=int, default=10000, help="signals per epoch")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per case (after 3 warm-up steps)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="fewer steps, no sweep (for tests)")
    args = ap.parse_args(argv)
    out = Path(args.results) / "bench"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    steps = 5 if args.quick else args.steps
    timing = {"repeats": 1, "min_s": 0.0} if args.quick else {}
    t0 = time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    bw = copy_bandwidth(128 if args.quick else 512)
    print(f"[bench] copy bandwidth {bw / 1e9:.2f} GB/s", flush=True)
    data = 50 * torch.randn(4096, 1, N, generator=torch.Generator().manual_seed(0))
    rows = []
    def symresnet_row(case: str, channels: int, **model_kw) -> None:
        """The 20-block symmetric ResNet's epoch time against the naive baseline, one row of the table."""
        torch.manual_seed(0)
        net = build_model("symresnet", depth=20, channels=channels, **model_kw)
        t_num = epoch_time(net, data, args.signals, steps, **timing)
        t_naive = epoch_time(NaiveSymResNet(net), data, args.signals, steps, naive=True, **timing)
        rows.append({"case": case, "channels": channels, "numnet_epoch_s": round(t_num, 4),
                     "naive_epoch_s": round(t_naive, 4), "speedup": round(t_naive / t_num, 3),
                     "bound_epoch_s": round(traffic_bound(args.signals, 20, channels, bw), 4)})
        print(f"[bench] {rows[-1]}", flush=True)

    for channels in (1, 16):
        for act in ACTS:
            symresnet_row(f"symresnet-c{channels}-{act}", channels, activation=act)
    # the 16-channel network on the eager path (autograd through conv1d blocks)
    symresnet_row("symresnet-c16-perona_malik-eager", 16, activation="perona_malik", fused=False)
    gemm = matmul_rate()
    flop_epoch = step_flops(20, 16) * args.signals / BATCH
    print(f"[bench] width-3 matrix products {gemm / 1e9:.1f} GFLOP/s; 16-channel epoch {flop_epoch / 1e9:.0f} GFLOP",
          flush=True)
    # stacked networks on this CPU (numnet.nn.stacked: the GPU engine's batched products), per network-epoch
    from numnet.bench_gpu import measure

    stack_n = 3 if args.quick else 9
    stack_epoch = measure(16, stack_n, torch.device("cpu"), max(2, steps // 10))["eager_s"] * math.ceil(
        args.signals / BATCH) / stack_n
    print(f"[bench] {stack_n} stacked 16-channel networks: {stack_epoch:.1f} s per network-epoch", flush=True)
    # the 16-channel network under the provable rule: its bound runs every step
    symresnet_row("symresnet-c16-perona_malik-provable", 16, activation="perona_malik", normalisation="provable")
    # one-channel ResNet (Fig. 5: shared weights; Fig. 6: own weights with Eq. 27's regulariser, beta = 5)
    for shared in (True, False):
        torch.manual_seed(0)
        net = build_model("resnet", depth=20, activation="perona_malik", shared=shared, beta=5.0)
        t_num = epoch_time(net, data, args.signals, steps, **timing)
        t_naive = epoch_time(NaiveResNet(net), data, args.signals, steps, naive=True, **timing)
        rows.append({"case": f"resnet-c1-perona_malik-{'shared' if shared else 'own-beta5'}", "channels": 1,
                     "numnet_epoch_s": round(t_num, 4), "naive_epoch_s": round(t_naive, 4),
                     "speedup": round(t_naive / t_num, 3),
                     "bound_epoch_s": round(2 * traffic_bound(args.signals, 20, 1, bw), 4)})
        print(f"[bench] {rows[-1]}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        n_packed, t_alone, t_packed = packed_speedup(Path(tmp), 1 if args.quick else 5)
    print(f"[bench] {n_packed} networks one by one {t_alone:.1f} s, as one pack {t_packed:.1f} s", flush=True)
    norm_ms = normalisation_cost(5 if args.quick else 21)
    print(f"[bench] normalisation of 20 16-channel kernel sets, forward + backward [ms]: {norm_ms}", flush=True)
    # short epochs (2000 signals) and the paper's (10000, the epoch of every row above); the csv row holds
    # the latter. Lightning's cost is per epoch and per batch, so it weighs more on short epochs.
    light_cases = [(1000, 2)] if args.quick else [(2000, 40), (10000, 8)]
    light = {}
    for n, n_epochs in light_cases:
        ratio, lit, raw = lightning_overhead(n, n_epochs, 1 if args.quick else 7)
        light[n] = (n_epochs, ratio, lit, raw)
        print(f"[bench] Lightning / raw loop, {n_epochs} epochs of {n} signals: {ratio:.3f} "
              f"(fastest {lit:.2f} s vs {raw:.2f} s)", flush=True)
    light_epochs, ratio, lit, raw = light[light_cases[-1][0]]
    rows.append({"case": "lightning-overhead", "channels": 1, "numnet_epoch_s": round(lit / light_epochs, 4),
                 "naive_epoch_s": round(raw / light_epochs, 4), "speedup": round(ratio, 3), "bound_epoch_s": ""})
    estimates = paper_protocol_estimate(data, args.signals, steps, timing)
    threads = {}
    for k in (1, 2):
        torch.set_num_threads(k)
        for channels in (1, 16):
            torch.manual_seed(0)
            net = build_model("symresnet", depth=20, channels=channels, activation="perona_malik")
            threads[(k, channels)] = epoch_time(net, data, args.signals, max(3, steps // 2), **timing)
    torch.set_num_threads(args.threads)
    sweep = None
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            sweep = sweep_speedup(Path(tmp))
        print(f"[bench] sweep 1 job {sweep[0]:.1f} s, 2 jobs {sweep[1]:.1f} s", flush=True)
    old = list(csv.DictReader((out / "bench.csv").open())) if (out / "bench.csv").exists() else []
    with open(out / "bench.csv", "w", newline="") as fh:  # GPU rows (numnet.bench_gpu) come from a GPU: kept
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows + [r for r in old if r["case"].startswith("gpu-")])
    lines = ["# Training speed benchmark", "",
             f"`make bench` (numnet/bench.py). 20 blocks, batch {BATCH}, signals of length {N}; epoch = "
             f"forward + backward + Adam over {args.signals} signals, extrapolated from the median of {REPEATS} repeats "
             f"of at least {steps} timed steps and {MIN_TIMED_S} s each, after 3 warm-up steps; {args.threads} torch "
             "thread(s). Naive baseline: eager `F.pad` + `F.conv1d` per block "
             "(same numerics; with own weights the Eq. (27) regulariser through autograd) with the default "
             "`torch.optim.Adam`; numnet runs the training step its training runs "
             "(`numnet.tasks.denoising.train_step`: for one channel the compiled forward + MSE + regulariser + backward "
             "of `FusedStep` / `FusedResNetStep`, then torch's fused Adam; for 16 channels the two-step recursion as matrix "
             "products with a hand-written backward pass, `numnet.nn.multichannel`). Bound: 20 bytes "
             "per element and block (forward reads u, writes u'; backward reads u "
             f"and the incoming gradient, writes the outgoing one; twice that for ResNet's two convolutions) at the measured "
             f"copy bandwidth {bw / 1e9:.2f} GB/s.",
             "", "| case | numnet epoch [s] | naive epoch [s] | naive / numnet | traffic bound [s] | numnet / bound |",
             "|---|---|---|---|---|---|"]
    for r in rows[:-1]:
        lines.append(f"| {r['case']} | {r['numnet_epoch_s']:.3f} | {r['naive_epoch_s']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['bound_epoch_s']:.3f} | {r['numnet_epoch_s'] / r['bound_epoch_s']:.1f}x |")
    c16 = next(r for r in rows if r["case"] == "symresnet-c16-perona_malik")
    flop_bound = flop_epoch / gemm
    lines += ["", "Rows without a suffix use the default normalisation (the paper's rule); `-provable` divides by the "
              "provable bound, computed every step; `-eager` is the 16-channel network with `model.fused=false` "
              "(autograd through `conv1d` blocks).", "",
              "## 16 channels: the arithmetic bound", "",
              f"A 16-channel training step is matrix products (`numnet.nn.multichannel`): {step_flops(20, 16) / 1e9:.2f} "
              f"GFLOP per step, {flop_epoch / 1e9:.0f} GFLOP per epoch. This core runs those products at "
              f"{gemm / 1e9:.1f} GFLOP/s (measured here), so no implementation of the same arithmetic takes less than "
              f"**{flop_bound:.1f} s per epoch**: {c16['naive_epoch_s'] / flop_bound:.1f}x the naive baseline "
              f"({c16['naive_epoch_s']:.1f} s). numnet's {c16['numnet_epoch_s']:.1f} s are "
              f"{c16['numnet_epoch_s'] / flop_bound:.2f}x that bound. On one core a 10x gain over the naive baseline "
              "would need fewer operations (e.g. Winograd's F(2,3), 1.5x fewer multiplications) or more cores. "
              f"Stacking networks does not help here: {stack_n} networks trained as one stack (`numnet.nn.stacked`, "
              f"the GPU engine's batched products, autograd) take {stack_epoch:.1f} s per network-epoch, "
              f"{stack_epoch / c16['numnet_epoch_s']:.2f}x numnet's one-network step.", "",
              "## Kernel normalisation, one step of a 20-block 16-channel network", "",
              f"Forward and backward of the divisor of 20 kernel sets (16 x 16 x 3), median of {5 if args.quick else 21}:", "",
              "| rule | ms | / 65-frequency baseline |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {v / norm_ms['65-frequency baseline']:.2f} |" for k, v in norm_ms.items()]
    lines += ["", "## Packed training (`ENGINE=packed`, `numnet.packing`)", "",
              f"{n_packed} one-channel networks (4 architectures x 3 activations x depths 1, 5, 20, shared weights; "
              f"2000 signals, {1 if args.quick else 5} epochs, validation every epoch), trained one by one by the "
              f"per-run engine in this process (process starts not counted) and as one pack: {t_alone:.1f} s against "
              f"{t_packed:.1f} s, **{t_alone / t_packed:.2f}x**. The numbers are the same "
              "(`tests/test_packed.py`)."]
    lines += ["", "Lightning `fit` / a raw loop over the same model, minibatches, epochs and validation (PSNR on 200 "
              "signals each epoch), median of the ratios of back-to-back pairs of runs:", "",
              "| epoch | epochs | Lightning [s] | raw loop [s] | Lightning / raw | overhead |", "|---|---|---|---|---|---|"]
    for n, (n_epochs, r, lt, rw) in light.items():
        lines.append(f"| {n} signals | {n_epochs} | {lt:.2f} | {rw:.2f} | **{r:.3f}** | {100 * (r - 1):.1f} % |")
    lines += ["", f"The `lightning-overhead` row of `bench.csv` holds the {light_cases[-1][0]}-signal epochs "
              "(seconds per epoch, fastest run of each).", "",
              "## Threads and parallel jobs", "",
              "| torch threads | 1 channel epoch [s] | 16 channels epoch [s] |", "|---|---|---|"]
    for k in (1, 2):
        lines.append(f"| {k} | {threads[(k, 1)]:.3f} | {threads[(k, 16)]:.3f} |")
    if sweep:
        lines += ["", f"Small Fig. 5-style sweep (4 architectures x 2 activations, depth 10, quick profile, 10 epochs, "
                  "process start-up included), wall time with "
                  f"Hydra's joblib launcher: 1 job {sweep[0]:.1f} s, 2 jobs {sweep[1]:.1f} s: "
                  f"speed-up **{sweep[0] / sweep[1]:.2f}x**."]
    lines += ["", "## Figs. 5, 6 and 7 under `PROFILE=paper`, estimated from measured epoch times", "",
              "Epoch time per block (10000 signals, 20 blocks, Perona-Malik) in each figure's setting, and the wall "
              "time of its whole grid (`configs/experiment/<fig>.yaml`) at the profile's maximum epochs, no early stop:",
              "", "| figure | channels | weights | " + " | ".join(estimates[0]["per_block"]) + " | grid | estimate |",
              "|---|---|---|" + "---|" * len(estimates[0]["per_block"]) + "---|---|"]
    for e in estimates:
        m = e["model"]
        weights = "shared" if m["shared"] else f"own, beta {m['beta']:g}"
        lines.append(f"| {e['figure']} | {m['channels']} | {weights} | "
                     + " | ".join(f"{v:.3f} s" for v in e["per_block"].values())
                     + f" | depths {e['depths']} x {e['activations']} activations x {e['seeds']} seeds x {e['epochs']} "
                     f"epochs | **{e['hours']:.0f} h** ({e['hours'] / 24:.1f} days) |")
    lines += ["", f"Each estimate assumes {estimates[0]['jobs']} parallel jobs of one thread. The profile's early "
              "stop shortens them: the measured wall times of the finished paper-protocol sweeps are in their "
              "`PROVENANCE.json`. Every one-channel architecture has the fused step; with 16 channels the two-step "
              "architectures run as matrix products and ResNet eagerly."]
    lines.append("")
    prov = {"artefact": "bench", **provenance(), "wall_s": round(time.perf_counter() - t0, 1),
            "load_average_at_start": load,  # other processes on the machine skew absolute times, less the ratios
            "bandwidth_GBps": round(bw / 1e9, 3), "quick": args.quick}
    write_artefact(out, lines, prov)
    print(f"[bench] wrote {out}/bench.csv and table.md in {prov['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
