"""GPU benchmark of the stacked engine: ``make bench-gpu`` writes the ``gpu-`` rows of ``results/bench/bench.csv``
and ``results/bench/gpu/{table.md,PROVENANCE.json}`` (naming the device).

Each case is ``M`` symmetric ResNets (20 blocks, Perona--Malik, own weights, the paper's normalisation rule)
with ``C`` channels trained as :class:`numnet.tasks.stacked.StackedDenoising` trains them: minibatches of 32
signals of length 256 gathered on the device from a resident training set of 10000 by ``(M, 32)`` index
tensors, forward, per-network losses, backward and one fused capturable Adam step over the stack
(:func:`numnet.tasks.stacked.step_stacks`), eagerly and recorded as one CUDA graph
(:class:`numnet.tasks.stacked.CapturedStep`). Reported: seconds per step of the stack, the amortised seconds
per network-epoch (``ceil(10000 / 32)`` steps over ``M`` networks; column ``numnet_epoch_s``; the eager
step's in ``naive_epoch_s``), and for the packed 16-channel step the achieved fraction of the device's fp32
matrix-product rate and of its copy bandwidth, both measured here (TF32 off). Without CUDA it runs only with
``--device cpu`` (eagerly, for the tests) and writes to the folder it is given.
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch

from numnet.bench import BATCH, N, step_flops, traffic_bound
from numnet.models import SymResNet
from numnet.nn.stacked import StackedTwoStep
from numnet.report.artefact import write_artefact
from numnet.runs import provenance
from numnet.tasks.stacked import CapturedStep, on_side_stream, step_stacks

__all__ = ["CASES", "measure", "main"]

#: (case, channels, networks in the stack)
CASES = [("gpu-symresnet-c16-single", 16, 1), ("gpu-symresnet-c16-pack9", 16, 9),
         ("gpu-symresnet-c16-pack27", 16, 27), ("gpu-symresnet-c1-single", 1, 1),
         ("gpu-symresnet-c1-pack60", 1, 60), ("gpu-symresnet-c1-pack252", 1, 252)]
SIGNALS = 10000
DEPTH = 20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls (after one untimed call)."""
    fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / steps


def measure(channels: int, nets: int, device: torch.device, steps: int) -> dict[str, float]:
    """Seconds per step of a stack of ``nets`` networks with ``channels`` channels: eager and, on CUDA, captured."""
    torch.manual_seed(0)
    models = [SymResNet(depth=DEPTH, channels=channels, shared=False, beta=0.0, activation="perona_malik")
              for _ in range(nets)]
    stack = StackedTwoStep(models).to(device)
    cuda = device.type == "cuda"
    opt = torch.optim.Adam(stack.parameters(), lr=1e-3, fused=True, capturable=cuda)
    gen = torch.Generator(device="cpu").manual_seed(1)
    clean = (100 * torch.rand(SIGNALS, 1, N, generator=gen)).to(device)
    noisy = clean + 10 * torch.randn(SIGNALS, 1, N, generator=gen).to(device)
    perm = torch.stack([torch.randperm(SIGNALS, generator=gen) for _ in range(nets)]).to(device)
    mask = [torch.ones(nets, dtype=torch.bool, device=device)]
    pos = [0]

    def batch() -> list[torch.Tensor]:
        lo = pos[0]
        pos[0] = (lo + BATCH) % (SIGNALS - BATCH)
        return [perm[:, lo:lo + BATCH]]

    out = {"eager_s": _timed(lambda: step_stacks([stack], mask, noisy, clean, batch(), opt), steps, device)}
    if cuda:
        for _ in range(3):
            on_side_stream(lambda: step_stacks([stack], mask, noisy, clean, batch(), opt))
        graph = CapturedStep([stack], mask, noisy, clean, batch(), opt)
        out["graph_s"] = _timed(lambda: graph(batch()), steps, device)
    return out


def _device_rates(device: torch.device) -> tuple[float, float]:
    """The fp32 matrix-product rate (FLOP/s, TF32 off) and the copy bandwidth (B/s) of the device, measured."""
    torch.backends.cuda.matmul.allow_tf32 = False
    size = 8192 if device.type == "cuda" else 512
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    gemm = 2 * size ** 3 / _timed(lambda: a @ b, 10, device)
    x = torch.empty(256 * 2 ** 20 // 4 if device.type == "cuda" else 2 ** 22, device=device)
    y = torch.empty_like(x)
    copy = 2 * x.numel() * 4 / _timed(lambda: y.copy_(x), 20, device)
    return gemm, copy


def _keep_cpu_rows(path: Path, rows: list[dict]) -> None:
    """``bench.csv`` with its rows that are not GPU rows kept and the GPU rows replaced by ``rows``."""
    old = list(csv.DictReader(path.open())) if path.exists() else []
    fields = list(old[0]) if old else list(rows[0])
    keep = [r for r in old if not r["case"].startswith("gpu-")]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(keep + rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per case")
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (eager only, for the tests)")
    ap.add_argument("--cases", default=",".join(c for c, _, _ in CASES), help="comma-separated case names")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the host side of the GPU steps)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device: `make bench-gpu` measures a GPU (--device cpu runs the cases eagerly)")
        return 2
    chosen = [c for c in CASES if c[0] in args.cases.split(",")]
    if not chosen:
        print(f"error: no known case in {args.cases!r}; choose from {[c for c, _, _ in CASES]}")
        return 2
    t0 = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    gemm, copy = _device_rates(device)
    print(f"[bench-gpu] {name}: fp32 products {gemm / 1e12:.2f} TFLOP/s, copies {copy / 1e9:.0f} GB/s", flush=True)
    steps_per_epoch = math.ceil(SIGNALS / BATCH)
    rows, lines = [], []
    for case, channels, nets in chosen:
        t = measure(channels, nets, device, args.steps)
        best = t.get("graph_s", t["eager_s"])
        flops = nets * step_flops(DEPTH, channels)
        bound = max(flops / gemm, traffic_bound(BATCH, DEPTH, channels, copy) * nets) * steps_per_epoch / nets
        rows.append({"case": case, "channels": channels, "numnet_epoch_s": round(best * steps_per_epoch / nets, 5),
                     "naive_epoch_s": round(t["eager_s"] * steps_per_epoch / nets, 5),
                     "speedup": round(t["eager_s"] / best, 3), "bound_epoch_s": round(bound, 6)})
        lines.append(f"| {case} | {nets} | {1e3 * t['eager_s']:.2f} | "
                     + (f"{1e3 * t['graph_s']:.2f}" if "graph_s" in t else "-")
                     + f" | {rows[-1]['numnet_epoch_s']:.4f} | {100 * flops / best / gemm:.1f} % | "
                     f"{100 * traffic_bound(BATCH, DEPTH, channels, 1.0) * nets / best / copy:.1f} % |")
        print(f"[bench-gpu] {rows[-1]}", flush=True)
    out = Path(args.results) / "bench"
    out.mkdir(parents=True, exist_ok=True)
    _keep_cpu_rows(out / "bench.csv", rows)
    text = ["# Stacked training on the GPU", "",
            f"`make bench-gpu` (numnet/bench_gpu.py) on **{name}**: {DEPTH}-block symmetric ResNets, Perona-Malik, own "
            f"weights, batch {BATCH}, length {N}, {SIGNALS} resident training signals, fp32 (TF32 off). A step is the "
            "whole Adam step of the stack (gather, forward, losses, backward, fused capturable Adam); `graph` replays "
            f"it as one CUDA graph. Per network-epoch: {steps_per_epoch} steps over the stack's networks. Fractions: "
            f"of the fp32 product rate measured here ({gemm / 1e12:.2f} TFLOP/s; the arithmetic of `numnet.bench.step_flops`) "
            f"and of the copy bandwidth measured here ({copy / 1e9:.0f} GB/s; the traffic of `numnet.bench.traffic_bound`).",
            "", "| case | networks | eager step [ms] | graph step [ms] | s per network-epoch | of fp32 rate | of bandwidth |",
            "|---|---|---|---|---|---|---|"] + lines + [""]
    prov = {"artefact": "bench-gpu", **provenance(), "device": name, "wall_s": round(time.perf_counter() - t0, 1),
            "gemm_tflops": round(gemm / 1e12, 3), "copy_GBps": round(copy / 1e9, 1), "steps": args.steps}
    gpu = out / "gpu"
    gpu.mkdir(exist_ok=True)
    write_artefact(gpu, text, prov)
    print(f"[bench-gpu] wrote {out}/bench.csv (gpu- rows) and {gpu}/table.md in {prov['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
