"""The fast paths compute the same numbers as the reference paths (values and gradients)."""
import copy

import pytest
import torch

from numnet.data.signals import TensorBatches, make_splits
from numnet.models import DuFortFrankelNet, FSINet, SymResNet
from numnet.nn.fused import HAVE_NUMBA
from numnet.tasks.denoising import DenoisingTask

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="numba missing")


@pytest.mark.parametrize("cls", [SymResNet, DuFortFrankelNet, FSINet], ids=["symresnet", "dufort_frankel", "fsi"])
@pytest.mark.parametrize("act", ["relu", "charbonnier", "perona_malik"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_fused_network_equals_eager(cls, act, shared, dtype, tol, gen):
    torch.manual_seed(3)
    fused = cls(depth=6, activation=act, shared=shared, lam=8.0, fused=True).to(dtype)
    with torch.no_grad():  # move off the initial values so every parameter matters
        for p in fused.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=dtype))
    eager = copy.deepcopy(fused)
    eager.fused = False
    f = 40 * torch.randn(5, 1, 37, generator=gen, dtype=dtype)
    target = torch.randn(5, 1, 37, generator=gen, dtype=dtype)
    outs = []
    for net in (fused, eager):
        out = net(f)
        ((out - target) ** 2).mean().backward()
        outs.append((out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    (a, ga), (b, gb) = outs
    assert fused.uses_fused(f) and not eager.uses_fused(f)
    scale = float(b.abs().max())
    assert float((a - b).abs().max()) <= tol * scale
    for name in gb:
        ref = float(gb[name].abs().max()) + 1e-12
        assert float((ga[name] - gb[name]).abs().max()) <= 50 * tol * ref, name


def test_fused_path_only_where_it_applies():
    from numnet.models import ImplicitNet, ResNet

    f = torch.zeros(2, 1, 16)
    assert not SymResNet(depth=2, channels=4).uses_fused(f)
    assert not SymResNet(depth=2, fused=False).uses_fused(f)
    assert not ResNet(depth=2).uses_fused(f) and not ImplicitNet(depth=2).uses_fused(f)


def test_chunked_steps_equal_one_step_per_batch():
    """trainer.steps_per_batch: the same minibatches and Adam steps whether chunked or not."""
    data = make_splits(96, 8, 8, seed=0)["train"]
    params = []
    for chunk in (1, 4):
        torch.manual_seed(0)
        task = DenoisingTask(SymResNet(depth=3, activation="perona_malik"), lr=1e-2, batch_size=8)
        opt = task.configure_optimizers()
        task.optimizers = lambda use_pl_optimizer=False, opt=opt: opt
        task.manual_backward = lambda loss: loss.backward()
        for batch in TensorBatches(data, 8 * chunk, shuffle=True, seed=5):
            task.training_step(batch, 0)
        params.append(torch.cat([p.detach().flatten() for p in task.parameters()]))
    assert torch.allclose(params[0], params[1], atol=1e-6, rtol=1e-6)
