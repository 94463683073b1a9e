"""Flux activations: formulas, Lipschitz constants, positivity of lambda (Sec. 3.4, Fig. 2)."""
import pytest
import torch

from numnet.nn.activations import FLUXES, build_flux


@pytest.mark.parametrize("name", ["relu", "charbonnier", "perona_malik", "linear"])
def test_lipschitz_constant_is_sup_of_derivative(name):
    flux = build_flux(name, lam=3.0)
    s = torch.linspace(-60, 60, 200001, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(flux(s).sum(), s)
    assert float(d.abs().max()) == pytest.approx(flux.lipschitz, rel=1e-6)


def test_formulas():
    s = torch.tensor([0.0, 1.0, 2.0, -2.0], dtype=torch.float64)
    lam = 2.0
    ch = build_flux("charbonnier", lam)
    pm = build_flux("perona_malik", lam)
    assert torch.allclose(ch(s).double(), s / torch.sqrt(1 + s**2 / lam**2), atol=1e-6)
    assert torch.allclose(pm(s).double(), s / (1 + s**2 / lam**2), atol=1e-6)


def test_perona_malik_is_nonmonotone_charbonnier_monotone():
    s = torch.linspace(0, 100, 1001)
    pm = build_flux("perona_malik", 10.0)(s)
    ch = build_flux("charbonnier", 10.0)(s)
    assert (ch[1:] >= ch[:-1]).all()
    assert pm.argmax() == 100  # maximum at s = lambda, then decreasing
    assert (pm[101:] < pm[100]).all()


def test_odd_diffusion_fluxes_and_nonnegative_diffusivity():
    s = torch.linspace(-50, 50, 101)
    for name in ("charbonnier", "perona_malik"):
        f = build_flux(name, 5.0)
        assert torch.allclose(f(-s), -f(s))
        assert (f.diffusivity(s) >= 0).all()
    assert (build_flux("relu").diffusivity(s) >= 0).all()


def test_lambda_kept_positive_and_trainable():
    f = build_flux("perona_malik", 15.0)
    assert float(f.lam.detach()) == pytest.approx(15.0)
    with torch.no_grad():
        f.log_lam -= 100.0
    assert float(f.lam.detach()) > 0
    assert any(p.requires_grad for p in f.parameters())


@pytest.mark.parametrize("lam", [0.0, -1.0])
def test_nonpositive_lambda_rejected(lam):
    with pytest.raises(ValueError, match="lam"):
        build_flux("charbonnier", lam)


def test_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="perona_malik"):
        build_flux("tanh")
    assert set(FLUXES) >= {"relu", "charbonnier", "perona_malik"}
