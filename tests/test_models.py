"""Architectures: shapes, the classical-weights identities, parameter counts, constraints."""
import pytest
import torch

from numnet.models import MODELS, DuFortFrankelNet, FSINet, ResNet, SymResNet, build_model
from numnet.nn.activations import build_flux
from numnet.nn.blocks import diffusion_step
from numnet.nn.normalisation import normalise
from numnet.nn.stencil import apply_kt


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.parametrize("shared", [True, False])
def test_forward_and_evolve(name, channels, shared, gen):
    net = build_model(name, depth=3, channels=channels, shared=shared, activation="charbonnier")
    f = 50 * torch.randn(2, 1, 32, generator=gen)
    out = net(f)
    states = net.evolve(f)
    assert out.shape == f.shape
    assert len(states) == 4 and all(s.shape == (2, channels, 32) for s in states)
    assert torch.allclose(states[-1].mean(dim=1, keepdim=True), out, atol=1e-5)
    assert torch.equal(states[0].mean(dim=1, keepdim=True), f)


def test_parameter_counts():
    # shared, 1 channel: kernel(s) + numerical parameters + lambda
    assert build_model("resnet", depth=7, activation="perona_malik").n_params() == 3 + 3 + 1 + 1 + 1
    assert build_model("symresnet", depth=7, activation="perona_malik").n_params() == 3 + 1 + 1
    assert build_model("symresnet", depth=7, activation="relu").n_params() == 3 + 1
    assert build_model("dufort_frankel", depth=7, activation="perona_malik").n_params() == 3 + 2 + 1
    assert build_model("fsi", depth=7, activation="perona_malik").n_params() == 3 + 1 + 1 + 7
    own = build_model("symresnet", depth=7, channels=16, shared=False, activation="perona_malik")
    assert own.n_params() == 7 * (16 * 16 * 3 + 1 + 1)


def test_initialisation_of_section_7_1_1():
    torch.manual_seed(0)
    for cls in (SymResNet, DuFortFrankelNet, FSINet):
        net = cls(depth=4, shared=False, activation="perona_malik")
        assert float(net.w.abs().max()) <= 0.1
        assert float(net.tau(0)) == pytest.approx(1.0, rel=1e-6)
        assert float(net.fluxes[0].lam) == pytest.approx(15.0, rel=1e-6)
    assert float(DuFortFrankelNet(depth=2).alpha(0)) == pytest.approx(1.0, rel=1e-6)
    assert float(FSINet(depth=2).alpha(1)) == pytest.approx(1.0, rel=1e-6)


def test_symresnet_with_classical_weights_is_the_explicit_scheme(gen):
    """Theorem 1: the network with K = D/2 and tau is exactly the explicit scheme (11)."""
    net = SymResNet(depth=5, activation="perona_malik", lam=4.0).double()
    with torch.no_grad():
        net.w.copy_(torch.tensor([[[[0.0, -1.0, 1.0]]]]))
        net.tau_raw.fill_(0.3)
    w = normalise(torch.tensor([[[0.0, -1.0, 1.0]]], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([[[0.0, -0.5, 0.5]]], dtype=torch.float64))
    flux = build_flux("perona_malik", 4.0).double()
    f = 40 * torch.randn(3, 1, 50, generator=gen, dtype=torch.float64)
    u = f
    for _ in range(5):
        u = diffusion_step(u, w, net.tau(0), flux)
    assert torch.allclose(net(f), u, atol=1e-10)


def test_fsi_with_unit_weights_is_explicit(gen):
    """alpha_l = 1 (the initialisation): FSI is the explicit scheme; with the classical extrapolation weights of
    Eq. (21) it is the FSI scheme (``tests/test_schemes.py``)."""
    net = FSINet(depth=4, activation="charbonnier").double()
    sym = SymResNet(depth=4, activation="charbonnier").double()
    with torch.no_grad():
        sym.w.copy_(net.w)
    f = 30 * torch.randn(2, 1, 40, generator=gen, dtype=torch.float64)
    assert torch.allclose(net(f), sym(f), atol=1e-10)  # alpha_l = 1: FSI = explicit steps


def test_resnet_with_symmetric_weights_is_a_diffusion_block(gen):
    """Eq. (13): W1 = K, W2 = -K^T, zero biases, sigma_1 = tau * Phi."""
    net = ResNet(depth=1, activation="relu").double()
    k = torch.tensor([0.3, -0.9, 0.4], dtype=torch.float64)
    tau = 1.0  # ReLU is positively homogeneous: tau * ReLU(s) = ReLU(tau s); take tau = 1
    with torch.no_grad():
        net.w1.copy_(k.view(1, 1, 1, 3))
        net.w2.copy_(-k.flip(0).view(1, 1, 1, 3))  # -mirror(k): K^T in the interior
    f = 20 * torch.randn(2, 1, 30, generator=gen, dtype=torch.float64)
    ref = diffusion_step(f, k.view(1, 1, 3), tau, torch.relu)
    out = net(f)
    # identical away from the two boundary samples (K^T folds ghost cells there; W2 pads)
    assert torch.allclose(out[..., 1:-1], ref[..., 1:-1], atol=1e-10)


def test_gradients_flow_to_every_parameter(gen):
    for name in MODELS:
        net = build_model(name, depth=3, activation="perona_malik")
        f = 50 * torch.randn(4, 1, 32, generator=gen)
        loss = (net(f) - f).pow(2).mean()
        loss.backward()
        for pname, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (name, pname)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_depth_rejected(bad):
    with pytest.raises(ValueError, match="model.depth"):
        build_model("symresnet", depth=bad)


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="dufort_frankel"):
        build_model("unet1d", depth=2)


def test_wrong_input_shape_rejected():
    with pytest.raises(ValueError, match=r"\(N, 1, n\)"):
        build_model("symresnet", depth=2)(torch.zeros(2, 3, 16))


def test_every_model_has_its_config_and_every_config_its_model():
    """The registry finds each class of numnet.models by its name; a new architecture is its class and its yaml."""
    from numnet.config import choices, compose_config

    assert {compose_config(f"model={c}").model.name for c in choices("model")} == set(MODELS)
    assert set(MODELS) >= {"resnet", "symresnet", "dufort_frankel", "fsi", "implicit"}
