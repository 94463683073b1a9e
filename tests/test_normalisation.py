"""The kernel normalisation rule as a model option (Sec. 3.3): config, run names, records, stability."""
import pytest
import torch

from numnet.config import ConfigError, compose_config, validate
from numnet.evaluate import WEIGHTS_FORMAT, load_model
from numnet.models import build_model
from numnet.summary import normalisation_of
from numnet.train import run_identity, run_name


def test_default_is_the_papers_rule_and_provable_is_one_override_away():
    assert compose_config().model.normalisation == "paper"
    cfg = compose_config("model.normalisation=provable")
    validate(cfg)
    assert run_name(cfg).endswith("-own-provable-s0") or run_name(cfg).endswith("-shared-provable-s0")
    assert "provable" not in run_name(compose_config())
    tight = compose_config("model.normalisation=tight", "model.channels=4")
    validate(tight)
    assert "-tight-s0" in run_name(tight) and run_identity(dict(tight))["model"]["normalisation"] == "tight"


def test_unknown_rule_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="model.normalisation must be one of"):
        validate(compose_config("model.normalisation=gershgorin"))


def test_runs_recorded_before_the_option_count_as_the_provable_rule():
    old = {"model": {"name": "symresnet", "depth": 3, "shared": True}, "seed": 0}
    assert run_identity(old) == run_identity({"model": {**old["model"], "normalisation": "provable"}, "seed": 0})
    assert run_identity(old) != run_identity({"model": {**old["model"], "normalisation": "paper"}, "seed": 0})
    assert normalisation_of({"model": "symresnet", "config": old}) == "provable"
    assert normalisation_of({"model": "symresnet", "normalisation": "paper"}) == "paper"
    assert normalisation_of({"model": "resnet", "config": {"model": {"name": "resnet"}}}) is None


def test_weights_stored_before_the_option_load_with_the_provable_rule(tmp_path):
    net = build_model("symresnet", depth=2, channels=2, normalisation="provable")
    kwargs = {"depth": 2, "channels": 2}  # as written before model.normalisation existed
    torch.save({"format": WEIGHTS_FORMAT, "model": "symresnet", "kwargs": kwargs, "state_dict": net.state_dict()},
               tmp_path / "model.pt")
    loaded, _ = load_model(tmp_path)
    assert loaded.normalisation == "provable"
    f = torch.randn(3, 1, 16)
    assert torch.equal(loaded(f), net.eval()(f))


def test_condition_ratio_flags_what_the_papers_rule_lets_through():
    """The kernel (1, 0, 0) has row sum 1 but ||K||_2 = sqrt(2): with tau at 2/L the paper's rule puts
    tau L ||K||_2^2 at 4 > 2 (ratio 2), the provable rule keeps it at most 2 (ratio at most 1)."""
    ratios = {}
    for rule in ("paper", "provable"):
        net = build_model("symresnet", depth=1, activation="charbonnier", normalisation=rule).double()
        with torch.no_grad():
            net.w.copy_(torch.tensor([[[[1.0, 0.0, 0.0]]]]))
            net.tau_raw.fill_(40.0)  # tau -> 2/L
        ratios[rule] = net.condition_ratios(net.kernel_norms())[0]
    assert ratios["paper"] == pytest.approx(2.0, rel=1e-3)
    assert ratios["provable"] <= 1.0 + 1e-9


@pytest.mark.parametrize("rule", ["provable", "tight"])
@pytest.mark.parametrize("name", ["symresnet", "dufort_frankel", "fsi", "implicit"])
def test_guaranteed_rules_keep_every_stability_condition(name, rule, gen):
    net = build_model(name, depth=4, channels=4, shared=False, activation="perona_malik", normalisation=rule)
    with torch.no_grad():
        net.w.copy_(torch.randn(net.w.shape, generator=gen))
        net.tau_raw.fill_(40.0)  # the largest step the reparametrisation allows
        if hasattr(net, "alpha_raw") and name == "dufort_frankel":
            net.alpha_raw.fill_(-40.0)  # alpha -> L/4, the smallest allowed
    ratios = net.condition_ratios(net.kernel_norms())
    assert len(ratios) == 4 and max(ratios) <= 1.0 + 1e-6
