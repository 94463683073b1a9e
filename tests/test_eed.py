"""EED inpainting (Sec. 7.2.1): the delta-stencil, the residual of Eq. (29), the CG reference."""
import pytest
import torch

from numnet.schemes.eed import (
    EEDParams,
    cell_tensor,
    cg_inpaint,
    eed_apply,
    eed_diagonal,
    eed_residual,
    gaussian_smooth,
    mean_abs_residual,
    restrict_mask,
    stencil_matrix_2d,
)


def _image(shape=(9, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 1, *shape, generator=g, dtype=torch.float64) * 255)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.44, 0.5])
def test_stencil_matrix_is_symmetric_conservative_and_negative_semidefinite(alpha):
    p = EEDParams(alpha=alpha)
    u = _image()
    A = stencil_matrix_2d(cell_tensor(u, p), (9, 8), alpha)
    assert torch.allclose(A, A.T, atol=1e-12)
    assert A.sum(dim=1).abs().max() < 1e-10
    if alpha > 0:  # the delta-stencil bounds make every cell's 4 x 4 block negative semidefinite
        assert torch.linalg.eigvalsh(A).max() < 1e-9
    assert torch.allclose(A @ u.flatten(), eed_apply(u, cell_tensor(u, p), alpha).flatten(), atol=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 0.44, 0.5])
def test_diagonal_is_the_stencil_matrix_diagonal(alpha):
    u = _image((9, 11), seed=3)
    tensor = cell_tensor(u, EEDParams(alpha=alpha))
    A = stencil_matrix_2d(tensor, (9, 11), alpha)
    d = eed_diagonal(tensor, alpha)
    assert d.shape == u.shape
    assert torch.allclose(d.flatten(), A.diagonal(), atol=1e-12)
    assert d.max() < 0


def test_bad_eed_parameters_are_rejected():
    for kw in ({"alpha": 0.6}, {"alpha": -0.1}, {"lam": 0.0}, {"sigma": -1.0}):
        with pytest.raises(ValueError, match="eed"):
            EEDParams(**kw)


def test_stencil_is_exact_on_quadratics():
    """div(D grad u) for constant D and u = quadratic: 2 (a q_xx + 2 b q_xy + c q_yy) / 2 in the interior."""
    X, Y = 9, 8
    i = torch.arange(X, dtype=torch.float64).view(X, 1)
    j = torch.arange(Y, dtype=torch.float64).view(1, Y)
    q = (0.3 * i ** 2 + 0.2 * i * j - 0.1 * j ** 2 + 1.5 * i - 2 * j).view(1, 1, X, Y)
    a, b, c = (torch.full((1, 1, X - 1, Y - 1), v, dtype=torch.float64) for v in (2.0, 0.5, 1.0))
    for alpha in (0.0, 0.3, 0.44):
        out = eed_apply(q, (a, b, c), alpha)[0, 0, 1:-1, 1:-1]
        exact = 2.0 * 0.3 * 2.0 + 2 * 0.5 * 0.2 + 1.0 * 2 * (-0.1)
        assert torch.allclose(out, torch.full_like(out, exact), atol=1e-10)


def test_diffusion_tensor_has_eigenvalue_g_across_and_one_along_the_edge():
    x = torch.arange(12, dtype=torch.float64).view(1, 1, 12, 1).expand(1, 1, 12, 10) * 3.0  # ramp along x
    p = EEDParams(sigma=0.0)
    a, b, c = cell_tensor(x.contiguous(), p)
    g = 1.0 / (1.0 + 9.0 / p.lam ** 2) ** 0.5
    assert torch.allclose(a, torch.full_like(a, g)) and b.abs().max() < 1e-12 and torch.allclose(c, torch.ones_like(c))


def test_gaussian_smoothing_keeps_constants_and_mean():
    u = _image((16, 12))
    s = gaussian_smooth(u, 0.97)
    assert torch.allclose(gaussian_smooth(torch.full_like(u, 7.0), 0.97), torch.full_like(u, 7.0))
    assert abs(float(s.mean() - u.mean())) < 1e-9  # symmetric extension conserves the mean
    assert float(s.std()) < float(u.std())


def test_cg_reference_keeps_known_pixels_and_reaches_a_small_residual():
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 32, dtype=torch.float64)
    img = (100 + 80 * torch.sin(6 * x)[:, None] * torch.cos(4 * x)[None, :]).view(1, 1, 32, 32)
    img[..., 12:, 20:] += 60
    mask = (torch.rand_like(img) < 0.2).double()
    f = img * mask
    u, hist = cg_inpaint(f, mask, max_outer=300)
    known = mask > 0.5
    assert torch.equal(u[known], f[known])
    r0, r = hist[0]["mean_abs_residual"], float(mean_abs_residual(u, f, mask))
    assert r < 1e-2 * r0 and r < 0.05
    assert hist[-1]["seconds"] >= hist[1]["seconds"] >= 0


def test_residual_of_eq29_vanishes_on_known_pixels_only_when_u_equals_f():
    u = _image((8, 8))
    mask = torch.zeros_like(u)
    mask[..., ::3, ::2] = 1
    r = eed_residual(u, u, mask)
    assert r[mask > 0].abs().max() == 0
    r2 = eed_residual(u + 1.0, u, mask)
    assert torch.allclose(r2[mask > 0], torch.full_like(r2[mask > 0], -1.0))


def test_coarse_mask_marks_a_pixel_known_when_any_fine_pixel_is():
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 0, 1] = 1
    m[0, 0, 3, 3] = 1
    assert restrict_mask(m)[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_cg_history_records_each_iterates_psnr_against_the_original():
    """With ``original``, every outer step records its iterate's PSNR (the time to a network's PSNR is read from
    it); the iterates approach the image, and the reading is the PSNR of the step's iterate."""
    import math

    from numnet.evaluate_inpainting import cg_time_to_psnr

    torch.manual_seed(0)
    x = torch.linspace(0, 1, 32, dtype=torch.float64)
    img = (100 + 80 * torch.sin(6 * x)[:, None] * torch.cos(4 * x)[None, :]).view(1, 1, 32, 32)
    mask = (torch.rand_like(img) < 0.3).double()
    u, hist = cg_inpaint(img * mask, mask, max_outer=40, original=img)
    assert all("psnr_vs_original" in h for h in hist)
    assert hist[-1]["psnr_vs_original"] > hist[0]["psnr_vs_original"] + 3
    best = max(h["psnr_vs_original"] for h in hist)
    mse = float(((u - img) ** 2).mean())
    assert 10 * math.log10(255.0 ** 2 / mse) <= best + 1e-9
    target = hist[len(hist) // 2]["psnr_vs_original"]
    t = cg_time_to_psnr(hist, target)
    assert t is not None and t <= hist[len(hist) // 2]["seconds"] and cg_time_to_psnr(hist, best + 1) is None
