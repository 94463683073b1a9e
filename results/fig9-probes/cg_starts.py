"""How far apart are EED inpainting solutions that the CG solver reaches from different starts? (Fig. 9 test case)

The nonlinear Eq. (29) need not have one solution, and "PSNR against the CG result" compares with the one that the
lagged-diffusivity CG solver (``numnet.schemes.eed.cg_inpaint``) reaches from its default start. This runs the same
solver, to the same stopping rule, from other starts (the pull-push interpolation the networks start from, the
original image, each network's result in ``fields.npz``) and measures each converged solution against that
reference: the spread of the solutions, against which a network's distance to the reference can be read.

    python results/fig9-probes/cg_starts.py results/fig9-long     # -> results/fig9-probes/cg_starts.json
"""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from numnet.models.inpainting import initial_guess
from numnet.runs import provenance
from numnet.schemes.eed import EEDParams, cg_inpaint

torch.set_num_threads(1)
folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/fig9-long")
with np.load(folder / "fields.npz") as z:
    d = {k: torch.tensor(z[k], dtype=torch.float32)[None, None] for k in z.files}
mask, f, ref, img = d["mask"], d["image_masked"], d["image_cg"], d["image_original"]
eed = EEDParams(**json.loads((folder / "evaluation.json").read_text())["info"]["eed"])


def psnr(a, b):
    return 10 * math.log10(255 ** 2 / float(((a - b) ** 2).mean()))


starts = {"default (known pixels, their mean elsewhere)": None, "pull-push interpolation": initial_guess(f, mask),
          "original image": img}
starts.update({f"{k} result": d[f"image_{k}"] for k in ("fmg", "unet", "single_grid") if f"image_{k}" in d})
rows, t0 = [], time.time()
for name, u0 in starts.items():
    u, hist = cg_inpaint(f, mask, eed, u0=u0)
    rows.append({"start": name, "start_psnr_vs_reference": None if u0 is None else round(psnr(u0, ref), 2),
                 "outer_steps": len(hist) - 1, "mean_abs_residual": round(min(h["mean_abs_residual"] for h in hist), 5),
                 "psnr_vs_reference": round(psnr(u, ref), 2), "psnr_vs_original": round(psnr(u, img), 2)})
    print(rows[-1], flush=True)
out = {"fields": str(folder / "fields.npz"), "eed": eed.__dict__, "rows": rows, "wall": round(time.time() - t0, 1),
       "provenance": provenance()}
(Path(__file__).resolve().parent / "cg_starts.json").write_text(json.dumps(out, indent=1) + "\n")
