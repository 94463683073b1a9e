"""Learned inpainting solvers (Sec. 7.2.3): sizes, the FMG schedule and FAS transfers, training, errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from numnet.models.inpainting import FMG_ORDER, SCALE, FMGNet, InpaintUNet, build_inpainter, initial_guess, prolong, restrict
from numnet.schemes.eed import mean_abs_residual

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["fmg", "unet", "single_grid"])
def test_each_network_has_about_1_2e5_parameters(name):
    n = build_inpainter(name).n_params()
    assert 1.0e5 <= n <= 1.3e5, n


def test_fmg_runs_the_papers_schedule_with_fmg_steps_fas_descents_and_corrections():
    torch.manual_seed(0)
    net = FMGNet()
    seen = []
    orig = net.solve

    def spy(level, x, b, mask):
        seen.append((level, tuple(x.shape[-2:])))
        return orig(level, x, b, mask)

    net.solve = spy
    f = torch.rand(2, 1, 32, 32) * 255
    c = (torch.rand_like(f) < 0.3).float()
    net(f * c, c)
    assert [lvl for lvl, _ in seen] == list(FMG_ORDER) == [2, 1, 2, 1, 0, 1, 2, 1, 2, 1, 0]
    assert all(shape == (32 // 2 ** lvl,) * 2 for lvl, shape in seen)


def test_fas_coarse_problem_is_solved_by_the_restricted_fine_solution():
    """FAS: b_H = R(b_h - N_h(x_h)) + N_H(R x_h); if x_h solves the fine problem, R x_h solves the
    coarse one, so an exact solver leaves the coarse-grid correction x_h + P(x_H - R x_h) at x_h."""
    torch.manual_seed(1)
    net = FMGNet().double()
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64) * 255
    mask = (torch.rand_like(x) < 0.3).double()
    b = net.operator(x, mask, 0)  # x solves N_0(x) = b exactly
    from numnet.schemes.eed import restrict_mask

    mc = restrict_mask(mask)
    b_c = restrict(b - net.operator(x, mask, 0)) + net.operator(restrict(x), mc, 1)
    assert torch.allclose(b_c - net.operator(restrict(x), mc, 1), torch.zeros_like(b_c), atol=1e-9)
    assert torch.equal(x + prolong(restrict(x) - restrict(x)), x)


def test_untrained_networks_start_from_the_common_initial_guess():
    f = torch.rand(1, 1, 16, 16) * 255
    c = (torch.rand_like(f) < 0.3).float()
    for name in ("unet", "single_grid"):
        assert torch.allclose(build_inpainter(name)(f * c, c), initial_guess(f * c, c))


def test_initial_guess_keeps_known_pixels_and_fills_with_local_averages():
    f = torch.zeros(1, 1, 8, 8)
    c = torch.zeros_like(f)
    f[..., :4, :4], c[..., 0, 0] = 100.0, 1.0     # one known pixel in the top-left quarter
    f[..., 7, 7], c[..., 7, 7] = 20.0, 1.0        # one in the far corner
    u = initial_guess(f * c, c)
    assert u[0, 0, 0, 0] == 100 and u[0, 0, 7, 7] == 20
    assert u[0, 0, 1, 1] > u[0, 0, 6, 6]          # nearer the bright known pixel: brighter
    assert float(u.min()) >= 20 and float(u.max()) <= 100


@pytest.mark.integration
def test_training_lowers_the_residual_loss():
    from numnet.tasks.inpainting import InpaintingTask

    torch.manual_seed(0)
    net = build_inpainter("fmg")
    task = InpaintingTask(net, lr=1e-3)
    opt = task.configure_optimizers()
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, 32)
    img = (120 + 100 * torch.sin(5 * x)[:, None] * torch.cos(3 * x)[None, :]).expand(4, 1, 32, 32)
    mask = (torch.rand(img.shape, generator=g) < 0.2).float()
    losses = []
    for _ in range(30):
        loss = mean_abs_residual(net(img * mask, mask), img * mask, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.99 * losses[0]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="divisible by 4"):
        FMGNet()(torch.zeros(1, 1, 30, 30), torch.zeros(1, 1, 30, 30))
    with pytest.raises(ValueError, match="unknown inpainting model"):
        build_inpainter("resnet")
    with pytest.raises(ValueError, match="end on h"):
        FMGNet(order=(2, 1))


def test_each_network_takes_its_own_learning_rate_or_the_profiles():
    from omegaconf import OmegaConf

    from numnet.inpaint import learning_rate, model_kwargs

    cfg = OmegaConf.create({"inpaint_profile": {"lr": 1e-3}, "inpaint_model": {"name": "unet", "lr": 1e-2, "init": "he"}})
    assert learning_rate(cfg) == 1e-2 and model_kwargs(cfg) == {"init": "he"}  # not a constructor argument
    cfg.inpaint_model.lr = None
    assert learning_rate(cfg) == 1e-3


@pytest.mark.cli
@pytest.mark.parametrize("override,message", [("inpaint_model=vit", "inpaint_model"), ("data.crop=30", "data.crop"),
                                              ("data.density=0", "data.density"), ("inpaint_profile.steps=0", "steps"),
                                              ("eed.lam=-1", "eed.lam"), ("loss.squared_warmup=-5", "loss.squared_warmup"),
                                              ("inpaint_model.lr=-1", "inpaint_model.lr"),
                                              ("+inpaint_profile.lr_schedule=linear", "lr_schedule"),
                                              ("data.train_set=imagenet", "data.train_set"),
                                              ("checkpoint_every_s=-1", "checkpoint_every_s")])
def test_inpaint_config_errors_are_one_line_before_compute(override, message, tmp_path):
    r = subprocess.run([sys.executable, "-m", "numnet.inpaint", override, "inpaint_profile=smoke", "logger=none",
                        f"output_root={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert message in r.stderr
    assert not list(tmp_path.glob("**/model.pt"))


@pytest.mark.slow
def test_reproduce_fig9_smoke_writes_every_artefact_and_resumes(tmp_path):
    cmd = [sys.executable, "-m", "numnet.reproduce", "fig9", "--profile", "smoke", "--logger", "none", "--results", str(tmp_path)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "fig9"
    import pandas as pd

    m = pd.read_csv(out / "metrics.csv")
    assert list(m.columns) == ["method", "image", "density", "params", "mean_abs_residual", "psnr_vs_cg",
                               "psnr_vs_original", "seconds"]
    assert sorted(set(m.method)) == ["cg", "fmg", "single_grid", "unet"]
    assert m.image.nunique() == 4 and sorted(set(m.density)) == [0.05, 0.1, 0.2] and len(m) == 4 * 4 * 3
    timed = m.dropna(subset=["seconds"])  # the paper's case only: the test image at the training density
    assert set(timed.image) == {"astronaut"} and set(timed.density) == {0.2} and len(timed) == 4
    assert (out / "fig9.png").stat().st_size > 0 and "CG / net" in (out / "table.md").read_text()
    from numnet.data.images import TRAIN_IMAGES
    from numnet.report.fig9 import trained_on, write_fig9

    # the report reads the stored measurements only: rebuilt from them, the table is the same, byte for byte
    table = (out / "table.md").read_text()
    import re

    assert not re.search(r"\{[A-Za-z_][^{}\"]*\}", table)  # every f-string placeholder filled (JSON may stay)
    (out / "table.md").unlink()
    (out / "fig9.png").unlink()
    write_fig9(out)
    assert (out / "table.md").read_text() == table and (out / "fig9.png").stat().st_size > 0

    for path in out.glob("runs/*/summary.json"):  # what each network trained on is recorded, held-out images apart
        assert trained_on(json.loads(path.read_text())) == set(TRAIN_IMAGES) and "astronaut" not in TRAIN_IMAGES
    prov = json.loads((out / "PROVENANCE.json").read_text())
    assert prov["profile"] == "smoke" and prov["runs_written"] == 3
    first = {p.parent.name: json.loads(p.read_text())["provenance"]["time_utc"] for p in out.glob("runs/*/summary.json")}
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)  # a finished sweep is redone
    assert r.returncode == 0 and "training afresh" in r.stdout, r.stderr[-2000:]
    kept = {p.parent.name: json.loads(p.read_text())["provenance"]["time_utc"]
            for p in out.glob("previous-runs/runs/*/summary.json")}
    assert kept == first and len(list(out.glob("runs/*/summary.json"))) == 3


def test_fig9_provenance_records_what_the_overrides_train():
    """``PROVENANCE.json`` of a Fig. 9 sweep states the settings each network trains under, ``--extra`` included
    (it once stated the profile's yaml alone, so a sweep trained on photos with the cosine read as mix, constant)."""
    from numnet.artefacts.fig9 import sweep_settings

    plain = sweep_settings("quick", [])
    assert (plain["lr_schedule"], plain["train_set"], plain["synthetic"], plain["steps"]) == ("constant", "mix", 0.25, 2000)
    assert plain["lr"] == {"fmg": 1e-3, "single_grid": 1e-3, "unet": 1e-2}
    extra = ["+inpaint_profile.lr_schedule=cosine", "+inpaint_profile.train_set=photos", "inpaint_profile.steps=7",
             "inpaint_model.lr=0.05"]
    over = sweep_settings("quick", extra)
    assert (over["lr_schedule"], over["train_set"], over["steps"]) == ("cosine", "photos", 7)
    assert over["lr"] == {"fmg": 0.05, "single_grid": 0.05, "unet": 0.05}
    assert sweep_settings("long", [])["train_set"] == "photos"
    assert sweep_settings("quick", ["seed=0,1", "inpaint_profile.steps=9"])["steps"] == 9  # a sweep override: per run


@pytest.mark.cli
def test_fig9_bad_extra_override_is_refused_before_training(tmp_path):
    r = subprocess.run([sys.executable, "-m", "numnet.reproduce", "fig9", "--profile", "smoke", "--logger", "none",
                        "--results", str(tmp_path), "--extra", "inpaint_profile.stepz=3"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "stepz" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not list(tmp_path.glob("**/summary.json"))


def test_residual_split_by_the_mask_recombines_to_the_mean_residual():
    """The report's split of the mean |residual| into known and unknown pixels: each part is the mean over its
    pixels, and the two weighted by their shares give the overall mean (the committed long run included)."""
    import numpy as np

    from numnet.report.fig9 import residual_split

    mask = np.zeros((4, 4), np.float32)
    mask[0, :3] = 1.0
    res = np.full((4, 4), -2.0, np.float32)
    res[0, :3] = 0.5
    assert residual_split({"m": res}, mask) == {"m": (0.5, 2.0)}
    with np.load(REPO / "results/fig9-long/fields.npz") as z:
        f = {k: z[k].astype(np.float64) for k in z.files}
    share = float((f["mask"] > 0.5).mean())
    for name, (known, unknown) in residual_split({"unet": f["residual_unet"], "fmg": f["residual_fmg"]}, f["mask"]).items():
        assert share * known + (1 - share) * unknown == pytest.approx(np.abs(f[f"residual_{name}"]).mean(), rel=1e-6)


def test_error_by_edge_strength_bands_the_unknown_pixels_by_the_cg_results_edges():
    """The report's "Where the error lies": a deviation placed only on a step edge of the CG result falls wholly in
    the strongest band, the bands' squared deviations add up to the whole, and known pixels count nowhere. On the
    committed long run it shows the measured finding: on the strongest edges the U-net leaves the smaller residual
    and the larger deviation from the CG result."""
    import numpy as np

    from numnet.report.fig9 import error_by_edge_strength

    i = np.arange(40.0)[:, None] + np.zeros((1, 40))
    cg = 0.01 * i ** 2                                   # a gentle ramp, its slope growing down the rows
    cg[:, 20:] += 200.0                                  # and a vertical step edge between columns 19 and 20
    mask = np.zeros((40, 40), np.float32)
    mask[::4, ::4] = 1.0
    net = cg.copy()
    net[:, 19:21] += 10.0                                # deviation on the edge only (columns 19, 20: none known)
    net[::4, ::4] += 50.0                                # and on known pixels, which no band counts
    res = np.where(mask > 0.5, 0.0, 1.0)
    rows = error_by_edge_strength({"cg": cg, "net": net}, {"net": res, "cg": 0 * res}, mask, sigma=1.0)["net"]
    assert [round(w, 6) for _, _, w in rows[:2]] == [0.0, 0.0] and sum(w for _, _, w in rows) == pytest.approx(1.0)
    assert rows[-1][2] > 0.3 and rows[-1][1] > max(e for _, e, _ in rows[:-1])
    assert all(r == 1.0 for r, _, _ in rows)             # every band's pixels are unknown ones
    with np.load(REPO / "results/fig9-long/fields.npz") as z:
        f = {k: z[k].astype(np.float64) for k in z.files}
    images = {k: f[f"image_{k}"] for k in ("cg", "fmg", "unet")}
    by_edge = error_by_edge_strength(images, {k: f[f"residual_{k}"] for k in ("fmg", "unet")}, f["mask"], 0.97)
    for rows in by_edge.values():
        assert sum(w for _, _, w in rows) == pytest.approx(1.0)
    (fr, fe, _), (ur, ue, _) = by_edge["fmg"][-1], by_edge["unet"][-1]
    assert ur < fr and ue > fe


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    from numnet.models.weights import CheckpointError, load_weights

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(bad)
    with pytest.raises(CheckpointError, match="no weights"):
        load_weights(tmp_path / "missing.pt")


def test_one_weights_format_for_inpainting_networks_and_denoisers(tmp_path):
    """An inpainting network and a denoiser go through the same saver and loader (weights_only); the Fig. 9
    networks' earlier format still loads."""
    from numnet.models import build_model
    from numnet.models.weights import WEIGHTS_FORMAT, load_weights, save_weights

    for name, net, kwargs in (("unet", build_inpainter("unet"), {"widths": [17, 34, 68]}),
                              ("symresnet", build_model("symresnet", depth=2, channels=2), {"depth": 2, "channels": 2})):
        save_weights(tmp_path / name / "model.pt", name, kwargs, net.state_dict(), {"name": name})
        loaded, rec = load_weights(tmp_path / name)
        assert rec["format"] == WEIGHTS_FORMAT and not loaded.training
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    rec = torch.load(tmp_path / "unet" / "model.pt", weights_only=True)
    torch.save({**rec, "format": "numnet-inpainter-v1"}, tmp_path / "old.pt")
    assert type(load_weights(tmp_path / "old.pt")[0]).__name__ == "InpaintUNet"


def test_training_data_are_offline_and_deterministic(monkeypatch):
    """Every image ships inside an installed package (no socket is opened to load them); the crop stream and the
    synthetic images repeat exactly with a seed and differ with another; the held-out images are not trained on."""
    import socket

    from numnet.data.images import (FURTHER_TEST_IMAGES, TEST_IMAGE, TRAIN_IMAGES, TRAIN_SETS, VAL_IMAGES, CropStream,
                                    load_grey, synthetic_images, test_image)

    def no_network(*args, **kwargs):
        raise AssertionError("an image was fetched from the network")

    monkeypatch.setattr(socket, "socket", no_network)
    trained = {n for names in TRAIN_SETS.values() for n in names}
    for name in sorted(trained) + list(VAL_IMAGES + (TEST_IMAGE,) + FURTHER_TEST_IMAGES):
        img = load_grey(name)
        assert img.dim() == 2 and float(img.min()) >= 0 and float(img.max()) <= 255.001 and float(img.max()) > 100, name
    held_out = set(VAL_IMAGES) | {TEST_IMAGE} | set(FURTHER_TEST_IMAGES)
    assert not held_out & trained and TRAIN_SETS["mix"] == TRAIN_IMAGES
    left, right = load_grey("motorcycle_left"), load_grey("motorcycle_right")  # the stereo pair's two views
    assert left.shape == right.shape and not torch.equal(left, right)
    assert all(test_image(n).shape == (1, 1, 256, 256) for n in (TEST_IMAGE, *FURTHER_TEST_IMAGES))
    a, b, c = (list(CropStream(TRAIN_IMAGES, 4, 32, seed, epoch=6)) for seed in (0, 0, 1))
    assert len(a) == 6 and all(x.shape == (4, 1, 32, 32) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not all(torch.equal(x, y) for x, y in zip(a, c))
    assert float(torch.stack(a).min()) >= 0 and float(torch.stack(a).max()) <= 255.001
    assert torch.unique(torch.cat(a).flatten(1), dim=0).shape[0] == 24  # fresh crops, no repeats
    s1, s2 = (synthetic_images(4, 32, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(s1, s2) and float(s1.min()) >= 0 and float(s1.max()) <= 255
    jumps = (s1[0::2, 0, :, 1:] - s1[0::2, 0, :, :-1]).abs()  # shapes over a ramp: flat almost everywhere, edges
    assert float(jumps.median()) < 1.0 and float(jumps.max()) > 10.0


def test_fig9_report_without_measurements_says_what_to_run(tmp_path):
    from numnet.report.fig9 import main

    (tmp_path / "runs").mkdir()
    assert main([str(tmp_path)]) == 2
    from numnet.report.fig9 import write_fig9

    with pytest.raises(FileNotFoundError, match="numnet.evaluate_inpainting"):
        write_fig9(tmp_path)


def test_fmg_start_has_pixels_of_zero_residual_and_the_warmup_minimises_the_square():
    """Why the squared warm-up exists: the FMG net's start (nearest-neighbour prolongations) leaves unknown pixels
    whose residual of Eq. (29) is exactly 0, a kink of the absolute value; the pull-push start has none. During
    ``squared_warmup`` steps the training loss is the mean squared residual, afterwards the paper's absolute one."""
    from numnet.schemes.eed import eed_residual
    from numnet.tasks.inpainting import InpaintingTask

    torch.manual_seed(0)
    x = torch.linspace(0, 1, 32)
    img = (120 + 100 * torch.sin(5 * x)[:, None] * torch.cos(3 * x)[None, :]).expand(2, 1, 32, 32).contiguous()
    mask = (torch.rand(img.shape, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    f = img * mask
    with torch.no_grad():
        r_fmg = eed_residual(FMGNet()(f, mask), f, mask)
        r_pp = eed_residual(initial_guess(f, mask), f, mask)
    unknown = mask == 0
    assert (r_fmg[unknown] == 0).float().mean() > 0.1 and (r_pp[unknown] == 0).float().mean() < 0.01
    losses = {}
    for warm in (0, 1):
        torch.manual_seed(1)
        net = FMGNet()
        task = InpaintingTask(net, squared_warmup=warm)
        torch.manual_seed(2)  # the training mask drawn inside the step
        loss = task.training_step(img, 0)
        torch.manual_seed(2)
        m = random_masks_like(img)
        r = eed_residual(net(img * m, m), img * m, m)
        losses[warm] = (float(loss.detach()), float(r.abs().mean()), float((r ** 2).mean()))
    assert losses[0][0] == pytest.approx(losses[0][1]) and losses[1][0] == pytest.approx(losses[1][2])
    assert losses[1][0] != pytest.approx(losses[1][1])
    with pytest.raises(ValueError, match="squared_warmup"):
        InpaintingTask(FMGNet(), squared_warmup=-1)


def random_masks_like(img: torch.Tensor) -> torch.Tensor:
    from numnet.data.images import random_masks

    return random_masks(img.shape, 0.2)


def test_he_init_keeps_a_deep_stack_spatially_informative():
    """Under PyTorch's default init the 25-layer single-grid net's last hidden features are nearly constant in
    space (the reason it did not learn); He's init keeps them varying; a bad name is refused."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    spread = {}
    for init in ("default", "he"):
        net = build_inpainter("single_grid", init=init)
        h = net.net[:-1](x)
        spread[init] = float(h.std(dim=(2, 3)).mean() / h.abs().mean().clamp_min(1e-12))
        assert float(net.net[-1].weight.abs().sum()) == 0.0  # the last layer starts at zero either way
    assert spread["default"] < 0.2 < spread["he"]
    with pytest.raises(ValueError, match="init"):
        build_inpainter("unet", init="xavier")


def test_unet_with_batch_norm_starts_at_the_initial_guess_and_evaluates_each_image_alone():
    """``norm="batch"``: a normalisation after each of the ten 3 x 3 convolutions; the net still starts at ``u0``,
    and in evaluation mode (as :func:`numnet.models.weights.load_weights` returns it) an image's result does not
    depend on the others in its batch; a bad name is refused."""
    torch.manual_seed(0)
    net = build_inpainter("unet", widths=(4, 6, 8), norm="batch")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 10
    f, c = torch.rand(3, 1, 16, 16) * 255, (torch.rand(3, 1, 16, 16) < 0.3).float()
    assert torch.allclose(net(f * c, c), initial_guess(f * c, c))
    torch.nn.init.normal_(net.out.weight)
    net(f * c, c)  # one training-mode pass moves the running statistics
    net.eval()
    assert torch.allclose(net(f * c, c)[:1], net(f[:1] * c[:1], c[:1]), atol=1e-4)
    with pytest.raises(ValueError, match="norm"):
        build_inpainter("unet", norm="layer")


def test_unet_layers_per_scale():
    """``layers`` 3 x 3 convolutions per scale and side (the paper's 2 by default, whose weights keep their names)."""
    convs = {n: sum(m.kernel_size == (3, 3) for m in build_inpainter("unet", layers=n).modules()
                    if isinstance(m, torch.nn.Conv2d)) for n in (1, 2, 4)}
    assert convs == {1: 5 + 1, 2: 10 + 1, 4: 20 + 1}  # five stacks (two down, the bottom, two up) and the output
    from numnet.models.weights import load_weights

    load_weights(REPO / "results/fig9/runs/unet-s0/model.pt")  # the committed weights still load by name
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="layers"):
            build_inpainter("unet", layers=bad)


def test_unet_passes_iterate_one_unet_from_its_own_result():
    """``passes=2``: the same weights applied again, from the first pass's result and its residual of Eq. (29);
    ``passes=1`` is the paper's U-net (the committed weights load and give what they gave); no new parameters."""
    from numnet.schemes.eed import eed_residual

    torch.manual_seed(0)
    once = build_inpainter("unet", widths=(4, 6, 8))
    twice = build_inpainter("unet", widths=(4, 6, 8), passes=2)
    torch.nn.init.normal_(once.out.weight, std=0.1)
    twice.load_state_dict(once.state_dict())
    assert once.n_params() == twice.n_params()
    f, c = torch.rand(2, 1, 16, 16) * 255, (torch.rand(2, 1, 16, 16) < 0.3).float()
    u1 = once(f * c, c)
    x = torch.cat([u1 / 255.0, eed_residual(u1, f * c, c) / SCALE, c], dim=1)
    expected = u1 + SCALE * once.update(x)
    assert not torch.allclose(u1, expected, atol=1e-3)  # the second pass moves the result
    assert torch.allclose(twice(f * c, c), expected, atol=1e-5)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="passes"):
            build_inpainter("unet", passes=bad)


def test_unet_iter_is_the_papers_unet_applied_twice():
    """``unet_iter`` (beyond the paper): the U-net's parameters, no more, and with the same weights the result of
    the U-net with ``passes=2``; its config composes to that network."""
    from numnet.config import compose_config
    from numnet.inpaint import model_kwargs

    torch.manual_seed(0)
    it = build_inpainter("unet_iter", widths=(4, 6, 8))
    two = build_inpainter("unet", widths=(4, 6, 8), passes=2)
    torch.nn.init.normal_(it.out.weight, std=0.1)
    two.load_state_dict(it.state_dict())
    f, c = torch.rand(2, 1, 16, 16) * 255, (torch.rand(2, 1, 16, 16) < 0.3).float()
    assert torch.equal(it(f * c, c), two(f * c, c))
    cfg = compose_config("inpaint_model=unet_iter", "inpaint_profile=long", "logger=none", name="inpaint")
    net = build_inpainter(cfg.inpaint_model.name, **model_kwargs(cfg))
    assert net.passes == 2 and net.n_params() == build_inpainter("unet").n_params() == 110535


def test_fig9_refuses_an_unknown_model_in_one_line_before_training(tmp_path):
    """``--models`` names networks of ``configs/inpaint_model``; a typo is one line, and no run is written."""
    r = subprocess.run([sys.executable, "-m", "numnet.artefacts.fig9", "--profile", "smoke", "--logger", "none",
                        "--results", str(tmp_path), "--models", "unet,unet_itr"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 2 and "unet_itr" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not list(tmp_path.glob("**/summary.json"))


def test_committed_unet_runs_are_the_runs_of_the_current_config():
    """The config gained ``inpaint_model.norm: none``, ``layers: 2``, ``passes: 1`` and ``data.train_set: mix``; the
    committed runs, recorded without them, still count as complete runs of the current configuration (a resumed sweep skips them rather
    than refusing them); another value of either key is another run."""
    import json

    from omegaconf import OmegaConf

    from numnet.config import compose_config
    from numnet.inpaint import run_identity

    summary = json.loads((REPO / "results/fig9/runs/unet-s0/summary.json").read_text())
    assert "norm" not in summary["config"]["inpaint_model"] and "train_set" not in summary["config"]["data"]
    cfg = compose_config("inpaint_model=unet", "inpaint_profile=quick", "logger=none", name="inpaint")
    assert (cfg.inpaint_model.norm, cfg.inpaint_model.layers, cfg.inpaint_model.passes) == ("none", 2, 1)
    assert run_identity(OmegaConf.to_container(cfg, resolve=True)) == run_identity(summary["config"])
    for key, other in (("inpaint_model.norm", "batch"), ("inpaint_model.layers", 3), ("inpaint_model.passes", 2),
                       ("data.train_set", "photos")):
        changed = cfg.copy()
        OmegaConf.update(changed, key, other)
        assert run_identity(OmegaConf.to_container(changed, resolve=True)) != run_identity(summary["config"])


def test_each_longer_profile_has_its_own_results_folder(tmp_path):
    """The default profile (and smoke) write results/fig9; long and paper write beside it, so a longer run never
    replaces the default profile's committed results, and the report reads every one of them."""
    from numnet.config import choices, fig9_folder

    assert {p: fig9_folder(p) for p in choices("inpaint_profile")} == {
        "long": "fig9-long", "paper": "fig9-paper", "quick": "fig9", "smoke": "fig9"}
    from numnet.report.overview import _fig9

    assert _fig9(tmp_path)[0].startswith("| Fig. 9 |") and "not reproduced yet" in _fig9(tmp_path)[0]
    metrics = REPO / "results" / "fig9" / "metrics.csv"
    for name, profile in (("fig9", "quick"), ("fig9-long", "long")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(metrics.read_text())
        (tmp_path / name / "PROVENANCE.json").write_text(json.dumps({"profile": profile}))
    rows = _fig9(tmp_path)
    assert len(rows) == 6 and sum("| long |" in r and "(fig9-long/fig9.png)" in r for r in rows) == 3


def test_report_row_of_the_iterated_unet_reads_its_own_folder(tmp_path):
    """``fig9-iterated/<folder>`` (beyond the paper) gives one report row for ``unet_iter`` on the paper's case,
    checked against the same 32 dB criterion; the other cases and methods of that folder give none."""
    import pandas as pd

    from numnet.report.overview import _fig9

    folder = tmp_path / "fig9-iterated" / "fig9-long"
    folder.mkdir(parents=True)
    rows = [{"method": m, "image": img, "density": d, "params": 1, "mean_abs_residual": 0.4, "psnr_vs_cg": db,
             "psnr_vs_original": 24.0, "seconds": None}
            for img, d, db in (("astronaut", 0.2, 32.3), ("camera", 0.2, 20.0), ("astronaut", 0.1, 20.0))
            for m in ("unet_iter", "cg")]
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    (folder / "PROVENANCE.json").write_text(json.dumps({"profile": "long"}))
    got = [r for r in _fig9(tmp_path) if "beyond the paper" in r]
    assert len(got) == 1 and "32.30 dB" in got[0] and "| long | yes |" in got[0]
    pd.DataFrame([{**r, "psnr_vs_cg": 31.9} for r in rows]).to_csv(folder / "metrics.csv", index=False)
    assert "| long | **no** |" in [r for r in _fig9(tmp_path) if "beyond the paper" in r][0]


@pytest.mark.integration
def test_cosine_schedule_takes_adam_from_its_step_size_to_zero_over_the_run():
    """``lr_schedule="cosine"``: the step size at step ``k`` of ``n`` is ``lr (1 + cos(pi k / n)) / 2``, read from the
    optimiser inside a Lightning fit; ``constant`` keeps ``lr``; an unknown schedule is refused."""
    import pytorch_lightning as pl

    from numnet.tasks.inpainting import InpaintingTask, cosine_factor

    assert cosine_factor(0, 8) == 1.0 and cosine_factor(4, 8) == pytest.approx(0.5) and cosine_factor(9, 8) == 0.0
    x = torch.linspace(0, 1, 16)
    img = (120 + 100 * torch.sin(5 * x)[:, None] * torch.cos(3 * x)[None, :]).expand(2, 1, 16, 16).contiguous()
    seen = {}
    for schedule in ("constant", "cosine"):
        torch.manual_seed(0)
        task = InpaintingTask(InpaintUNet(widths=(4, 4, 4)), lr=1e-2, lr_schedule=schedule)
        lrs = []

        class Record(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

        trainer = pl.Trainer(accelerator="cpu", max_steps=8, max_epochs=-1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             callbacks=[Record()])
        trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([img] * 8, batch_size=None))
        seen[schedule] = lrs
    assert seen["constant"] == pytest.approx([1e-2] * 8)
    assert seen["cosine"] == pytest.approx([1e-2 * cosine_factor(k, 8) for k in range(8)])
    assert seen["cosine"][4] == pytest.approx(5e-3)
    with pytest.raises(ValueError, match="lr_schedule"):
        InpaintingTask(InpaintUNet(), lr_schedule="linear")
