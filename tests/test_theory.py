"""The measurements behind results/theory: Appendix A's radius, the normalisation, Theorem 2's bound."""
import numpy as np
import pytest
import torch

from numnet.schemes.theory import (
    diffusion_matrix,
    dufort_frankel_radius,
    dufort_frankel_radius_direct,
    first_violating_tau,
    fsi_time_errors,
    paper_rule_norm,
    theorem2_norms,
)


@pytest.fixture(scope="module")
def matrix_a():
    g = torch.Generator().manual_seed(5)
    return diffusion_matrix(30 * torch.randn(24, generator=g, dtype=torch.float64), "perona_malik", 5.0)


def test_radius_formula_matches_dense_eigensolve(matrix_a):
    eigs = np.linalg.eigvalsh(matrix_a)
    for alpha, tau in [(0.05, 0.3), (0.3, 5.0), (1.0, 0.2), (0.1, 80.0)]:
        formula = float(dufort_frankel_radius(eigs, np.array(alpha), np.array(tau)))
        assert formula == pytest.approx(dufort_frankel_radius_direct(matrix_a, alpha, tau), abs=1e-10)


def test_dufort_frankel_stable_exactly_above_rho_over_4(matrix_a):
    """Appendix A: radius <= 1 for alpha >= rho/4 (any tau), > 1 for some tau when alpha < rho/4."""
    eigs = np.linalg.eigvalsh(matrix_a)
    rho = eigs.max()
    taus = np.logspace(-1, 2, 40)
    for alpha in rho / 4 * np.array([1.0001, 1.5, 4.0]):
        assert dufort_frankel_radius(eigs, np.full_like(taus, alpha), taus).max() <= 1 + 1e-9
    for alpha in rho / 4 * np.array([0.5, 0.9, 0.99]):
        assert dufort_frankel_radius(eigs, np.full_like(taus, alpha), taus).max() > 1


def test_paper_rescaling_does_not_bound_the_spectral_norm():
    """The row-sum / sqrt(C) rule leaves ||K||_2 > 1 for random kernels (why numnet uses another bound)."""
    assert max(paper_rule_norm(16, seed=s) for s in range(3)) > 1.0


@pytest.mark.parametrize("act", ["charbonnier", "perona_malik"])
def test_theorem2_bound_is_sharp_for_diffusion_fluxes(act):
    v = first_violating_tau(act, 1, n=48)
    assert v["first_violating_tau"] is not None
    assert v["exact_bound"] <= v["first_violating_tau"] <= 1.02 * v["exact_bound"]
    at = theorem2_norms(act, 1, 1.0, depth=30, n=48)
    above = theorem2_norms(act, 1, 1.1, depth=30, n=48)
    assert (np.diff(at) <= 1e-12).all()
    assert (np.diff(above) > 0).any()


def test_fsi_error_far_below_plain_explicit_for_long_cycles():
    res = fsi_time_errors([4, 8, 12], n=32)
    assert all(r["fsi_error"] < 0.2 * r["explicit_error"] for r in res)  # measured ratios 0.05, 0.09, 0.15
