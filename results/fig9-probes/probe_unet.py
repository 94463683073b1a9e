"""Probes of the Fig. 9 U-net's training (session of 2026-11-30): what limits it, measured on short runs.

A plain training loop with the pipeline's parts (``numnet.data.images.CropStream``, ``numnet.models.inpainting``,
the residual of Eq. (29) as loss after a 300-step squared warm-up, Adam), one variant per flag. Every ``--every``
steps it records the validation residual (16 crops of the held-out ``coins`` and ``clock``, the pipeline's
validation set) and, for information only, the PSNR against the CG solution on the test case (``astronaut``, 20 %
mask, seed 1000) and that case's mean residual. Choices were made on the validation residual.

    python results/fig9-probes/probe_unet.py --name photos --train chelsea,motorcycle_left,motorcycle_right \
        --synthetic 0 --sched cos --steps 6000          # one probe -> results/fig9-probes/photos.json
    python results/fig9-probes/probe_unet.py --table    # table.md from every probe's JSON
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ap = argparse.ArgumentParser()
ap.add_argument("--name"); ap.add_argument("--table", action="store_true")
ap.add_argument("--model", default="unet")
ap.add_argument("--lr", type=float, default=1e-2); ap.add_argument("--sched", default="const", choices=["const", "cos"])
ap.add_argument("--batch", type=int, default=4); ap.add_argument("--steps", type=int, default=6000)
ap.add_argument("--synthetic", type=float, default=0.25); ap.add_argument("--init", default="default")
ap.add_argument("--widths", default="17,34,68"); ap.add_argument("--warm", type=int, default=300)
ap.add_argument("--crop", type=int, default=64); ap.add_argument("--every", type=int, default=1000)
ap.add_argument("--train", default="", help="comma-separated training images (default: the mix set)")
ap.add_argument("--busy", type=int, default=1, help="draw this many times the batch, keep the crops of largest spread")
ap.add_argument("--contrast", type=float, default=1.0, help="random contrast: crop deviations scaled by [1/c, c]")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--known-weight", type=float, default=1.0,
                help="weight of the residual on the known pixels in the loss (the unknown ones: 1; the paper: 1)")
ap.add_argument("--layers", type=int, default=2, help="U-net only: 3 x 3 convolutions per scale and side")
ap.add_argument("--norm", default="none", help="U-net only: none or batch (normalisation after each convolution)")
ap.add_argument("--passes", type=int, default=1,
                help="U-net only: apply it this many times with shared weights, each pass from the last one's result "
                     "and its residual (inpaint_model.passes; 1 = the paper's U-net)")
ap.add_argument("--loss", default="abs", choices=["abs", "jacobi", "multiscale"],
                help="abs: the mean |residual| (the paper's); jacobi: each unknown pixel's residual divided by its diagonal "
                     "entry of A (relative to the batch mean), so that edges, where A's diagonal is small, weigh more; "
                     "multiscale: adds the 2 x 2 and 4 x 4 averages of the signed residual, weighted 2 and 4")
ap.add_argument("--pad", default="zeros", help="padding of every 3 x 3 convolution: zeros (the pipeline's), replicate or reflect")
a = ap.parse_args()
#: arguments named in the table's "other" column where they differ from these defaults
OTHER = (("busy", 1), ("crop", 64), ("pad", "zeros"), ("passes", 1), ("contrast", 1.0), ("norm", "none"), ("layers", 2),
         ("known_weight", 1.0), ("init", "default"), ("widths", "17,34,68"), ("loss", "abs"))

if a.table:
    rows = [r for r in (json.loads(p.read_text()) for p in sorted(HERE.glob("*.json"))) if "hist" in r]  # probes only
    lines = ["# U-net probes (Fig. 9)", "", "Written by `python results/fig9-probes/probe_unet.py --table` from the "
             "probes' JSON files. Validation residual (the quantity trained for, on the held-out validation crops) "
             "at the last step; the test case's numbers are for information (no choice was made on them). Validation PSNR "
             "vs CG: the validation crops against their own CG solutions, at the end (probes from 2026-12-01 on; "
             "a probe that changes the loss is judged on it, since its loss is no longer the paper's residual).", "",
             "| probe | training images | synthetic | step size | schedule | batch | steps | seed | other | params | "
             "validation residual | validation PSNR vs CG [dB] | astronaut PSNR vs CG [dB] | astronaut residual | on known / unknown pixels | wall [s] |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["hist"][-1][1]):
        g = r["args"]
        other = ", ".join(f"{k} {g[k]}" for k, d in OTHER if g.get(k, d) != d) or "-"
        step, val, psnr, res = r["hist"][-1]
        known_unknown = r.get("astronaut_residual_known_unknown")
        split = f"{known_unknown[0]:.3f} / {known_unknown[1]:.3f}" if known_unknown else "-"
        val_psnr = f"{r['val_psnr_cg']:.2f}" if "val_psnr_cg" in r else "-"
        lines.append(f"| {g['name']} | {g['train'] or 'mix'} | {g['synthetic']} | {g['lr']:g} | {g['sched']} | "
                     f"{g['batch']} | {step} | {g['seed']} | {other} | {r['params']:,} | {val:.4f} | {val_psnr} | {psnr:.2f} | {res:.3f} | "
                     f"{split} | {r['wall']:.0f} |")
    lines += ["", "Machine and commit of each probe: its JSON's `provenance`, or, where that is `null`, README.md."]
    (HERE / "table.md").write_text("\n".join(lines) + "\n")
    raise SystemExit(0)

torch.set_num_threads(1)
from numnet.data.images import TRAIN_IMAGES, VAL_IMAGES, CropStream, crop_bank, random_masks, test_image  # noqa: E402
from numnet.models.inpainting import build_inpainter  # noqa: E402
from numnet.runs import provenance  # noqa: E402
from numnet.schemes.eed import EEDParams, cell_tensor, cg_inpaint, eed_diagonal, eed_residual  # noqa: E402

eed = EEDParams()
img = test_image("astronaut")
mask = random_masks(img.shape, 0.2, torch.Generator().manual_seed(1000))
f = img * mask
ref, _ = cg_inpaint(f, mask, eed)


def loss_terms(r, u, m):
    """The residual as the loss sees it (``--loss``), before its absolute value or square."""
    if a.loss == "jacobi":
        with torch.no_grad():
            d = eed_diagonal(cell_tensor(u, eed), eed.alpha).abs()
            d = (d * (1 - m)).sum() / (1 - m).sum().clamp_min(1) / d.clamp_min(1e-3)  # mean |a_ii| / |a_ii|
        return [r * (m + (1 - m) * d.clamp(max=10.0))]
    if a.loss == "multiscale":
        return [r, 2.0 * torch.nn.functional.avg_pool2d(r, 2), 4.0 * torch.nn.functional.avg_pool2d(r, 4)]
    return [r]


def psnr(x, y):
    return 10 * math.log10(255 ** 2 / float(((x - y) ** 2).mean()))


stream = CropStream(tuple(a.train.split(",")) if a.train else TRAIN_IMAGES, a.batch * a.busy, a.crop,
                    1000 * a.seed, 10 ** 9, a.synthetic, 2.0)
val = crop_bank(VAL_IMAGES, 16, 64, 1)
vm = random_masks(val.shape, 0.2, torch.Generator().manual_seed(2))
val_ref, _ = cg_inpaint(val * vm, vm, eed)  # the validation crops' CG solutions: PSNR against them at the end
torch.manual_seed(a.seed)
kw = {"init": a.init}
if a.model == "unet":
    kw["widths"] = tuple(int(x) for x in a.widths.split(","))
    kw["norm"] = a.norm
    kw["layers"] = a.layers
    kw["passes"] = a.passes
model = build_inpainter(a.model, **kw)
for conv in model.modules():  # the boundary rule of the convolutions (Eq. (29) itself reflects at the boundary)
    if isinstance(conv, torch.nn.Conv2d) and conv.padding != (0, 0):
        conv.padding_mode = a.pad
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
sch = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps))) if a.sched == "cos" else None
gen = torch.Generator().manual_seed(a.seed + 7)
t0, hist, it = time.time(), [], iter(stream)
for step in range(1, a.steps + 1):
    clean = next(it)
    if a.busy > 1:
        clean = clean[clean.std(dim=(1, 2, 3)).argsort(descending=True)[: a.batch]]
    if a.contrast > 1:
        k = torch.exp((2 * torch.rand(clean.shape[0], 1, 1, 1, generator=gen) - 1) * math.log(a.contrast))
        mu = clean.mean(dim=(2, 3), keepdim=True)
        clean = (mu + k * (clean - mu)).clamp(0, 255)
    m = (torch.rand(clean.shape, generator=gen) < 0.2).float()
    fc = clean * m
    u_step = model(fc, m)
    r = eed_residual(u_step, fc, m, eed)
    w = 1.0 + (a.known_weight - 1.0) * m  # 1 on the unknown pixels, known_weight on the known ones
    terms = loss_terms(w * r, u_step, m)
    loss = sum((t ** 2).mean() if step <= a.warm else t.abs().mean() for t in terms)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sch:
        sch.step()
    if step % a.every == 0 or step == a.steps:
        model.eval()
        with torch.no_grad():
            vf = val * vm
            vr = float(eed_residual(model(vf, vm), vf, vm, eed).abs().mean())
            u = model(f, mask)
            tr, tp = float(eed_residual(u, f, mask, eed).abs().mean()), psnr(u, ref)
        model.train()
        hist.append((step, round(vr, 4), round(tp, 2), round(tr, 3)))
        print(a.name, step, f"val {vr:.4f} astronaut {tp:.2f} dB residual {tr:.3f} {time.time() - t0:.0f}s", flush=True)
model.eval()
with torch.no_grad():  # at the end: the test case's mean |residual| on its known and on its unknown pixels, and the
    # validation crops' PSNR against their CG solutions
    r_end = eed_residual(model(f, mask), f, mask, eed).abs()
    val_psnr = psnr(model(val * vm, vm), val_ref)
split = [round(float(r_end[mask > 0.5].mean()), 4), round(float(r_end[mask < 0.5].mean()), 4)]
print(a.name, f"validation crops' PSNR against their CG solutions {val_psnr:.2f} dB", flush=True)
print(a.name, f"astronaut residual on known pixels {split[0]:.4f}, on unknown pixels {split[1]:.4f}", flush=True)
out = {"args": vars(a), "hist": hist, "wall": time.time() - t0, "params": model.n_params(), "provenance": provenance(),
       "astronaut_residual_known_unknown": split,
       "val_psnr_cg": round(val_psnr, 2)}
(HERE / f"{a.name}.json").write_text(json.dumps(out))
