"""Gauge-equivariant flows for 2D U(1) (Kanwar et al., PRL 125 (2020) 121601, arXiv:2003.06413;
docs/theory.md#u1-flows), as Flax NNX modules and :class:`trivflow.flows.Flow` objects.

One coupling layer, with ``mu`` ∈ {0, 1} and ``offset`` ∈ {0, 1, 2, 3} (ν = 1 − μ; the lattice
conventions of :mod:`trivflow.gauge.u1`; L must be a multiple of 4):

* updated links: θ_μ(y) with y_ν ≡ offset (mod 4);
* active plaquettes: θ_P(x) with x_ν ≡ offset; each contains exactly one updated link, with sign
  σ = +1 for μ = 0 (θ₀(x) enters P(x) with +) and σ = −1 for μ = 1 (θ₁(x) enters P(x) with −);
* frozen plaquettes: x_ν ≡ offset + 1, offset + 2 (mod 4); they contain no updated link and are
  the conditioner's only input, as (cos θ_P, sin θ_P) (zero elsewhere);
* the plaquettes at x_ν ≡ offset − 1 also contain an updated link (passive): they change, but
  neither condition nor are transformed.

The active plaquette is moved by an invertible map h of the circle, θ_P → h(θ_P), by changing its
updated link: θ_μ(y) → θ_μ(y) + σ (h([θ_P]) − [θ_P]) ([·] ∈ (−π, π]). h is a mixture of
non-compact projections (NCP),

    h(x) = Σ_k ρ_k · 2 arctan(α_k tan(x/2) + β_k),   x ∈ (−π, π],
    h'(x) = Σ_k ρ_k α_k (1 + t²) / (1 + (α_k t + β_k)²),   t = tan(x/2),

with ρ_k a softmax and α_k > 0, β_k bounded (below), all from the conditioner at the plaquette's
site.

Bounded circle maps (``ncp_alpha_min``, ``ncp_alpha_max``, ``ncp_shift_max``; the flow=u1_equivariant
defaults 1/2, 2, 1/2). From the conditioner's raw outputs a_k, b_k,

    α_k = exp(log α_min + (log α_max − log α_min) σ(a_k)) ∈ [α_min, α_max],   β_k = β_max tanh(b_k),

(σ the logistic function; ``ncp_alpha_max=None``: α_k = α_min + softplus(a_k), ``ncp_shift_max=None``:
β_k = b_k, unbounded — the parametrisation of the flows trained before the bound, which is what a
checkpoint without these keys is loaded with). One NCP is a Möbius map of the circle:
with t = tan(x/2) and M = [[α, β], [0, 1]], h'(x) = det M |v|² / |M v|², v = (t, 1), so h' lies
between α/σ_max² and α/σ_min² (σ the singular values of M, σ_max σ_min = α), i.e.

    1/λ(α, β) ≤ h'_k(x) ≤ λ(α, β),   λ + 1/λ = (1 + α² + β²)/α.

A mixture (convex combination) stays within the components' extremes, whatever ρ, so every layer's
circle map obeys

    |log h'(x)| ≤ log λ*,   λ* = λ(α*, β_max),   α* ∈ {α_min, α_max} maximising (1 + α² + β_max²)/α

(:func:`ncp_log_slope_bound`; λ* = (3 + √5)/2 ≈ 2.62, log λ* ≈ 0.962 for the defaults: the map
of one layer stretches or compresses by at most 2.62; with α ∈ [1/4, 4], β_max = 1, λ* = 8.13 trained
flows were still too stiff for FHMC at step size 0.1, L = 12, β = 4.5). Without the bound training drove
α_k to 10⁻² and |β_k|/α_k to 10²: needles in h' (h'_max ≈ 100) that made S̃ = S∘g − log|det J| too
stiff for leapfrog (experiments/u1_topology/README.md).
h(±π) = ±π, so h(x) − x is a continuous 2π-periodic function and the update is a C¹ map of ℝ
(FHMC moves the angles on ℝ). The Jacobian is triangular in the updated links, so
log|det| = Σ_active log h'([θ_P]). Because the update depends on θ only through plaquettes, which
are gauge invariant, g commutes with every gauge transformation and log|det| is gauge invariant:
the flow's density q(θ) is gauge invariant. Circular convolutions make g commute with
translations by 4 lattice units; its parameters do not depend on L.

A flow cycles over the 8 (μ, offset) masks: layer i uses μ = i mod 2, offset = (i // 2) mod 4, so
8 layers update every link once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from ..errors import must_be
from .u1 import plaquette_angles, wrap_angle

#: the hidden activations a conditioner may use
GAUGE_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "silu": jax.nn.silu, "leaky_relu": jax.nn.leaky_relu}


def check_gauge_shape(shape) -> None:
    """A configuration of link angles ``(2, L, L)`` with L a multiple of 4 (the stripe masks)."""
    shape = tuple(shape)
    if len(shape) != 3 or shape[0] != 2 or shape[1] != shape[2]:
        raise ValueError(f"a U(1) gauge flow acts on ONE configuration of shape (2, L, L), got shape={shape!r} "
                         "(vmap over a batch)")
    if shape[1] % 4:
        raise must_be("L", shape[1], "a multiple of 4 (the gauge flow's plaquette masks have period 4)")


def stripe(L: int, nu: int, residues: Sequence[int]) -> jnp.ndarray:
    """Boolean ``(L, L)`` mask of the sites with x_ν mod 4 in ``residues``."""
    x = jnp.arange(L) % 4
    row = jnp.isin(x, jnp.asarray(residues))
    return jnp.broadcast_to(row[:, None] if nu == 0 else row[None, :], (L, L))


def layer_masks(L: int, mu: int, offset: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(active, frozen) plaquette masks of the coupling layer (μ, offset), each ``(L, L)``:
    active x_ν ≡ offset, frozen x_ν ≡ offset + 1, offset + 2 (mod 4), ν = 1 − μ. The updated
    links θ_μ(y) sit on the active mask (y = x)."""
    nu = 1 - mu
    return stripe(L, nu, [offset % 4]), stripe(L, nu, [(offset + 1) % 4, (offset + 2) % 4])


def ncp_log_slope_bound(alpha_min: float, alpha_max: float, shift_max: float) -> float:
    """log λ*: the bound |log h'(x)| ≤ log λ* of every mixture of NCPs with α_k ∈ [α_min, α_max]
    and |β_k| ≤ β_max (module docstring): λ* + 1/λ* = max_{α ∈ {α_min, α_max}} (1 + α² + β_max²)/α."""
    c = max((1.0 + a * a + shift_max * shift_max) / a for a in (alpha_min, alpha_max))
    return math.log(0.5 * (c + math.sqrt(max(c * c - 4.0, 0.0))))


def ncp_parameters(raw_alpha, raw_beta, alpha_min: float, alpha_max: float | None, shift_max: float | None):
    """(α, β) of the NCPs from the conditioner's raw outputs (module docstring):
    α = exp(log α_min + (log α_max − log α_min) σ(a)), or α_min + softplus(a) when α_max is None;
    β = β_max tanh(b), or b when β_max is None."""
    if alpha_max is None:
        alpha = jax.nn.softplus(raw_alpha) + alpha_min
    else:
        lo, hi = math.log(alpha_min), math.log(alpha_max)
        alpha = jnp.exp(lo + (hi - lo) * jax.nn.sigmoid(raw_alpha))
    beta = raw_beta if shift_max is None else shift_max * jnp.tanh(raw_beta)
    return alpha, beta


def ncp_mixture(x, alpha, beta, logits):
    """(h(x), log h'(x)) of the mixture of non-compact projections (module docstring) at each
    site; ``x`` ∈ (−π, π], shape ``S``; ``alpha`` > 0, ``beta``, ``logits`` shape ``(*S, K)``."""
    rho = jax.nn.softmax(logits, axis=-1)
    t = jnp.tan(0.5 * x)[..., None]
    u = alpha * t + beta
    h = jnp.sum(rho * 2.0 * jnp.arctan(u), axis=-1)
    dh = jnp.sum(rho * alpha * (1.0 + t * t) / (1.0 + u * u), axis=-1)
    return h, jnp.log(dh)


def circular_conv(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray, lines: tuple[int, int] | None = None
                  ) -> jnp.ndarray:
    """Periodic 2D convolution of ``x`` ``(L, L, c_in)`` with ``kernel`` ``(k, k, c_in, c_out)`` (k odd).

    ``lines = (ν, offset)``: only the outputs at x_ν ≡ offset (mod 4), shape ``(L/4, L, c_out)``
    (ν = 0) or ``(L, L/4, c_out)`` (ν = 1), as one convolution with stride 4 along axis ν (a
    coupling layer needs its circle maps on the active plaquettes only, a quarter of the sites)."""
    k = kernel.shape[0]
    p = k // 2
    padded = jnp.pad(x, ((p, p), (p, p), (0, 0)), mode="wrap")
    strides = (1, 1)
    if lines is not None:  # padded index x_ν + p: the window of output x_ν starts at padded index x_ν
        nu, offset = lines
        padded = padded[offset:] if nu == 0 else padded[:, offset:]
        strides = (4, 1) if nu == 0 else (1, 4)
    out = jax.lax.conv_general_dilated(padded[None], kernel, strides, "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out[0] + bias


def active_lines(x: jnp.ndarray, nu: int, offset: int) -> jnp.ndarray:
    """``x`` ``(L, L, ...)`` at the sites x_ν ≡ offset (mod 4): ``(L/4, L, ...)`` or ``(L, L/4, ...)``."""
    return x[offset::4] if nu == 0 else x[:, offset::4]


class PlaquetteCoupling(nnx.Module):
    """One gauge-equivariant coupling layer (module docstring) with a small CNN conditioner:
    (cos θ_P, sin θ_P) of the frozen plaquettes → hidden circular convolutions → 3K channels
    (α, β by :func:`ncp_parameters`, mixture logits) per site."""

    def __init__(self, mu: int, offset: int, *, kernel_size: int = 3, hidden_channels: Sequence[int] = (8, 8),
                 components: int = 4, activation: str = "tanh", ncp_alpha_min: float = 0.5,
                 ncp_alpha_max: float | None = 2.0, ncp_shift_max: float | None = 0.5, rngs: nnx.Rngs, dtype=None):
        dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
        self.mu, self.offset, self.components, self.activation = int(mu), int(offset), int(components), activation
        self.ncp_bounds = (float(ncp_alpha_min), None if ncp_alpha_max is None else float(ncp_alpha_max),
                           None if ncp_shift_max is None else float(ncp_shift_max))
        channels = [2, *hidden_channels, 3 * components]
        kernels, biases = [], []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            bound = 1.0 / math.sqrt(kernel_size * kernel_size * c_in)
            kernels.append(nnx.Param(jax.random.uniform(rngs.params(), (kernel_size, kernel_size, c_in, c_out),
                                                        dtype, -bound, bound)))
            biases.append(nnx.Param(jnp.zeros((c_out,), dtype)))
        self.kernels, self.biases = nnx.List(kernels), nnx.List(biases)

    def conditioner(self, plaq: jnp.ndarray, frozen: jnp.ndarray):
        """(α, β, logits) on the active plaquettes (x_ν ≡ offset mod 4), each ``(L/4, L, K)``
        (ν = 0) or ``(L, L/4, K)`` (ν = 1), from the frozen plaquettes only. The hidden layers
        run on the whole lattice, the output layer only where its values are used."""
        x = jnp.stack([jnp.cos(plaq), jnp.sin(plaq)], axis=-1) * frozen[..., None]
        act = GAUGE_ACTIVATIONS[self.activation]
        n = len(self.kernels)
        for i in range(n):
            lines = (1 - self.mu, self.offset) if i == n - 1 else None
            x = circular_conv(x, self.kernels[i][...], self.biases[i][...], lines)
            if i < n - 1:
                x = act(x)
        K = self.components
        alpha, beta = ncp_parameters(x[..., :K], x[..., K:2 * K], *self.ncp_bounds)
        return alpha, beta, x[..., 2 * K:]

    def forward_and_log_det(self, theta: jnp.ndarray):
        """(θ', log|det ∂θ'/∂θ|) for ONE configuration ``(2, L, L)``; the circle maps and their
        log-slopes are evaluated on the active plaquettes only."""
        L, nu = theta.shape[-1], 1 - self.mu
        _, frozen = layer_masks(L, self.mu, self.offset)
        plaq = wrap_angle(plaquette_angles(theta))
        alpha, beta, logits = self.conditioner(plaq, frozen)
        p_active = active_lines(plaq, nu, self.offset)
        h, log_dh = ncp_mixture(p_active, alpha, beta, logits)
        sign = 1.0 if self.mu == 0 else -1.0
        rows = (slice(self.offset, None, 4), slice(None)) if nu == 0 else (slice(None), slice(self.offset, None, 4))
        out = theta.at[(self.mu, *rows)].add(sign * (h - p_active))
        return out, jnp.sum(log_dh)


class GaugeFlow(nnx.Module):
    """g = coupling_n ∘ … ∘ coupling_1 with the (μ, offset) masks cycled (module docstring)."""

    def __init__(self, *, num_layers: int = 8, kernel_size: int = 3, hidden_channels: Sequence[int] = (8, 8),
                 components: int = 4, activation: str = "tanh", ncp_alpha_min: float = 0.5,
                 ncp_alpha_max: float | None = 2.0, ncp_shift_max: float | None = 0.5, seed: int = 0, dtype=None):
        rngs = nnx.Rngs(seed)
        self.layers = nnx.List([
            PlaquetteCoupling(i % 2, (i // 2) % 4, kernel_size=kernel_size, hidden_channels=hidden_channels,
                              components=components, activation=activation, ncp_alpha_min=ncp_alpha_min,
                              ncp_alpha_max=ncp_alpha_max, ncp_shift_max=ncp_shift_max, rngs=rngs, dtype=dtype)
            for i in range(num_layers)])

    def forward_and_log_det(self, theta: jnp.ndarray):
        log_det = jnp.zeros((), theta.dtype)
        for layer in self.layers:
            theta, ld = layer.forward_and_log_det(theta)
            log_det = log_det + ld
        return theta, log_det


@dataclasses.dataclass(frozen=True)
class GaugeFlowConfig:
    """Architecture of a :class:`GaugeFlow` (the ``flow.*`` keys a gauge run reads).

    Attributes:
        num_layers: coupling layers (≥ 1); 8 update every link once.
        kernel_size: odd size k of the conditioners' circular convolutions.
        hidden_channels: channels of the hidden convolutions, e.g. (8, 8).
        components: K, NCP components of the circle map (≥ 1).
        activation: hidden activation, one of :data:`GAUGE_ACTIVATIONS`.
        ncp_alpha_min: α_min > 0, the smallest NCP scale.
        ncp_alpha_max: α_max > α_min, the largest NCP scale, or None: unbounded (α = α_min + softplus).
        ncp_shift_max: β_max > 0, the largest |β_k|, or None: unbounded. With both bounds set,
            |log h'| ≤ :func:`ncp_log_slope_bound` (module docstring).
        seed: seed of the initialisation.
    """

    num_layers: int = 8
    kernel_size: int = 3
    hidden_channels: tuple[int, ...] = (8, 8)
    components: int = 4
    activation: str = "tanh"
    ncp_alpha_min: float = 0.5
    ncp_alpha_max: float | None = 2.0
    ncp_shift_max: float | None = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_channels", tuple(self.hidden_channels))

        def is_int(x):
            return isinstance(x, int) and not isinstance(x, bool)

        if not is_int(self.num_layers) or self.num_layers < 1:
            raise must_be("num_layers", self.num_layers, "an integer >= 1")
        if not is_int(self.kernel_size) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise must_be("kernel_size", self.kernel_size, "an odd integer >= 1 (one size for every gauge layer)")
        if not all(is_int(c) and c >= 1 for c in self.hidden_channels):
            raise must_be("hidden_channels", list(self.hidden_channels), "a sequence of integers >= 1")
        if not is_int(self.components) or self.components < 1:
            raise must_be("components", self.components, "an integer >= 1")
        if self.activation not in GAUGE_ACTIVATIONS:
            raise must_be("activation", self.activation, f"one of {sorted(GAUGE_ACTIVATIONS)}")
        if not is_int(self.seed):
            raise must_be("seed", self.seed, "an integer")

        def is_positive(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0

        if not is_positive(self.ncp_alpha_min):
            raise must_be("ncp_alpha_min", self.ncp_alpha_min, "a finite number > 0")
        if self.ncp_alpha_max is not None and not (is_positive(self.ncp_alpha_max)
                                                   and self.ncp_alpha_max > self.ncp_alpha_min):
            raise must_be("ncp_alpha_max", self.ncp_alpha_max,
                          f"null or a finite number > ncp_alpha_min = {self.ncp_alpha_min}")
        if self.ncp_shift_max is not None and not is_positive(self.ncp_shift_max):
            raise must_be("ncp_shift_max", self.ncp_shift_max, "null or a finite number > 0")

    def log_slope_bound(self) -> float:
        """log λ*, the bound on |log h'| of every circle map (:func:`ncp_log_slope_bound`); inf
        when α or β is unbounded."""
        if self.ncp_alpha_max is None or self.ncp_shift_max is None:
            return math.inf
        return ncp_log_slope_bound(self.ncp_alpha_min, self.ncp_alpha_max, self.ncp_shift_max)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_channels"] = list(self.hidden_channels)
        return d

    def build(self, dtype=None) -> GaugeFlow:
        return GaugeFlow(**dataclasses.asdict(self), dtype=dtype)


@dataclasses.dataclass(frozen=True)
class GaugeFlowForward:
    """``(params, θ) -> (g(θ), log|det|)`` of a split :class:`GaugeFlow` (hashable: the static
    part of a :class:`trivflow.flows.Flow` made with :meth:`Flow.from_callable`)."""

    graphdef: nnx.GraphDef

    def __call__(self, params, theta):
        check_gauge_shape(jnp.shape(theta))
        return nnx.merge(self.graphdef, params).forward_and_log_det(theta)


def gauge_flow(config: GaugeFlowConfig | None = None, *, dtype=None, **fields):
    """A :class:`trivflow.flows.Flow` of a new :class:`GaugeFlow` (``config`` or its ``fields``):
    FHMC (jax.vjp pullback), independence MH and reverse-KL training take it as any flow."""
    from ..flows.flow import Flow

    config = config or GaugeFlowConfig(**fields)
    graphdef, params = nnx.split(config.build(dtype), nnx.Param)
    return Flow.from_callable(GaugeFlowForward(graphdef), params)


def gauge_flow_from_params(config: GaugeFlowConfig, params, *, dtype=None):
    """The :class:`trivflow.flows.Flow` of ``config`` with the trained ``params`` (a checkpoint)."""
    from ..flows.flow import Flow

    graphdef, _ = nnx.split(config.build(dtype), nnx.Param)
    return Flow.from_callable(GaugeFlowForward(graphdef), params)


@dataclasses.dataclass(frozen=True)
class HaarPrior:
    """The uniform (Haar) measure of U(1)^{links}: every link angle uniform in [−π, π),
    log r(θ) = −n log 2π with n = prod(shape) (a :class:`trivflow.priors.Prior`).

    Args:
        shape: shape of one configuration, ``(2, L, L)``.
        dtype: sample dtype; None is the default float of the JAX config.
    """

    shape: tuple[int, ...]
    dtype: object = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))

    def sample(self, key, batch_size: int) -> jnp.ndarray:
        """θ uniform in [−π, π), shape ``(batch_size, *shape)``."""
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if self.dtype is None else self.dtype)
        return jax.random.uniform(key, (batch_size, *self.shape), dtype, -math.pi, math.pi)

    def log_prob(self, theta: jnp.ndarray) -> jnp.ndarray:
        """−n log 2π for ONE configuration (the density is constant)."""
        return jnp.zeros((), theta.dtype) - math.prod(self.shape) * math.log(2.0 * math.pi)


#: the NCP keys of a checkpoint written before the bound (flow_config.json without them): the
#: unbounded parametrisation α = 10⁻³ + softplus(a), β = b those flows were trained with
LEGACY_NCP_BOUNDS = {"ncp_alpha_min": 1e-3, "ncp_alpha_max": None, "ncp_shift_max": None}

#: ``flow_config.json`` key that names the family of a checkpoint's flow (absent: φ⁴'s coupling flows)
FAMILY_KEY = "family"


@dataclasses.dataclass(frozen=True)
class U1FlowFamily:
    """The flows of :class:`~trivflow.gauge.U1Theory` (its ``flow_family``): how the application
    builds, trains from a prior, saves and loads them. A theory without a ``flow_family`` uses
    trivflow's φ⁴ coupling flows (``trivflow.flows``).

    Checkpoint layout (as φ⁴'s: ``flow_config.json`` and ``params/``, written atomically)::

        path/flow_config.json   {"family": "u1_equivariant", GaugeFlowConfig keys, metadata}
        path/params/params.npz  the parameters, flattened by their NNX path
    """

    name: str = "u1_equivariant"
    #: the priors a gauge flow is trained from (``prior.name``): the Haar measure
    prior_names: tuple[str, ...] = ("haar",)
    #: the lattice extents a gauge flow acts on are multiples of this
    extent_multiple: int = 4

    @staticmethod
    def config_keys() -> tuple[str, ...]:
        """The ``flow.*`` keys a gauge flow reads (besides ``flow.checkpoint``)."""
        return tuple(f.name for f in dataclasses.fields(GaugeFlowConfig))

    def config(self, flow_keys) -> GaugeFlowConfig:
        """The :class:`GaugeFlowConfig` of a mapping of ``flow.*`` values (other keys ignored);
        bad values raise :class:`~trivflow.errors.ParameterError` naming the key."""
        return GaugeFlowConfig(**{k: flow_keys[k] for k in self.config_keys() if k in flow_keys})

    def build(self, config: GaugeFlowConfig, dtype=None):
        """A new (untrained) :class:`trivflow.flows.Flow` of ``config``."""
        return gauge_flow(config, dtype=dtype)

    def prior(self, name: str, shape, dtype=None) -> HaarPrior:
        """The prior ``name`` (``"haar"``) on configurations of ``shape``."""
        if name not in self.prior_names:
            raise must_be("name", name, f"one of {list(self.prior_names)} for a U(1) gauge flow")
        return HaarPrior(tuple(shape), dtype)

    def save(self, path, flow, config: GaugeFlowConfig, metadata=None) -> Path:
        """Write the flow's parameters and config to the directory ``path`` (replaced atomically)."""
        import json

        import numpy as np

        from ..state import atomic_savez, replace_dir, temporary_dir

        tmp = temporary_dir(Path(path))
        (tmp / "params").mkdir()
        atomic_savez(tmp / "params" / "params.npz", {k: np.asarray(v) for k, v in _flat_params(flow.params).items()})
        stored = {FAMILY_KEY: self.name, **config.to_dict(), **(metadata or {})}
        (tmp / "flow_config.json").write_text(json.dumps(stored, indent=2))
        return replace_dir(tmp, Path(path))

    def load(self, path, dtype=None):
        """``(flow, stored)``: the :class:`trivflow.flows.Flow` saved in ``path`` and its
        ``flow_config.json``. Raises ``ValueError`` for a checkpoint of another family (φ⁴'s) or
        parameters that do not fit the stored config."""
        import json

        import numpy as np

        path = Path(path)
        stored = json.loads((path / "flow_config.json").read_text())
        if stored.get(FAMILY_KEY) != self.name:
            raise ValueError(f"the flow checkpoint {str(path)!r} holds a {stored.get(FAMILY_KEY, 'phi4 coupling')} "
                             f"flow, not a {self.name} flow")
        config = self.config({**LEGACY_NCP_BOUNDS, **stored})  # a checkpoint from before the bound: unbounded
        template = gauge_flow(config, dtype=dtype)
        flat = _flat_params(template.params)
        with np.load(path / "params" / "params.npz") as saved:
            arrays = {k: saved[k] for k in saved.files}
        if set(arrays) != set(flat) or any(arrays[k].shape != np.shape(v) for k, v in flat.items()):
            raise ValueError(f"the flow checkpoint {str(path)!r} does not fit its flow_config.json (parameters "
                             f"{sorted(arrays)} vs {sorted(flat)})")
        leaves, treedef = jax.tree_util.tree_flatten(template.params)
        names = list(flat)
        params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[n], leaf.dtype)
                                                        for n, leaf in zip(names, leaves)])
        return gauge_flow_from_params(config, params, dtype=dtype), stored


def _flat_params(params) -> dict:
    """``{"layers.0.kernels.1": array, …}`` in the order of ``jax.tree_util.tree_flatten(params)``."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): leaf for path, leaf in leaves}


#: the flows of action=u1
U1_FLOWS = U1FlowFamily()
