"""The fast paths compute the same numbers as the reference paths (values and gradients)."""
import copy

import numpy as np
import pytest
import torch

from numnet.data.signals import TensorBatches, make_splits
from numnet.models import DuFortFrankelNet, FSINet, ResNet, SymResNet
from numnet.models.denoisers import TwoStepNet
from numnet.nn import coefficients as co
from numnet.nn.coefficients import TwoStep
from numnet.nn.fused import HAVE_NUMBA
from numnet.tasks.denoising import DenoisingTask

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="numba missing")


def _against_eager(fast, length: int, gen, dtype, tol) -> None:
    """``fast`` (on its fast path) against a copy on the eager path: output and every parameter's gradient of an
    MSE loss, after moving the parameters off their initial values so that every one matters."""
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=dtype))
    eager = copy.deepcopy(fast)
    eager.fused = False
    f = 40 * torch.randn(5, 1, length, generator=gen, dtype=dtype)
    target = torch.randn(5, 1, length, generator=gen, dtype=dtype)
    outs = []
    for net in (fast, eager):
        out = net(f)
        ((out - target) ** 2).mean().backward()
        outs.append((out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    (a, ga), (b, gb) = outs
    assert (fast.uses_fused(f) or fast.uses_matmul(f)) and not (eager.uses_fused(f) or eager.uses_matmul(f))
    assert float((a - b).abs().max()) <= tol * float(b.abs().max())
    for name in gb:
        ref = float(gb[name].abs().max()) + 1e-12
        assert float((ga[name] - gb[name]).abs().max()) <= 50 * tol * ref, name


@pytest.mark.parametrize("cls", [SymResNet, DuFortFrankelNet, FSINet], ids=["symresnet", "dufort_frankel", "fsi"])
@pytest.mark.parametrize("act", ["relu", "charbonnier", "perona_malik"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("rule", ["paper", "provable"])
@pytest.mark.parametrize("channels", [1, 3], ids=["fused-c1", "matmul-c3"])
def test_fast_network_equals_eager(cls, act, shared, dtype, tol, rule, channels, gen):
    """One channel: the compiled two-step kernel (numnet.nn.fused); several: the recursion as matrix products
    (numnet.nn.multichannel); both against the eager blocks, values and gradients of every parameter."""
    torch.manual_seed(3)
    fast = cls(depth=6 if channels == 1 else 5, channels=channels, activation=act, shared=shared, lam=8.0,
               fused=True, normalisation=rule).to(dtype)
    _against_eager(fast, 37 if channels == 1 else 19, gen, dtype, tol)
    assert fast.uses_matmul(torch.zeros(1, 1, 8, dtype=dtype)) == (channels > 1)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_multichannel_matmul_path_at_the_shortest_lengths(n, gen):
    """Signals of 2-4 samples: both ghost rows touch the same few samples (the boundary folds of K^T)."""
    fast = DuFortFrankelNet(depth=3, channels=2, activation="perona_malik", shared=False, lam=5.0).double()
    eager = copy.deepcopy(fast)
    eager.fused = False
    f = 20 * torch.randn(3, 1, n, generator=gen, dtype=torch.float64, requires_grad=True)
    grads = []
    for net in (fast, eager):
        out = net(f)
        grads.append((out.detach(), torch.autograd.grad(out.pow(3).sum(), f)[0]))
    assert fast.uses_matmul(f.detach())
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-10)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-10)


def test_fused_path_only_where_it_applies():
    from numnet.models import ImplicitNet, ResNet

    f = torch.zeros(2, 1, 16)
    assert not SymResNet(depth=2, channels=4).uses_fused(f)
    assert not SymResNet(depth=2, fused=False).uses_fused(f)
    assert not ResNet(depth=2).uses_fused(f) and not ImplicitNet(depth=2).uses_fused(f)
    assert SymResNet(depth=2, channels=4).uses_matmul(f) and not SymResNet(depth=2).uses_matmul(f)
    assert not SymResNet(depth=2, channels=4, fused=False).uses_matmul(f)
    assert not ResNet(depth=2, channels=4).uses_matmul(f) and not ImplicitNet(depth=2, channels=4).uses_matmul(f)


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


def test_fused_adam_takes_the_standard_adam_steps():
    """The task's fused Adam moves the parameters as the standard implementation does."""
    params = []
    for fused in (True, False):
        torch.manual_seed(0)
        task = DenoisingTask(SymResNet(depth=3, activation="perona_malik"), lr=1e-2)
        start = torch.cat([p.detach().flatten() for p in task.parameters()])
        opt = task.configure_optimizers() if fused else torch.optim.Adam(task.parameters(), lr=1e-2)
        assert opt.defaults["fused"] is (True if fused else None)
        gen = torch.Generator().manual_seed(1)
        for _ in range(20):
            x = 50 * torch.randn(8, 1, 32, generator=gen)
            loss = ((task.model(x) - x) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        params.append(torch.cat([p.detach().flatten() for p in task.parameters()]))
        assert float((params[-1] - start).abs().min()) > 1e-3  # every parameter moved
    assert torch.allclose(params[0], params[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("act", ["charbonnier", "perona_malik"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_compiled_flux_equals_formula(act, dtype, tol, gen):
    """The compiled contrast flux: same values, input gradients and lambda gradient as the formula."""
    from numnet.nn.activations import build_flux

    compiled, formula = build_flux(act, lam=7.0).to(dtype), build_flux(act, lam=7.0).to(dtype)
    formula.compiled = False
    s = 20 * torch.randn(3, 4, 50, generator=gen, dtype=dtype)
    weight = torch.randn(3, 4, 50, generator=gen, dtype=dtype)
    res = []
    for flux in (compiled, formula):
        x = s.clone().requires_grad_()
        out = flux(x)
        (out * weight).sum().backward()
        res.append((out.detach(), x.grad, flux.log_lam.grad, type(out.grad_fn).__name__))
    (a, ga, la, node_a), (b, gb, lb, node_b) = res
    assert node_a == "_FusedFluxBackward" and node_b != node_a  # the compiled kernel ran, the formula did not
    assert torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max()))
    assert torch.allclose(ga, gb, rtol=10 * tol, atol=10 * tol * float(gb.abs().max()))
    assert abs(float(la) - float(lb)) <= 100 * tol * abs(float(lb)) and float(lb) != 0.0


def _fused_and_eager(fused, gen, dtype):
    """``fused`` moved off its initial values (so that every parameter matters), an eager copy, an input and
    a target; every gradient set to one (the fused step must add to what is there)."""
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=dtype))
    eager = copy.deepcopy(fused)
    eager.fused = False
    f = 40 * torch.randn(6, 1, 29, generator=gen, dtype=dtype)
    target = 40 * torch.randn(6, 1, 29, generator=gen, dtype=dtype)
    for net in (fused, eager):
        for p in net.parameters():
            p.grad = torch.ones_like(p)
    return fused, eager, f, target


def _check_against_autograd(fused, eager, f, target, tol):
    """The fused step's loss and the gradients it adds equal autograd's through the eager path."""
    value = fused.fused_mse_step(f, target)
    reference = torch.nn.functional.mse_loss(eager(f), target)
    reference.backward()
    reference = reference.detach()
    assert abs(value - float(reference)) <= tol * float(reference)
    for (name, p), q in zip(fused.named_parameters(), eager.parameters()):
        scale = float(q.grad.abs().max())
        assert float((p.grad - q.grad).abs().max()) <= 50 * tol * scale, name
        assert float((q.grad - 1).abs().max()) > 0, name  # every parameter receives a gradient


@pytest.mark.parametrize("cls", [SymResNet, DuFortFrankelNet, FSINet], ids=["symresnet", "dufort_frankel", "fsi"])
@pytest.mark.parametrize("act", ["linear", "relu", "charbonnier", "perona_malik"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
@pytest.mark.parametrize("rule", ["paper", "provable"])
def test_fused_mse_step_equals_autograd(cls, act, shared, dtype, tol, rule, gen):
    """The fused training step (forward, MSE and backward in one call, coefficient maps of tau, alpha and
    lambda chained by hand, either normalisation rule) gives autograd's loss and gradients, added to the
    gradients already there."""
    torch.manual_seed(4)
    fused, eager, f, target = _fused_and_eager(cls(depth=5, activation=act, shared=shared, lam=8.0,
                                                   normalisation=rule).to(dtype), gen, dtype)
    _check_against_autograd(fused, eager, f, target, tol)


@pytest.mark.parametrize("act", ["linear", "relu", "charbonnier", "perona_malik"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_fused_resnet_step_equals_autograd(act, shared, dtype, tol, gen):
    """The ResNet's fused training step (Eq. 6 chained, biases and lambda included) gives autograd's loss
    and gradients through the eager blocks, added to the gradients already there."""
    torch.manual_seed(6)
    fused, eager, f, target = _fused_and_eager(ResNet(depth=5, activation=act, shared=shared, lam=8.0).to(dtype),
                                               gen, dtype)
    assert eager.fused_mse_step(f, target) is None
    _check_against_autograd(fused, eager, f, target, tol)
    fused.fused_mse_step(f, target, accumulate=False)  # written over: autograd's gradients alone
    eager.zero_grad()
    torch.nn.functional.mse_loss(eager(f), target).backward()
    for (name, p), q in zip(fused.named_parameters(), eager.parameters()):
        assert float((p.grad - q.grad).abs().max()) <= 50 * tol * float(q.grad.abs().max()), name


@pytest.mark.parametrize("cls", [ResNet, SymResNet, DuFortFrankelNet, FSINet],
                         ids=["resnet", "symresnet", "dufort_frankel", "fsi"])
@pytest.mark.parametrize("act", ["relu", "perona_malik"])
@pytest.mark.parametrize("rule", ["paper", "provable"])
def test_fused_step_adds_the_regulariser_gradient(cls, act, rule, gen):
    """With own weights and ``beta > 0`` the fused step's gradients are autograd's of MSE + Eq. (27)
    (normalised kernels and log lambda tied, the time steps held fixed), and differ from the MSE's alone."""
    if cls is ResNet and rule == "provable":
        pytest.skip("ResNet kernels are not normalised")
    torch.manual_seed(7)
    kw = {} if cls is ResNet else {"normalisation": rule}
    fused = cls(depth=5, activation=act, shared=False, beta=3.0, lam=8.0, **kw).to(torch.float64)
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    eager = copy.deepcopy(fused)
    eager.fused = False
    f = 40 * torch.randn(4, 1, 23, generator=gen, dtype=torch.float64)
    target = 40 * torch.randn(4, 1, 23, generator=gen, dtype=torch.float64)
    value = fused.fused_mse_step(f, target, accumulate=False)
    mse = torch.nn.functional.mse_loss(eager(f), target)
    mse_grads = torch.autograd.grad(mse, list(eager.parameters()), retain_graph=True)
    (mse + eager.regulariser()).backward()
    assert value == pytest.approx(float(mse.detach()), rel=1e-12)
    moved = 0
    for (name, p), q, m in zip(fused.named_parameters(), eager.parameters(), mse_grads):
        assert float((p.grad - q.grad).abs().max()) <= 1e-9 * float(q.grad.abs().max()), (name, float((p.grad - q.grad).abs().max()))
        moved += float((q.grad - m).abs().max()) > 1e-6
    assert moved >= 1  # the regulariser changes the gradient (kernels at least)


def test_fused_step_only_where_it_applies():
    f = torch.zeros(2, 1, 16)
    assert SymResNet(depth=2, channels=4).fused_mse_step(f, f) is None
    assert SymResNet(depth=2, fused=False).fused_mse_step(f, f) is None
    assert ResNet(depth=2, channels=4).fused_mse_step(f, f) is None
    assert ResNet(depth=2, fused=False).fused_mse_step(f, f) is None
    assert not ResNet(depth=2).uses_fused(f)  # the forward pass stays eager; training is fused
    assert SymResNet(depth=2).fused_mse_step(f, torch.zeros(2, 1, 15)) is None
    assert SymResNet(depth=2).fused_mse_step(f, f) == 0.0


@pytest.mark.parametrize("cls", [ResNet, SymResNet, DuFortFrankelNet, FSINet],
                         ids=["resnet", "symresnet", "dufort_frankel", "fsi"])
def test_training_steps_equal_with_and_without_the_fused_step(cls):
    """``train_step`` with the fused step and with autograd: the same parameters after several Adam
    steps, including the smoothness regulariser of Eq. (27), whose gradient the fused step adds itself."""
    from numnet.tasks.denoising import train_step

    params, losses = [], []
    for fused in (True, False):
        torch.manual_seed(0)
        net = cls(depth=4, activation="perona_malik", shared=False, beta=0.5, fused=fused)
        opt = DenoisingTask(net, lr=1e-2).configure_optimizers()
        gen = torch.Generator().manual_seed(1)
        seen = []
        for _ in range(10):
            x = 50 * torch.randn(8, 1, 32, generator=gen)
            seen.append(float(train_step(net, opt, x + 5 * torch.randn(x.shape, generator=gen), x)))
        params.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
        losses.append(seen)
    assert net.regulariser() is not None
    assert torch.allclose(params[0], params[1], atol=1e-5, rtol=1e-4)
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.parametrize("shared", [True, False])
def test_fused_step_overwrites_or_adds_and_follows_replaced_tensors(shared, gen):
    """``accumulate=False`` writes the gradients over what was there; the cached views follow a
    ``zero_grad(set_to_none=True)`` and a copy of the model (its own tensors, not the original's)."""
    torch.manual_seed(5)
    net = FSINet(depth=4, activation="charbonnier", shared=shared)
    f = 30 * torch.randn(4, 1, 20, generator=gen)
    y = 30 * torch.randn(4, 1, 20, generator=gen)
    net.fused_mse_step(f, y)
    first = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.fused_mse_step(f, y)
    assert all(torch.allclose(p.grad, 2 * first[n], rtol=1e-6, atol=0) for n, p in net.named_parameters())
    net.fused_mse_step(f, y, accumulate=False)
    assert all(torch.equal(p.grad, first[n]) for n, p in net.named_parameters())
    net.zero_grad(set_to_none=True)
    net.fused_mse_step(f, y)
    assert all(torch.equal(p.grad, first[n]) for n, p in net.named_parameters())
    twin = copy.deepcopy(net)
    twin.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(1.1)
    twin.fused_mse_step(f, y, accumulate=False)
    assert all(torch.equal(p.grad, first[n]) for n, p in net.named_parameters())  # the original is untouched
    assert any(not torch.allclose(p.grad, first[n]) for n, p in twin.named_parameters())


class _Relaxed(TwoStepNet):
    """An architecture that exists only here: ``u' = (1 - theta) u - theta tau K^T Phi(K u) / (1 + e^-r)
    + theta u_prev`` with ``theta = softplus(r) / (1 + softplus(r))``; its map uses every operation of a tape."""

    name = "relaxed"

    @staticmethod
    def coefficients(t, r, lip):
        tau = (2.0 / lip) * co.sigmoid(t)
        theta = co.softplus(r) / (1.0 + co.softplus(r))
        return TwoStep(1.0 - theta, -(-theta * tau) * co.exp(-r) / (co.exp(-r) + co.exp(-r) * co.exp(-r)), theta,
                       tau, theta)

    def __init__(self, depth: int, **kw) -> None:
        super().__init__(depth, **kw)
        self.tau_raw = torch.nn.Parameter(torch.full((self.n_sets,), 0.2))
        self.alpha_raw = torch.nn.Parameter(torch.full((self.n_sets,), -0.5))


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("act", ["charbonnier", "perona_malik"])
def test_an_architecture_is_one_class(shared, act, gen):
    """A two-step architecture defined by its coefficient map alone (no engine knows it) gets the compiled
    forward pass and training step, both equal to autograd through its eager blocks."""
    torch.manual_seed(8)
    net = _Relaxed(depth=5, activation=act, shared=shared, beta=2.0, lam=8.0).double()
    _against_eager(copy.deepcopy(net), 31, gen, torch.float64, 1e-10)
    fused, eager, f, target = _fused_and_eager(net, gen, torch.float64)
    value = fused.fused_mse_step(f, target, accumulate=False)
    eager.zero_grad()
    mse = torch.nn.functional.mse_loss(eager(f), target)
    reg = eager.regulariser()
    assert (reg is None) == shared  # Eq. (27) with own weights, its tau_k from the map
    (mse if reg is None else mse + reg).backward()
    assert value == pytest.approx(float(mse.detach()), rel=1e-12)
    for (name, p), q in zip(fused.named_parameters(), eager.parameters()):
        assert float((p.grad - q.grad).abs().max()) <= 1e-9 * float(q.grad.abs().max()), name


@pytest.mark.parametrize("cls", [SymResNet, DuFortFrankelNet, FSINet, _Relaxed],
                         ids=["symresnet", "dufort_frankel", "fsi", "relaxed"])
def test_coefficient_tape_equals_the_map_on_tensors(cls, gen):
    """The recorded tape, evaluated and differentiated by the compiled kernels, gives the map's values on
    tensors and autograd's gradients, across softplus' linear branch (raw values above 20) too."""
    from numnet.nn.fused import _tape_backward, _tape_forward

    depth = 7
    t = torch.cat([torch.randn(depth - 2, generator=gen, dtype=torch.float64) * 3, torch.tensor([21.0, 25.0])])
    r = torch.cat([torch.tensor([22.0, -3.0]), torch.randn(depth - 2, generator=gen, dtype=torch.float64) * 3])
    t.requires_grad_(True)
    r.requires_grad_(True)
    tape = co.record(cls.coefficients, 1.0)
    ref = co.evaluate(cls.coefficients, t, r, 1.0)
    idx = torch.arange(depth).numpy()
    reg = np.zeros((depth, len(tape.op)))
    _tape_forward(tape.op, tape.args, tape.val, t.detach().numpy(), r.detach().numpy(), idx, idx, reg)
    for field, k in zip(("a", "b", "c", "tau"), tape.out):
        assert np.allclose(reg[:, k], getattr(ref, field).detach().numpy(), rtol=1e-13, atol=1e-15), field
    seeds = [torch.randn(depth, generator=gen, dtype=torch.float64) for _ in range(3)]
    torch.autograd.backward([v for v in ref[:3] if v.requires_grad], [s for v, s in zip(ref[:3], seeds) if v.requires_grad])
    adj = np.zeros_like(reg)
    for s, k in zip(seeds, tape.out[:3]):
        adj[:, k] += s.numpy()
    g_t, g_r = np.zeros(depth), np.zeros(depth)
    _tape_backward(tape.op, tape.args, reg, adj, idx, idx, g_t, g_r)
    assert np.allclose(g_t, t.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert np.allclose(g_r, np.zeros(depth) if r.grad is None else r.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert tape.uses_r == (r.grad is not None)


def test_a_coefficient_map_refuses_what_a_tape_cannot_hold():
    with pytest.raises(TypeError, match="TwoStep"):
        co.record(lambda t, r, lip: (t, t, t, t), 1.0)
    with pytest.raises(TypeError, match="symbols and numbers"):
        co.record(lambda t, r, lip: TwoStep(t * torch.ones(1), t, t, t), 1.0)
