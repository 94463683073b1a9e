"""The empirical stability probe (results/stability): exact on linear maps, consistent with Theorem 2."""
import torch

from numnet.data.signals import make_splits
from numnet.models import build_model
from numnet.models.stability import lipschitz_ratios, norm_ratio


class Scale(torch.nn.Module):
    def forward(self, f):
        return 0.5 * f


def test_probe_is_exact_on_a_linear_map():
    f = torch.randn(4, 1, 32)
    lip = lipschitz_ratios(Scale(), f, eps=0.1, n_random=3, ascent_steps=3)
    assert torch.allclose(lip["random"], torch.full((4,), 0.5)) and torch.allclose(lip["worst_found"], torch.full((4,), 0.5))
    assert torch.allclose(norm_ratio(Scale(), f), torch.full((4,), 0.5))


def test_symresnet_respects_theorem_2_and_ascent_never_lowers_the_ratio():
    torch.manual_seed(0)
    f = make_splits(1, 1, 16, 0)["test"].noisy
    for act in ("charbonnier", "perona_malik"):
        m = build_model("symresnet", depth=5, activation=act, lam=5.0, fused=False, normalisation="provable")
        assert float(norm_ratio(m, f).max()) <= 1.0 + 1e-6  # Theorem 2
        lip = lipschitz_ratios(m, f, eps=0.05, n_random=2, ascent_steps=5)
        assert (lip["worst_found"] >= lip["random"] - 1e-6).all()
        if act == "charbonnier":  # monotone flux with L = 1 and tau <= 2/L: each block is nonexpansive
            assert float(lip["worst_found"].max()) <= 1.0 + 1e-4


def test_more_starts_of_the_ascent_never_find_less():
    """The Lipschitz search is a lower bound that grows with the search: extra starts keep the first one's
    result and can only add to it."""
    torch.manual_seed(1)
    f = make_splits(1, 1, 8, 0)["test"].noisy
    m = build_model("symresnet", depth=3, activation="perona_malik", lam=5.0, fused=False)
    one = lipschitz_ratios(m, f, eps=0.05, n_random=2, ascent_steps=4, restarts=1)["worst_found"]
    three = lipschitz_ratios(m, f, eps=0.05, n_random=2, ascent_steps=4, restarts=3)["worst_found"]
    assert (three >= one - 1e-6).all()
