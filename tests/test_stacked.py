"""Stacked networks (numnet.nn.stacked): one computation for several two-step networks equals each network."""
import pytest
import torch

from numnet.models import DuFortFrankelNet, FSINet, ResNet, SymResNet
from numnet.nn.stacked import StackedTwoStep, stack_key

#: depth, shared weights, beta: shallower networks (identity blocks), shared and own weights, Eq. (27) or not
MEMBERS = [(3, True, 0.0), (5, False, 2.0), (1, False, 0.0), (4, False, 0.5)]


def _members(cls, channels, act, rule, gen):
    """Networks of ``MEMBERS``; ``act`` and ``rule`` a name for all of them or a list, one per network."""
    acts = act if isinstance(act, list) else [act] * len(MEMBERS)
    rules = rule if isinstance(rule, list) else [rule] * len(MEMBERS)
    models = [cls(depth=d, channels=channels, shared=s, beta=b, activation=a, lam=7.0, normalisation=n).double()
              for (d, s, b), a, n in zip(MEMBERS, acts, rules)]
    with torch.no_grad():
        for m in models:
            for p in m.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return models


MIXED = (["relu", "perona_malik", "charbonnier", "perona_malik"], ["paper", "tight", "provable", "paper"])


@pytest.mark.parametrize("cls", [SymResNet, DuFortFrankelNet, FSINet], ids=["symresnet", "dufort_frankel", "fsi"])
@pytest.mark.parametrize("act,rule", [(a, r) for a in ["relu", "charbonnier", "perona_malik"] for r in ["paper", "provable"]]
                         + [MIXED], ids=lambda v: "-".join(v) if isinstance(v, list) else v)
@pytest.mark.parametrize("channels", [1, 3])
def test_stack_equals_its_networks(cls, act, channels, rule, gen):
    """Outputs, per-network loss (MSE plus Eq. 27) and the gradient of every member parameter equal each
    network's own (eager blocks, autograd); also for a stack whose networks differ in activation and
    normalisation rule (each flux and rule acts on its own networks)."""
    models = _members(cls, channels, act, rule, gen)
    stack = StackedTwoStep(models)
    x = 30 * torch.randn(len(models), 6, 1, 17, generator=gen, dtype=torch.float64)
    y = 30 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    out = stack(x)
    for i, m in enumerate(models):
        assert torch.allclose(out[i], m(x[i]), rtol=1e-12, atol=1e-11)
    losses = stack.losses(x, y)
    losses.sum().backward()
    for i, m in enumerate(models):
        reg = m.regulariser()
        loss = torch.nn.functional.mse_loss(m(x[i]), y[i]) + (0 if reg is None else reg)
        assert float(losses[i]) == pytest.approx(float(loss), rel=1e-12)
        loss.backward()
        assert torch.allclose(stack.w.grad[i, :m.n_sets], m.w.grad, rtol=1e-10, atol=1e-12)
        assert torch.allclose(stack.tau_raw.grad[i, :m.n_sets], m.tau_raw.grad, rtol=1e-10, atol=1e-12)
        if hasattr(m, "alpha_raw"):
            assert torch.allclose(stack.alpha_raw.grad[i, :m.alpha_raw.shape[0]], m.alpha_raw.grad, rtol=1e-10,
                                  atol=1e-12)
        if m.fluxes[0].has_contrast:
            ref = torch.stack([fl.log_lam.grad for fl in m.fluxes])
            assert torch.allclose(stack.log_lam.grad[i, :m.n_sets], ref, rtol=1e-10, atol=1e-12)
    # what no network reads receives no gradient (exactly zero, not NaN): weight sets past a network's count
    assert float(stack.w.grad[0, 1:].abs().max()) == 0 and float(stack.tau_raw.grad[2, 1:].abs().max()) == 0
    assert bool(torch.isfinite(stack.w.grad).all())
    assert bool((stack.beta > 0).tolist() == [False, True, False, True])


def test_members_alias_the_stack_until_released(gen):
    models = _members(SymResNet, 1, "perona_malik", "paper", gen)
    stack = StackedTwoStep(models)
    stack.alias(models)
    with torch.no_grad():
        stack.w.add_(1.0)
    assert torch.equal(models[1].w, stack.w[1, :models[1].n_sets])
    StackedTwoStep.release(models[1])
    with torch.no_grad():
        stack.w.add_(1.0)
    assert not torch.equal(models[1].w, stack.w[1, :models[1].n_sets])
    assert torch.equal(models[0].w, stack.w[0, :1])


def test_only_compatible_networks_stack():
    assert stack_key(ResNet(depth=2)) is None
    assert stack_key(SymResNet(depth=2)) == stack_key(SymResNet(depth=5, shared=False, beta=3.0, activation="relu",
                                                                normalisation="tight"))
    assert stack_key(SymResNet(depth=2)) != stack_key(FSINet(depth=2))
    assert stack_key(SymResNet(depth=2)) != stack_key(SymResNet(depth=2, channels=2))
    with pytest.raises(ValueError, match="one class"):
        StackedTwoStep([SymResNet(depth=2), SymResNet(depth=2, channels=2)])
    with pytest.raises(ValueError, match="inputs shaped"):
        StackedTwoStep([SymResNet(depth=2)])(torch.zeros(2, 3, 1, 8))


def test_gpu_benchmark_runs_its_step_eagerly_and_keeps_the_cpu_rows(tmp_path, capsys):
    """``numnet.bench_gpu --device cpu`` times the stacked step the engine runs and writes only ``gpu-`` rows into
    ``bench.csv``, keeping the CPU benchmark's; without CUDA the GPU run refuses in one line."""
    import csv

    from numnet import bench_gpu

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.csv").write_text("case,channels,numnet_epoch_s,naive_epoch_s,speedup,bound_epoch_s\n"
                                                  "symresnet-c1-relu,1,0.1,8.0,80.0,0.04\n"
                                                  "gpu-symresnet-c1-single,1,9.0,9.0,1.0,0.1\n")
    assert bench_gpu.main(["--device", "cpu", "--results", str(tmp_path), "--steps", "1",
                           "--cases", "gpu-symresnet-c1-single,gpu-symresnet-c16-single"]) == 0
    rows = {r["case"]: r for r in csv.DictReader((tmp_path / "bench" / "bench.csv").open())}
    assert set(rows) == {"symresnet-c1-relu", "gpu-symresnet-c1-single", "gpu-symresnet-c16-single"}
    assert float(rows["symresnet-c1-relu"]["numnet_epoch_s"]) == 0.1  # the CPU row as it was
    assert float(rows["gpu-symresnet-c1-single"]["numnet_epoch_s"]) != 9.0  # the GPU row measured anew
    assert "**cpu**" in (tmp_path / "bench" / "gpu" / "table.md").read_text()
    assert bench_gpu.main(["--device", "cpu", "--results", str(tmp_path), "--cases", "nonsense"]) == 2
    if not torch.cuda.is_available():
        assert bench_gpu.main(["--results", str(tmp_path)]) == 2
        assert "no CUDA device" in capsys.readouterr().out


@pytest.mark.cli
def test_gpu_session_rehearsed_on_the_cpu_brings_the_headline_back(tmp_path):
    """The prepared GPU session with the CPU's flags (smoke profile, stacked engine): the headline's runs of two
    seeds, trained as stacks, are copied into the output folder."""
    import json

    from numnet.gpu_session import main

    out, res = tmp_path / "out", tmp_path / "res"
    assert main(["--out", str(out), "--budget-s", "300", "--skip-bench", "--profile", "smoke", "--seeds", "0,1",
                 "--extra", "trainer.stacked=true", "--results", str(res)]) == 0
    runs = sorted((out / "results" / "fig7-paper" / "runs").glob("symresnet-*/summary.json"))
    assert len(runs) == 18
    summaries = [json.loads(p.read_text()) for p in runs]
    assert all(s["status"] == "complete" and s["stack_size"] == 18 for s in summaries)  # rules, activations, seeds
    assert (out / "fig7-paper.log").exists() and (out / "results" / "fig7-paper" / "table.md").exists()
