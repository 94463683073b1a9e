"""Sec. 7.1.4: own weights per block tied by the smoothness regulariser of Eq. (27)."""
import pytest
import torch

from numnet.config import ConfigError, compose_config, validate
from numnet.models import build_model
from numnet.nn.normalisation import normalise
from numnet.tasks.denoising import DenoisingTask
from numnet.train import run_identity


def _eq27_by_hand(thetas, taus, beta):
    """beta * sum_{k>=1} tau_k * ||(theta^k - theta^{k-1}) / tau_k||^2, one flat vector per block."""
    total = 0.0
    for k in range(1, len(thetas)):
        total += taus[k] * float((((thetas[k] - thetas[k - 1]) / taus[k]) ** 2).sum())
    return beta * total


@pytest.mark.parametrize("name", ["symresnet", "dufort_frankel", "fsi", "implicit"])
def test_eq27_uses_applied_kernels_contrast_and_own_time_step(name):
    torch.manual_seed(0)
    m = build_model(name, depth=4, shared=False, beta=3.0, activation="perona_malik")
    with torch.no_grad():
        for i, fl in enumerate(m.fluxes):
            fl.log_lam.add_(0.1 * i)
        m.tau_raw.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    thetas = [torch.cat([normalise(m.w[k]).flatten(), m.fluxes[k].log_lam.reshape(1)]) for k in range(4)]
    taus = [float(m.tau(k)) for k in range(4)]
    assert float(m.regulariser()) == pytest.approx(_eq27_by_hand(thetas, taus, 3.0), rel=1e-5)


def test_resnet_eq27_uses_tau_one_over_depth_and_all_weights():
    torch.manual_seed(1)
    m = build_model("resnet", depth=5, shared=False, beta=5.0, activation="charbonnier")
    with torch.no_grad():
        m.b1.normal_()
        m.b2.normal_()
    thetas = [torch.cat([m.w1[k].flatten(), m.w2[k].flatten(), m.b1[k], m.b2[k], m.fluxes[k].log_lam.reshape(1)])
              for k in range(5)]
    assert float(m.regulariser()) == pytest.approx(_eq27_by_hand(thetas, [0.2] * 5, 5.0), rel=1e-5)


def test_regulariser_vanishes_for_equal_blocks_and_is_absent_when_shared():
    m = build_model("symresnet", depth=3, shared=False, beta=10.0)
    with torch.no_grad():
        m.w.copy_(m.w[:1].expand_as(m.w))
    assert float(m.regulariser()) == 0.0
    assert build_model("symresnet", depth=3, shared=True, beta=10.0).regulariser() is None
    assert build_model("symresnet", depth=3, shared=False, beta=0.0).regulariser() is None
    assert build_model("symresnet", depth=1, shared=False, beta=10.0).regulariser() is None


@pytest.mark.parametrize("name", ["symresnet", "dufort_frankel", "fsi"])
def test_numerical_parameters_are_not_regularised(name):
    m = build_model(name, depth=4, shared=False, beta=10.0)
    m.regulariser().backward()
    assert m.w.grad is not None and m.w.grad.abs().sum() > 0
    for p in ("tau_raw", "alpha_raw"):
        if hasattr(m, p):
            g = getattr(m, p).grad
            assert g is None or float(g.abs().sum()) == 0.0


@pytest.mark.integration
@pytest.mark.parametrize("rule", ["paper", "provable"])
def test_training_with_a_large_beta_keeps_blocks_alike(rule):
    torch.manual_seed(0)
    x = torch.randn(64, 1, 32) * 30
    spreads = {}
    for beta in (0.0, 1e4):
        torch.manual_seed(0)
        m = build_model("symresnet", depth=4, shared=False, beta=beta, fused=False, normalisation=rule)
        task = DenoisingTask(m, lr=1e-2)
        opt = task.configure_optimizers()
        for _ in range(100):  # the loss the task optimises, step by step
            loss = torch.nn.functional.mse_loss(m(x), x * 0.5)
            reg = m.regulariser()
            opt.zero_grad()
            (loss if reg is None else loss + reg).backward()
            opt.step()
        k = torch.stack([normalise(m.w[i], rule) for i in range(4)])
        spreads[beta] = float((k[1:] - k[:-1]).abs().max())
    assert spreads[1e4] < 0.1 * spreads[0.0]


def test_negative_beta_is_a_config_error():
    with pytest.raises(ConfigError, match="model.beta"):
        validate(compose_config("model.shared=false", "model.beta=-1"))


def test_beta_does_not_change_the_identity_of_a_shared_run():
    """Shared-weight runs stored before model.beta existed still count as the same configuration."""
    a = {"model": {"name": "symresnet", "depth": 3, "shared": True, "beta": 10.0}, "seed": 0}
    b = {"model": {"name": "symresnet", "depth": 3, "shared": True}, "seed": 0}
    assert run_identity(a) == run_identity(b)
    own = {"model": {**a["model"], "shared": False}, "seed": 0}
    assert run_identity(own) != run_identity({"model": {**own["model"], "beta": 5.0}, "seed": 0})
