"""Classical schemes and their network twins (Sec. 3-6): each twin with classical weights is the scheme."""
import math

import pytest
import torch

from numnet.models import DuFortFrankelNet, FSINet, ImplicitNet, SymResNet
from numnet.models.fas_unet import Downsample, FASUNet, Upsample
from numnet.nn.activations import build_flux
from numnet.schemes.acceleration import DuFortFrankelScheme, FSIScheme, ImplicitScheme, fsi_stopping_time, fsi_weights
from numnet.schemes.explicit import ExplicitDiffusion
from numnet.schemes.fas import DiffusionOperator, fas_cycle, hierarchy, smooth

ACTS = ["relu", "charbonnier", "perona_malik"]
DIFF = torch.tensor([[[[0.0, -1.0, 1.0]]]], dtype=torch.float64)  # normalised by the nets to D/2


def _signal(gen, n=48):
    return 40 * torch.randn(3, 1, n, generator=gen, dtype=torch.float64)


def _load_classical(net, lam_classical):
    """Kernel D (normalised to K = D/2 inside the net) and lambda/2: then K^T Phi_lam(K u) = D^T Phi_2lam(D u) / 4."""
    with torch.no_grad():
        net.w.copy_(DIFF.expand_as(net.w))
        for f in net.fluxes:
            if f.has_contrast:
                f.log_lam.fill_(math.log(lam_classical / 2))
    return net


def _exact_lam(scheme, lam):
    """Set the scheme's contrast in double precision (its buffer was rounded to float32 at build)."""
    if scheme.flux.has_contrast:
        with torch.no_grad():
            scheme.flux.log_lam.fill_(math.log(lam))
    return scheme


def _set_sigmoid(param, value, bound):
    with torch.no_grad():
        param.fill_(math.log(value / bound / (1 - value / bound)))


@pytest.mark.parametrize("act", ACTS)
def test_symresnet_twin_is_explicit_scheme(act, gen):
    tau_cl, lam, steps = 0.2, 6.0, 7
    net = _load_classical(SymResNet(depth=steps, activation=act).double(), lam)
    _set_sigmoid(net.tau_raw, 4 * tau_cl, 2.0)
    scheme = _exact_lam(ExplicitDiffusion(act, lam=lam, tau=tau_cl, steps=steps).double(), lam)
    f = _signal(gen)
    assert torch.allclose(net(f), scheme(f), atol=1e-10, rtol=1e-12)


@pytest.mark.parametrize("act", ACTS)
def test_dufort_frankel_twin_is_the_scheme(act, gen):
    tau_cl, alpha_cl, lam, steps = 2.0, 1.6, 5.0, 9
    net = _load_classical(DuFortFrankelNet(depth=steps, activation=act).double(), lam)
    with torch.no_grad():  # net(tau, alpha) = classical(tau / 4 ... ) -> tau_net = 4 tau_cl, alpha_net = alpha_cl / 4
        net.tau_raw.fill_(math.log(math.expm1(4 * tau_cl)))
        net.alpha_raw.fill_(math.log(math.expm1(alpha_cl / 4 - 0.25)))
    scheme = _exact_lam(DuFortFrankelScheme(act, lam=lam, tau=tau_cl, alpha=alpha_cl, steps=steps).double(), lam)
    f = _signal(gen)
    assert torch.allclose(net(f), scheme(f), atol=1e-9, rtol=1e-11)


@pytest.mark.parametrize("act", ACTS)
def test_fsi_twin_with_classical_weights_is_fsi(act, gen):
    cycle, tau_cl, lam = 6, 0.24, 4.0
    net = _load_classical(FSINet(depth=cycle, activation=act).double(), lam)
    _set_sigmoid(net.tau_raw, 4 * tau_cl, 2.0)
    with torch.no_grad():
        for l, a in enumerate(fsi_weights(cycle)):
            net.alpha_raw[l] = math.log(a / 2 / (1 - a / 2))
    scheme = _exact_lam(FSIScheme(act, lam=lam, tau=tau_cl, cycle=cycle, cycles=1).double(), lam)
    f = _signal(gen)
    assert torch.allclose(net(f), scheme(f), atol=1e-9, rtol=1e-11)


@pytest.mark.parametrize("act", ACTS)
def test_implicit_twin_is_fixed_point_scheme(act, gen):
    tau_cl, lam, steps, inner = 0.2, 5.0, 3, 4
    net = _load_classical(ImplicitNet(depth=steps, inner_steps=inner, activation=act).double(), lam)
    _set_sigmoid(net.tau_raw, 4 * tau_cl, 1.0)
    scheme = _exact_lam(ImplicitScheme(act, lam=lam, tau=tau_cl, steps=steps, iterations=inner).double(), lam)
    f = _signal(gen)
    assert torch.allclose(net(f), scheme(f), atol=1e-10, rtol=1e-12)


@pytest.mark.parametrize("act", ACTS)
def test_fixed_point_converges_to_the_implicit_step_when_contracting(act, gen):
    f = _signal(gen)
    s = ImplicitScheme(act, lam=5.0, tau=0.2, steps=1, iterations=300).double()
    assert s.contraction < 1
    u = s(f)
    op = DiffusionOperator(s.flux, s.tau, 1.0)
    assert float((op(u) - f).abs().max()) < 1e-9  # u + tau K^T Phi(K u) = f: Eq. (22)
    # and it fails to converge where the map is far from a contraction
    bad = ImplicitScheme("linear", tau=2.0, steps=1, iterations=60).double()
    assert bad.contraction > 1
    ub = bad(f)
    assert not torch.isfinite(ub).all() or float((DiffusionOperator(bad.flux, 2.0)(ub) - f).abs().max()) > 1.0


def test_fsi_weights_and_super_step():
    assert fsi_weights(1) == [pytest.approx(2 / 3)]
    assert fsi_weights(3) == [pytest.approx(2 / 3), pytest.approx(6 / 5), pytest.approx(10 / 7)]
    assert fsi_stopping_time(10, 0.5) == pytest.approx(10 * 11 * 0.5 / 3)


def _fsi_errors(n: int, cycle: int) -> tuple[float, float]:
    """One linear FSI cycle (grid h = 1/n, tau at the limit h^2/2) against a fine explicit reference at
    the super time step L(L+1)tau/3; and, for contrast, ``cycle`` plain explicit steps (time L tau)."""
    h = 1.0 / n
    x = (torch.arange(n, dtype=torch.float64) + 0.5) * h
    f = (torch.cos(math.pi * x) + 0.3 * torch.cos(2 * math.pi * x)).view(1, 1, n)
    tau = 0.5 * h**2
    t = fsi_stopping_time(cycle, tau)
    fsi = FSIScheme("linear", tau=tau, cycle=cycle, h=h).double()(f)
    fine_steps = max(1, round(t / (0.02 * h**2)))
    ref = ExplicitDiffusion("linear", tau=t / fine_steps, steps=fine_steps, kernel=DIFF[0] / h).double()(f)
    plain = ExplicitDiffusion("linear", tau=tau, steps=cycle, kernel=DIFF[0] / h).double()(f)
    return float((fsi - ref).abs().max()), float((plain - ref).abs().max())


def test_fsi_reaches_its_super_time_step_with_error_shrinking_in_h():
    errs = [_fsi_errors(n, cycle=6) for n in (16, 32, 64)]
    fsi = [e[0] for e in errs]
    assert fsi[2] < fsi[1] < fsi[0] < 0.06  # measured: 0.050, 0.0048, 0.00034
    assert fsi[2] < 1e-3
    ratios = [e_fsi / e_plain for e_fsi, e_plain in errs]
    # L explicit steps only reach time L tau, far from L(L+1) tau / 3
    assert ratios[2] < ratios[1] < ratios[0] < 0.5


@pytest.mark.parametrize("levels", [2, 3, 4])
@pytest.mark.parametrize("prolongation", ["nearest", "linear"])
@pytest.mark.parametrize("coarse_init", ["restricted", "zero"])
def test_fas_unet_equals_fas(levels, prolongation, coarse_init, gen):
    op = DiffusionOperator(build_flux("perona_malik", 5.0, trainable=False), tau=5.0)
    ops = hierarchy(op, levels)
    b = _signal(gen, 64)
    x0 = torch.randn(b.shape, generator=gen, dtype=torch.float64)
    classical = fas_cycle(ops, x0, torch.zeros_like(b), b, 2, 3, 20, prolongation, coarse_init)
    unet = FASUNet(ops, 2, 3, 20, prolongation, coarse_init)(x0, b)
    assert torch.allclose(unet, classical, atol=1e-12, rtol=1e-12)


def test_fas_unet_needs_the_fas_channel_matrices(gen):
    """Drop the -P y^H term of the prolongation matrix: the network is no longer FAS."""
    op = DiffusionOperator(build_flux("charbonnier", 5.0, trainable=False), tau=5.0)
    ops = hierarchy(op, 2)
    b = _signal(gen, 64)
    x0 = torch.zeros_like(b)
    net = FASUNet(ops, 2, 2, 20)
    with torch.no_grad():
        net.up.mix[0, 1] = 0.0
    classical = fas_cycle(ops, x0, torch.zeros_like(b), b, 2, 2, 20)
    assert not torch.allclose(net(x0, b), classical, atol=1e-6)
    assert isinstance(net.down, Downsample) and isinstance(net.up, Upsample)


@pytest.mark.parametrize("act,lam", [("linear", 1.0), ("charbonnier", 5.0), ("perona_malik", 10.0)])
def test_fas_beats_the_plain_smoother(act, lam, gen):
    op = DiffusionOperator(build_flux(act, lam, trainable=False), tau=20.0)
    b = _signal(gen, 256)
    zero = torch.zeros_like(b)
    x = zero.clone()
    for _ in range(6):
        x = fas_cycle(hierarchy(op, 4), x, zero, b, 2, 2, 50)
    fas_res = float((b - op(x)).norm() / b.norm())
    jac = smooth(op, zero.clone(), b, 6 * 8)  # more fine-grid sweeps than 6 V-cycles cost
    jac_res = float((b - op(jac)).norm() / b.norm())
    if act == "linear":
        assert fas_res < 1e-4 and fas_res < 1e-3 * jac_res
    else:  # lagged-diffusivity Jacobi on a strongly nonlinear problem: slower, still far ahead
        assert fas_res < 0.5 * jac_res


def test_classical_scheme_rejects_unstable_step():
    with pytest.raises(ValueError, match="tau"):
        FSIScheme("perona_malik", tau=1.0)
    with pytest.raises(ValueError, match="tau"):
        ExplicitDiffusion("linear", tau=0.6)


def test_gradcheck_block_functions(gen):
    from numnet.nn.blocks import diffusion_step, dufort_frankel_step, fsi_step, implicit_step

    flux = build_flux("perona_malik", 2.0).double()
    u = torch.randn(2, 1, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    prev = torch.randn(2, 1, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 1, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k, t: diffusion_step(a, k, t, flux), (u, w, tau))
    assert torch.autograd.gradcheck(lambda a, p, k, t, al: dufort_frankel_step(a, p, k, t, al, flux), (u, prev, w, tau, alpha))
    assert torch.autograd.gradcheck(lambda a, p, k, t, al: fsi_step(a, p, k, t, al, flux), (u, prev, w, tau, alpha))
    assert torch.autograd.gradcheck(lambda a, k, t: implicit_step(a, k, t, flux, 3), (u, w, tau))
