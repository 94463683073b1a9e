"""Theorem 2 (Euclidean stability of symmetric ResNets) and the Du Fort--Frankel bound (Appendix A)."""
import pytest
import torch

from numnet.models import DuFortFrankelNet, SymResNet
from numnet.nn.activations import build_flux
from numnet.nn.blocks import diffusion_step, dufort_frankel_step
from numnet.nn.normalisation import normalise
from numnet.nn.stencil import apply_k, apply_kt, stencil_matrix

ACTS = ["relu", "charbonnier", "perona_malik"]


def _top_singular(w: torch.Tensor, n: int) -> tuple[float, torch.Tensor]:
    m = stencil_matrix(w, n)
    _, s, vh = torch.linalg.svd(m)
    return float(s[0]), vh[0].reshape(1, w.shape[1], n)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("c", [1, 16])
def test_norm_nonincreasing_at_the_bound(act, c, gen):
    """tau = 2/L with ||K||_2 <= 1: ||u^{k+1}|| <= ||u^k|| in every block, random kernels and signals."""
    torch.manual_seed(0)
    for lam in (0.5, 5.0, 50.0):
        net = SymResNet(depth=12, channels=c, shared=False, activation=act, lam=lam, normalisation="provable").double()
        with torch.no_grad():
            net.tau_raw.fill_(30.0)  # sigmoid -> 1: tau at the bound 2/L
        assert float(net.tau(0)) == pytest.approx(2.0, rel=1e-9)
        f = 60.0 * torch.randn(8, 1, 64, generator=gen, dtype=torch.float64)
        norms = [float(u.norm()) for u in net.evolve(f)]
        for a, b in zip(norms, norms[1:]):
            assert b <= a * (1 + 1e-12)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("c", [1, 16])
def test_violation_above_the_bound(act, c, gen):
    """tau = 2.2 / (L ||K||^2): the top singular vector of K grows (|1 - 2.2| = 1.2 > 1)."""
    w = normalise(torch.empty(c, c, 3, dtype=torch.float64).uniform_(-0.1, 0.1, generator=gen), "provable")
    n = 24 if c == 16 else 64
    smax, v = _top_singular(w, n)
    flux = build_flux(act, lam=1e6)  # lambda >> |K u|: Phi is the identity near 0 (ReLU: on the positive part)
    if act == "relu":
        u = v * 1e-3
        # choose the sign pattern where ReLU acts as the identity on K u; then growth follows as for linear flux
        ku = apply_k(u, w)
        u = u if (ku > 0).float().mean() >= 0.5 else -u
    else:
        u = v * 1e-3
    tau = 2.2 / (flux.lipschitz * smax**2)
    grew = False
    x = u.clone()
    for _ in range(30):
        y = diffusion_step(x, w, tau, flux)
        if float(y.norm()) > float(x.norm()) * (1 + 1e-9):
            grew = True
            break
        x = y
    if act == "relu":
        # ReLU halves the operator on a sign pattern; push tau further to show a violation
        for factor in (4.0, 8.0, 16.0):
            y = diffusion_step(u, w, factor / smax**2, flux)
            grew = grew or float(y.norm()) > float(u.norm())
    assert grew


def test_symresnet_tau_cannot_exceed_bound():
    net = SymResNet(depth=3, activation="perona_malik")
    with torch.no_grad():
        net.tau_raw.fill_(1e4)
    assert float(net.tau(0)) <= 2.0 / net.lipschitz


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("tau", [1.0, 5.0, 100.0])
def test_dufort_frankel_network_bounded_over_many_blocks(act, tau, gen):
    """alpha at L/4 (Eq. 56): states stay bounded over 600 blocks, even for tau = 100.

    Appendix A bounds the spectral radius of the frozen multistep matrix (Eq. 30). That matrix is
    not normal, and with ReLU ``A(u)`` switches from block to block, so the norm may grow for a
    while before it saturates (seen: about 23x for ReLU at tau = 100); it must not keep growing.
    The diffusion fluxes never exceed the initial norm here.
    """
    net = DuFortFrankelNet(depth=600, activation=act, lam=5.0, normalisation="provable").double()
    with torch.no_grad():
        net.alpha_raw.fill_(-30.0)  # alpha -> L/4 from above
        net.tau_raw.fill_(float(torch.log(torch.expm1(torch.tensor(tau, dtype=torch.float64)))))
    assert float(net.alpha(0)) >= net.lipschitz / 4
    assert float(net.tau(0)) == pytest.approx(tau)
    f = 50.0 * torch.randn(4, 1, 64, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        norms = torch.tensor([float(u.norm()) for u in net.evolve(f)])
    assert torch.isfinite(norms).all()
    if act != "relu" or tau <= 5.0:
        assert float(norms.max()) <= float(norms[0]) * (1 + 1e-9)
    else:
        assert float(norms.max()) <= 100.0 * float(norms[0])


def test_dufort_frankel_unstable_below_the_bound(gen):
    """alpha well below rho(A)/4 with a large tau: the linear Du Fort--Frankel scheme blows up."""
    w = torch.tensor([[[0.0, -0.5, 0.5]]], dtype=torch.float64)  # ||K||_2 -> 1, rho(K^T K) -> 1
    flux = build_flux("linear")
    u_prev = u = torch.randn(1, 1, 64, generator=gen, dtype=torch.float64)
    for _ in range(300):
        u_prev, u = u, dufort_frankel_step(u, u_prev, w, 50.0, 0.05, flux)
    norm = float(u.norm())
    assert not torch.isfinite(torch.tensor(norm)) or norm > 1e3


def test_dufort_frankel_with_tau_alpha_half_is_explicit(gen):
    """For tau * alpha = 1/2, Eq. (20) reduces to the explicit scheme (11)."""
    w = normalise(torch.randn(1, 1, 3, generator=gen, dtype=torch.float64))
    flux = build_flux("perona_malik", 3.0).double()
    u = torch.randn(2, 1, 32, generator=gen, dtype=torch.float64)
    prev = torch.randn_like(u)
    tau, alpha = 0.8, 0.625
    assert torch.allclose(dufort_frankel_step(u, prev, w, tau, alpha, flux), diffusion_step(u, w, tau, flux))


#: energies whose derivative is the flux (Theorem 1: Psi' = Phi)
POTENTIALS = {
    "charbonnier": lambda s, lam: lam ** 2 * torch.sqrt(1 + (s / lam) ** 2),
    "perona_malik": lambda s, lam: 0.5 * lam ** 2 * torch.log1p((s / lam) ** 2),
}


@pytest.mark.parametrize("act", list(POTENTIALS))
@pytest.mark.parametrize("c", [1, 3])
def test_explicit_step_is_gradient_descent_on_the_energy(act, c, gen):
    """Theorem 1: the diffusion block is one gradient descent step of size tau on ``E(u) = sum Psi(K u)``
    (autograd through the dense matrix of K, independent of apply_k / apply_kt)."""
    lam, tau = 2.0, 0.3
    w = torch.randn(c, c, 3, generator=gen, dtype=torch.float64)
    u = torch.randn(2, c, 20, generator=gen, dtype=torch.float64, requires_grad=True)
    m = stencil_matrix(w, 20)
    energy = POTENTIALS[act]((u.reshape(2, -1) @ m.T), lam).sum()
    (grad,) = torch.autograd.grad(energy, u)
    step = diffusion_step(u.detach(), w, tau, build_flux(act, lam).double())
    assert torch.allclose(step, u.detach() - tau * grad, atol=1e-12)