"""φ⁴ lattice physics: action, force, observables, exact free theory, conventions, validation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow import lattice
from trivflow.lattice import free


def dense_free_matrix(L: int, d: int, beta: float) -> np.ndarray:
    """A with S_free = ½ φᵀAφ, built site by site (independent of the roll-based code)."""
    sites = list(itertools.product(range(L), repeat=d))
    index = {s: i for i, s in enumerate(sites)}
    A = 2.0 * np.eye(len(sites))
    for s in sites:
        for mu in range(d):
            for step in (1, -1):
                n = list(s)
                n[mu] = (n[mu] + step) % L
                A[index[s], index[tuple(n)]] -= beta
    return A


@pytest.mark.parametrize("L,d", [(4, 2), (3, 3), (6, 1), (5, 2)])
def test_free_action_matches_matrix_form(L, d):
    beta = 0.9 / (2 * d)
    phi = np.random.default_rng(0).normal(size=(L,) * d)
    A = dense_free_matrix(L, d, beta)
    expected = 0.5 * phi.ravel() @ A @ phi.ravel()
    assert float(lattice.free_action(jnp.asarray(phi), beta)) == pytest.approx(expected, rel=1e-12)


def test_action_by_explicit_site_loop():
    L, beta, lam = 4, 0.6, 0.5
    phi = np.random.default_rng(1).normal(size=(L, L))
    s = 0.0
    for x, y in itertools.product(range(L), repeat=2):
        s += -beta * phi[x, y] * (phi[(x + 1) % L, y] + phi[x, (y + 1) % L])
        s += phi[x, y] ** 2 + lam * (phi[x, y] ** 2 - 1) ** 2
    assert float(lattice.phi4_action(jnp.asarray(phi), beta, lam)) == pytest.approx(s, rel=1e-12)


def test_z2_and_translation_invariance():
    phi = jax.random.normal(jax.random.key(0), (6, 6))
    s = lattice.phi4_action(phi, 0.6, 0.5)
    assert lattice.phi4_action(-phi, 0.6, 0.5) == pytest.approx(float(s), rel=1e-13)
    for shift in [(1, 0), (0, 3), (2, 5)]:
        rolled = jnp.roll(phi, shift, axis=(0, 1))
        assert float(lattice.phi4_action(rolled, 0.6, 0.5)) == pytest.approx(float(s), rel=1e-13)


@pytest.mark.parametrize("shape", [(8, 8), (4, 4, 4), (7,)])
def test_force_equals_autodiff_and_finite_differences(shape):
    beta, lam = 0.3, 0.7
    phi = jax.random.normal(jax.random.key(2), shape)
    force = lattice.phi4_force(phi, beta, lam)
    np.testing.assert_allclose(force, jax.grad(lattice.phi4_action)(phi, beta, lam), rtol=1e-12, atol=1e-12)
    h = 1e-6
    flat = np.asarray(phi).ravel()
    for i in [0, 3, flat.size - 1]:
        e = np.zeros_like(flat)
        e[i] = h
        up = lattice.phi4_action(jnp.asarray((flat + e).reshape(shape)), beta, lam)
        dn = lattice.phi4_action(jnp.asarray((flat - e).reshape(shape)), beta, lam)
        assert float(force.ravel()[i]) == pytest.approx(float(up - dn) / (2 * h), abs=1e-7)


@pytest.mark.parametrize("L,d,beta", [(4, 2, 0.2), (6, 2, 0.45), (3, 3, 0.3), (8, 1, 0.9)])
def test_free_exact_results_match_dense_linear_algebra(L, d, beta):
    A = dense_free_matrix(L, d, beta)
    cov = np.linalg.inv(A)
    V = L**d
    assert free.phi2(L, d, beta) == pytest.approx(np.mean(np.diag(cov)), rel=1e-12)
    assert free.chi(L, d, beta) == pytest.approx(cov.sum() / V, rel=1e-12)
    sign, logdet = np.linalg.slogdet(A)
    assert sign > 0
    assert free.log_z(L, d, beta) == pytest.approx(0.5 * V * np.log(2 * np.pi) - 0.5 * logdet, rel=1e-12)
    np.testing.assert_allclose(free.two_point(L, d, beta).ravel(), cov[0], rtol=1e-10, atol=1e-14)


def test_free_correlator_and_exact_mass():
    L, d, beta = 16, 2, 0.45
    c_exact = free.zero_momentum_correlator(L, d, beta)
    # brute force from the dense covariance: ⟨s(0) s(t)⟩ with s the slice average over x_1
    cov = free.two_point(L, d, beta)  # ⟨φ_0 φ_x⟩
    brute = [cov[t, :].sum() / L for t in range(L // 2 + 1)]
    np.testing.assert_allclose(c_exact, brute, rtol=1e-12)
    m_eff = lattice.effective_mass(c_exact)
    np.testing.assert_allclose(m_eff, free.mass(d, beta), rtol=1e-10)


def test_measured_correlator_matches_site_loops():
    L = 6
    phi = np.random.default_rng(3).normal(size=(L, L))
    c = np.asarray(lattice.zero_momentum_correlator(jnp.asarray(phi)))
    s = [phi.mean(axis=1), phi.mean(axis=0)]
    raw = np.array([np.mean([s[mu][x] * s[mu][(x + t) % L] for mu in range(2) for x in range(L)]) for t in range(L)])
    sym = 0.5 * (raw + raw[(-np.arange(L)) % L])
    np.testing.assert_allclose(c, sym[: L // 2 + 1], rtol=1e-12)
    obs = lattice.phi4_observables(jnp.asarray(phi))
    assert float(obs["M"]) == pytest.approx(phi.mean())
    assert float(obs["G0"]) == pytest.approx((phi**2).mean())
    assert float(obs["C"][0]) == pytest.approx(np.mean([np.mean(si**2) for si in s]))


def test_convention_conversions_preserve_the_action():
    beta, lam, d = 0.6, 0.5, 2
    m2, lam_a = lattice.conventions.hopping_to_albergo(beta, lam, d)
    assert lattice.conventions.albergo_to_hopping(m2, lam_a, d) == pytest.approx((beta, lam))
    assert lattice.conventions.kappa_to_beta(lattice.conventions.beta_to_kappa(beta)) == beta
    phi = np.random.default_rng(4).normal(size=(6, 6))
    phi_a = lattice.conventions.phi_hopping_to_albergo(phi, beta)
    hop = sum(np.roll(phi_a, -1, axis=mu) * phi_a for mu in range(d)).sum()
    s_a = -2 * hop + (m2 + 2 * d) * (phi_a**2).sum() + lam_a * (phi_a**4).sum()
    s = float(lattice.phi4_action(jnp.asarray(phi), beta, lam))
    assert s == pytest.approx(s_a + lam * phi.size, rel=1e-12)  # constant λV drops


def test_presets_follow_the_line_of_constant_physics():
    theory = lattice.preset("L16")
    assert (theory.L, theory.d, theory.beta, theory.lam) == (16, 2, 0.634, 0.5)
    with pytest.raises(ValueError, match="unknown lattice preset 'L17'"):
        lattice.preset("L17")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        # the library's names; the application's validate() says lattice.L etc. (tests/test_run.py)
        (dict(L=1), "^L must be an integer >= 2, got L=1"),
        (dict(L=8.0), "^L must be an integer"),
        (dict(L=8, d=0), "^d must be an integer >= 1, got d=0"),
        (dict(L=8, lam=-0.1), "^lam must be >= 0.*lam=-0.1"),
        (dict(L=8, lam=0.0, beta=0.5), r"^beta=0.5 with lam=0 is unstable.*beta < 1/d = 0.5"),
        (dict(L=8, beta=float("nan")), "^beta must be a finite number"),
    ],
)
def test_bad_theory_input_is_rejected_with_key_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lattice.Phi4Theory(**kwargs)


def test_checkerboard_mask():
    mask = lattice.checkerboard_mask((4, 4))
    assert mask.sum() == 8 and bool(mask[0, 0]) and not bool(mask[0, 1])
    with pytest.raises(ValueError, match="even extents, got L=5"):
        lattice.checkerboard_mask((5, 5))
