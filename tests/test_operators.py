"""K and K^T: exact adjointness, agreement with the reference path, the norm bound (Sec. 3.3)."""
import pytest
import torch

from numnet.nn.normalisation import (
    NORMALISATIONS,
    dense_k,
    localised_bound,
    fourier_bound,
    paper_bound,
    provable_bound,
    symbol_peak,
    norm_bound,
    normalise,
)
from numnet.nn.stencil import apply_k, apply_k_reference, apply_kt, apply_kt_reference, stencil_matrix

SHAPES = [(1, 7), (1, 256), (3, 11), (16, 64)]


@pytest.mark.parametrize("c,n", SHAPES)
def test_adjointness(c, n, gen):
    w = torch.randn(c, c, 3, generator=gen, dtype=torch.float64)
    u = torch.randn(5, c, n, generator=gen, dtype=torch.float64)
    v = torch.randn(5, c, n, generator=gen, dtype=torch.float64)
    lhs = (apply_k(u, w) * v).sum()
    rhs = (u * apply_kt(v, w)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("c,n", SHAPES)
def test_fast_path_equals_reference(c, n, gen):
    w = torch.randn(c, c, 3, generator=gen, dtype=torch.float64)
    u = torch.randn(4, c, n, generator=gen, dtype=torch.float64)
    assert torch.allclose(apply_k(u, w), apply_k_reference(u, w), atol=1e-12)
    assert torch.allclose(apply_kt(u, w), apply_kt_reference(u, w), atol=1e-12)


def test_kt_is_matrix_transpose(gen):
    w = torch.randn(2, 2, 3, generator=gen, dtype=torch.float64)
    n = 9
    m = stencil_matrix(w, n)
    eye = torch.eye(2 * n, dtype=torch.float64).reshape(2 * n, 2, n)
    mt = apply_kt(eye, w).reshape(2 * n, -1).T
    assert torch.allclose(mt, m.T, atol=1e-12)


def test_reflecting_boundary_keeps_constants_for_differences():
    # Neumann boundaries: a difference kernel annihilates constant signals everywhere, boundary included
    w = torch.tensor([[[0.0, -1.0, 1.0]]], dtype=torch.float64)
    u = torch.full((1, 1, 10), 3.0, dtype=torch.float64)
    assert apply_k(u, w).abs().max() == 0
    # and K^T of anything sums to zero (mass conservation of -K^T Phi(K u))
    v = torch.randn(1, 1, 10, dtype=torch.float64)
    assert abs(float(apply_kt(v, w).sum())) < 1e-12


def _spectral_norm_power(w: torch.Tensor, n: int, iters: int = 500) -> float:
    u = torch.randn(1, w.shape[1], n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for _ in range(iters):
        u = apply_kt(apply_k(u, w), w)
        u = u / u.norm()
    return float(apply_k(u, w).norm())


@pytest.mark.parametrize("c", [1, 2, 4, 16])
def test_normalised_norm_at_most_one_power_iteration(c, gen):
    for trial in range(5):
        w = torch.empty(c, c, 3, dtype=torch.float64).uniform_(-0.1, 0.1, generator=gen)
        wn = normalise(w, "provable")
        for n in (3, 16, 128):
            est = _spectral_norm_power(wn, n)
            assert est <= 1.0 + 1e-9
            exact = float(torch.linalg.matrix_norm(stencil_matrix(wn, n), 2)) if c * n <= 512 else est
            assert exact <= 1.0 + 1e-9
            assert abs(est - exact) < 1e-3 * max(exact, 1e-6) or c * n > 512


@pytest.mark.parametrize("c", [2, 4])
def test_fourier_bound_holds_for_boundary_heavy_kernels_at_every_length(c):
    """Kernels that lean on the reflecting boundary (``(1, 0, 0) I`` has ``||K||_2 = sqrt(2)``) and
    lengths 3 ... 33: the normalised operator stays at most 1 (dense matrix norm, exact)."""
    eye = torch.eye(c, dtype=torch.float64)
    g = torch.Generator().manual_seed(c)
    for base in (torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, -1.0, 1.0]), torch.tensor([0.5, 0.5, 0.0])):
        w = eye[..., None] * base.double() + 0.05 * torch.randn(c, c, 3, dtype=torch.float64, generator=g)
        assert float(fourier_bound(w)) >= float(torch.linalg.matrix_norm(stencil_matrix(w, 17), 2))
        for n in (3, 4, 7, 33):
            assert float(torch.linalg.matrix_norm(stencil_matrix(normalise(w, "provable"), n), 2)) <= 1.0 + 1e-9


@pytest.mark.parametrize("c", [1, 2, 3, 16])
def test_provable_bound_holds_at_every_length_for_random_and_skewed_kernels(c, gen):
    """The bound against the exact (dense) norm for n = 2 ... 16, kernels of mixed scales per tap."""
    worst = 0.0
    for _ in range(6):
        w = torch.randn(c, c, 3, generator=gen, dtype=torch.float64) * 3 * torch.rand(1, 1, 3, generator=gen,
                                                                                        dtype=torch.float64)
        bound = float(provable_bound(w))
        for n in (2, 3, 4, 5, 8, 16):
            exact = float(torch.linalg.matrix_norm(stencil_matrix(w, n), 2))
            assert bound >= exact * (1 - 1e-12)
            worst = max(worst, exact / bound)
    assert worst > 0.5  # the bound is not vacuous either


def _sup_norm(w: torch.Tensor, lengths=tuple(range(2, 41)) + (64, 128)) -> float:
    """The largest exact (dense) ``||K_n||_2`` over the lengths: the short ones can have the largest."""
    return max(float(torch.linalg.matrix_norm(stencil_matrix(w, n), 2)) for n in lengths)


def test_dense_k_is_the_stencil_matrix_in_sample_major_order(gen):
    w = torch.randn(3, 3, 3, generator=gen, dtype=torch.float64)
    for n in (2, 3, 6):
        channel_major = stencil_matrix(w, n).reshape(3, n, 3, n).permute(1, 0, 3, 2).reshape(3 * n, 3 * n)
        assert torch.equal(dense_k(w, n), channel_major)


@pytest.mark.parametrize("c", [2, 3, 16])
def test_tight_bound_holds_at_every_length_and_is_within_ten_percent(c, gen):
    """The localised bound (``normalisation=tight``) against the exact norm at every length 2 ... 40, 64, 128
    (16 channels: 2 ... 14, 24, 40):
    never below, within 10 % of the largest (random, skewed per tap, and boundary-heavy kernels), and tighter
    than the provable rule's bound; normalised by it, ``||K_n||_2 <= 1``."""
    eye = torch.eye(c, dtype=torch.float64)
    kernels = [torch.randn(c, c, 3, generator=gen, dtype=torch.float64) for _ in range(2)]
    kernels.append(torch.randn(c, c, 3, generator=gen, dtype=torch.float64)
                   * 3 * torch.rand(1, 1, 3, generator=gen, dtype=torch.float64))
    kernels += [eye[..., None] * torch.tensor(b, dtype=torch.float64) + 0.05 * torch.randn(c, c, 3, generator=gen, dtype=torch.float64)
                for b in ([1.0, 0.0, 0.0], [0.0, -1.0, 1.0])]
    lengths = tuple(range(2, 41)) + (64, 128) if c < 16 else tuple(range(2, 15)) + (24, 40)  # dense: (C n)^2
    for w in kernels:
        sup = _sup_norm(w, lengths)
        tight = float(provable_bound(w, tight=True))
        assert sup * (1 - 1e-12) <= tight <= 1.10 * sup
        assert tight <= float(provable_bound(w)) * (1 + 1e-12)
        assert float(localised_bound(w)) >= sup * (1 - 1e-12)
        assert _sup_norm(normalise(w, "tight"), (2, 3, 5, 8, 13, 33)) <= 1 + 1e-9


def test_tight_bound_is_tighter_than_the_provable_one_on_random_16_channel_kernels(gen):
    """Where the provable rule's second bound adds the boundary's excess to ``sigma*^2`` it gives away 10-20 %;
    the localised bound at most 10 % (about 2-8 % measured)."""
    worst_tight, worst_loose = 0.0, 0.0
    for _ in range(3):
        w = torch.randn(16, 16, 3, generator=gen, dtype=torch.float64)
        sup = _sup_norm(w, tuple(range(2, 17)) + (64,))
        worst_tight = max(worst_tight, float(provable_bound(w, tight=True)) / sup)
        worst_loose = max(worst_loose, float(provable_bound(w)) / sup)
    assert worst_tight <= 1.10 < worst_loose


def test_tight_bound_is_differentiated_through_the_top_singular_vectors(gen):
    """The pieces of the bound (eigenvalues without autograd, ``||M x||`` at the top eigenvector) against autograd
    through dense matrix norms of the same matrices: values and gradients."""
    from numnet.nn import normalisation

    w = torch.randn(4, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    for n, rows, cols in ((5, 5, 5), (9, 8, 7)):
        shifts = normalisation._shifts(n, rows, cols, w.dtype, w.device)
        dense = normalisation.dense_k(w, n)[..., : rows * 4, : cols * 4]
        ours = normalisation._top_singular(shifts, w)
        ref = torch.linalg.matrix_norm(dense, 2)
        assert float(ours) == pytest.approx(float(ref), rel=1e-12)
        g_ours, g_ref = torch.autograd.grad(ours, w)[0], torch.autograd.grad(ref, w)[0]
        assert float((g_ours - g_ref).abs().max()) <= 1e-6 * float(g_ref.abs().max())


def test_short_norms_are_certified_or_computed_exactly(gen):
    """``max(bound, ||K_n||_2 for n <= 6)`` by Cholesky certificates: equal to the exact norms, values and gradients,
    whether every set is certified (a bound above the short norms), none is (a bound far below them) or some are."""
    from numnet.nn import normalisation

    w = torch.randn(6, 5, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    exact = normalisation._exact_short(w)
    scale = torch.tensor([1.5, 0.2, 1.001, 0.999, 3.0, 0.9999], dtype=torch.float64)
    for factor in (scale, torch.full_like(scale, 2.0), torch.full_like(scale, 0.1)):
        bound = (exact.detach() * factor).requires_grad_(True)
        ours = normalisation._with_short_norms(w, bound)
        ref = torch.maximum(bound, exact)
        assert torch.allclose(ours, ref, rtol=1e-12, atol=0)
        weights = torch.arange(1.0, 7.0, dtype=torch.float64)
        grads = [[torch.zeros_like(x) if g is None else g for g, x in zip(
            torch.autograd.grad((v * weights).sum(), (w, bound), retain_graph=True, allow_unused=True), (w, bound))]
            for v in (ours, ref)]
        for a, b in zip(*grads):
            assert float((a - b).abs().max()) <= 1e-6 * float(b.abs().max()) + 1e-12


def test_symbol_peak_gradient_is_that_of_the_largest_singular_value(gen):
    """The peak is differentiated at the top eigenvector of its frequency: the gradient of autograd through the
    singular values of every frequency's symbol (the earlier implementation)."""
    import math

    w = torch.randn(3, 6, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    omega = torch.linspace(0, math.pi, 17, dtype=torch.float64)
    taps = torch.stack([torch.exp(-1j * omega), torch.ones_like(omega) + 0j, torch.exp(1j * omega)], -1)
    ref = torch.linalg.svdvals(torch.einsum("...abt,wt->...wab", w.to(torch.complex128), taps))[..., 0].amax(-1)
    ref = ref / math.cos(math.pi / 32)
    ours = symbol_peak(w)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=0)
    g_ours, g_ref = (torch.autograd.grad((v * torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)).sum(), w)[0]
                     for v in (ours, ref))
    assert float((g_ours - g_ref).abs().max()) <= 1e-8 * float(g_ref.abs().max())


def test_tight_and_provable_rules_coincide_for_one_channel(gen):
    w = torch.randn(5, 1, 1, 3, generator=gen, dtype=torch.float64)
    assert torch.equal(normalise(w, "tight"), normalise(w, "provable"))


def test_symbol_peak_is_an_upper_bound_and_close_to_the_true_peak(gen):
    """Szegő's factor: the grid of 17 frequencies bounds the peak over 4097 frequencies from above."""
    import math

    for c in (1, 4, 16):
        w = torch.randn(c, c, 3, generator=gen, dtype=torch.float64)
        omega = torch.linspace(0, math.pi, 4097, dtype=torch.float64)
        taps = torch.stack([torch.exp(-1j * omega), torch.ones_like(omega) + 0j, torch.exp(1j * omega)], -1)
        fine = float(torch.linalg.matrix_norm(torch.einsum("abt,wt->wab", w.to(torch.complex128), taps), 2).max())
        peak = float(symbol_peak(w))
        assert fine <= peak <= fine / math.cos(math.pi / 32) + 1e-12


def test_multichannel_provable_bound_is_within_a_quarter_of_the_norm(gen):
    """Random 16-channel kernels: the provable bound about 1.15x the norm, the Schur bound about 3.5x."""
    for _ in range(3):
        w = torch.empty(16, 16, 3, dtype=torch.float64).uniform_(-0.1, 0.1, generator=gen)
        true = _spectral_norm_power(w, 256)
        assert true <= float(fourier_bound(w)) <= 1.25 * true
        assert float(norm_bound(w)) > 3 * true
        assert _spectral_norm_power(normalise(w, "provable"), 256) > 1 / 1.25


def test_paper_rule_rescales_every_block_by_its_row_sum_and_sqrt_c(gen):
    w = torch.randn(4, 4, 3, generator=gen, dtype=torch.float64)
    wn = normalise(w, "paper")
    assert torch.allclose(wn.abs().sum(-1), torch.full((4, 4), 0.5, dtype=torch.float64))
    assert torch.allclose(wn / w, 1 / paper_bound(w)[..., None].expand_as(w))


def test_paper_rule_does_not_bound_the_norm():
    """The paper's claim ||K||_2 <= 1 fails: at the reflecting boundary for C = 1, and for C = 16
    random kernels (block Gershgorin bounds eigenvalues, not singular values)."""
    w = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    assert float(torch.linalg.matrix_norm(stencil_matrix(normalise(w, "paper"), 12), 2)) > 1.4
    assert float(torch.linalg.matrix_norm(stencil_matrix(normalise(w, "provable"), 12), 2)) <= 1.0 + 1e-12
    w16 = torch.empty(16, 16, 3, dtype=torch.float64).uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(0))
    assert _spectral_norm_power(normalise(w16, "paper"), 256) > 1.1


def test_rules_coincide_for_one_channel_where_no_boundary_column_sum_exceeds_the_row_sum(gen):
    for _ in range(50):
        wm, w0, wp = (float(x) for x in torch.randn(3, generator=gen))
        w = torch.tensor([[[wm, w0, wp]]], dtype=torch.float64)
        inner = abs(wm) + abs(w0) + abs(wp)
        exact_row_sum = abs(wm + w0) + abs(wm) <= inner and abs(w0 + wp) + abs(wp) <= inner
        same = torch.allclose(normalise(w, "paper"), normalise(w, "provable"), rtol=1e-12, atol=0)
        assert same == exact_row_sum
    diff = torch.tensor([[[0.0, -1.0, 1.0]]], dtype=torch.float64)  # what diffusion learns: identical
    assert torch.equal(normalise(diff, "paper"), normalise(diff, "provable"))


def test_unknown_normalisation_is_refused():
    with pytest.raises(ValueError, match="model.normalisation"):
        normalise(torch.ones(1, 1, 3), "gershgorin")
    assert NORMALISATIONS[0] == "paper"  # the default reproduces the paper


def test_bound_is_tight_for_difference_kernels():
    # for the forward difference the bound equals the Gershgorin row sum 2, and ||K||_2 -> 2
    w = torch.tensor([[[0.0, -1.0, 1.0]]], dtype=torch.float64)
    assert float(norm_bound(w)) == pytest.approx(2.0)
    assert _spectral_norm_power(w, 256) == pytest.approx(2.0, abs=1e-3)


def test_row_sum_alone_fails_at_reflecting_boundary():
    # why the module does not use the paper's row sum: u_0 is duplicated by the ghost cell
    w = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    true_norm = float(torch.linalg.matrix_norm(stencil_matrix(w, 12), 2))
    assert true_norm > 1.4
    assert float(norm_bound(w)) >= true_norm - 1e-12


def test_gradcheck_operators():
    w = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, 2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: apply_kt(apply_k(a, b), b), (u, w))
    w1 = torch.randn(1, 1, 3, dtype=torch.float64, requires_grad=True)
    u1 = torch.randn(2, 1, 6, dtype=torch.float64, requires_grad=True)
    for rule in NORMALISATIONS:
        assert torch.autograd.gradcheck(lambda a, b: apply_kt(apply_k(a, normalise(b, rule)), normalise(b, rule)), (u1, w1))
        assert torch.autograd.gradcheck(lambda a, b: apply_kt(apply_k(a, normalise(b, rule)), normalise(b, rule)), (u, w))
