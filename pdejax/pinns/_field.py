"""Neural fields ``u(x)`` on a problem's domain, with hard constraints as output transforms."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._precision import full_precision
from ..problems import Problem
from ._models import MODELS
from ._taylor import rows_of, stacked

CONSTRAINTS = ("hard", "soft")


def features(
    x: Float[Array, " d"], lower: tuple, upper: tuple, periodic: tuple[int, ...] = (), harmonics: int = 1
) -> Float[Array, " f"]:
    """Network inputs for a point of the box ``[lower, upper]``: coordinates scaled to ``[-1, 1]``, each
    periodic axis replaced by ``cos(2 pi m (x - lo)/L), sin(...)``, ``m = 1..harmonics``.
    Shape ``(d + len(periodic) * (2 * harmonics - 1),)``."""
    lo = jnp.asarray(lower, x.dtype)
    hi = jnp.asarray(upper, x.dtype)
    feats = []
    m = jnp.arange(1, harmonics + 1, dtype=x.dtype)
    for i in range(x.shape[0]):
        if i in periodic:
            angle = 2 * jnp.pi * m * (x[i] - lo[i]) / (hi[i] - lo[i])
            feats += [jnp.cos(angle), jnp.sin(angle)]
        else:
            feats.append((2 * (x[i] - lo[i]) / (hi[i] - lo[i]) - 1)[None])
    return jnp.concatenate(feats)


class Field(eqx.Module):
    """A neural field ``u(x)`` for one problem: ``(d,) -> ()`` (scalar) or ``(c,)``.

    The input is scaled to ``[-1, 1]`` per coordinate; periodic spatial axes are embedded as
    ``cos(2 pi m (x - lo)/L), sin(...)`` for ``m = 1..harmonics`` (exact periodicity of the field and of
    all its derivatives). Hard constraints transform the backbone output ``N``:

    - initial condition only: ``u = u0(x) + tau N``, ``tau = (t - t0)/(t1 - t0)``;
    - Dirichlet only: ``u = g(x) + phi(x) N``, ``phi = prod_i (x_i - lo_i)(hi_i - x_i)/(L_i/2)^2`` over the
      non-periodic axes (zero exactly on the boundary);
    - both: ``u = g(x, t) + u0(x) - g(x, t0) + tau phi N`` (exact when ``u0 = g(., t0)`` on the boundary).
      (Lagaris et al., IEEE TNN 1998; Lu et al., SIAM J. Sci. Comput. 2021.)

    Attributes:
        backbone: network from features to ``c`` outputs.
        lower, upper: bounds of the space-time box.
        periodic: periodic spatial axes; harmonics: embedding modes per periodic axis.
        initial: ``u0(x_spatial)`` to enforce exactly, or ``None``.
        dirichlet: ``g(x)`` to enforce exactly on the spatial boundary, or ``None``.
        has_time: whether the last coordinate is time.
        output_dim: ``c``; a scalar is returned when ``c == 1``.
    """

    backbone: eqx.Module
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)
    periodic: tuple[int, ...] = eqx.field(static=True, default=())
    harmonics: int = eqx.field(static=True, default=1)
    initial: Callable | None = eqx.field(static=True, default=None)
    dirichlet: Callable | None = eqx.field(static=True, default=None)
    has_time: bool = eqx.field(static=True, default=False)
    output_dim: int = eqx.field(static=True, default=1)

    def features(self, x: Float[Array, " d"]) -> Float[Array, " f"]:
        """Scaled coordinates, periodic axes replaced by their Fourier embedding."""
        return features(x, self.lower, self.upper, self.periodic, self.harmonics)

    def _hard(self) -> bool:
        return self.initial is not None or self.dirichlet is not None

    def _transform(self, x: Float[Array, " d"]) -> tuple[Float[Array, " c"], Float[Array, " 1"]]:
        """``(base, scale)`` of the hard-constraint transform ``u = base + scale * N`` at ``x``."""
        lo = jnp.asarray(self.lower, x.dtype)
        hi = jnp.asarray(self.upper, x.dtype)
        scale = jnp.ones((1,), x.dtype)
        base = jnp.zeros((self.output_dim,), x.dtype)
        if self.dirichlet is not None:
            s = len(self.lower) - (1 if self.has_time else 0)
            for i in range(s):
                if i not in self.periodic:
                    half = (hi[i] - lo[i]) / 2
                    scale = scale * (x[i] - lo[i]) * (hi[i] - x[i]) / half**2
            base = base + jnp.reshape(self.dirichlet(x), (self.output_dim,))
        if self.initial is not None:
            t0, t1 = lo[-1], hi[-1]
            scale = scale * (x[-1] - t0) / (t1 - t0)
            base = base + jnp.reshape(self.initial(x[:-1]), (self.output_dim,))
            if self.dirichlet is not None:
                base = base - jnp.reshape(self.dirichlet(x.at[-1].set(t0)), (self.output_dim,))
        return base, scale

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, "..."]:
        out = self.backbone(self.features(x))
        if self._hard():
            base, scale = self._transform(x)
            out = base + scale * out
        return out[0] if self.output_dim == 1 else out

    def derivative_rows(
        self, points: Float[Array, "n d"], first: tuple[int, ...], second: tuple[tuple[int, int], ...]
    ) -> Float[Array, "n r ..."] | None:
        """``u`` and its derivatives at many points in one stacked pass through the backbone.

        Rows (axis 1): ``u``, then ``d u / dx_a`` for ``a`` in ``first``, then ``d^2 u / dx_a dx_b`` for
        each pair ``(a, b)`` in ``second`` (``a``, ``b`` in ``first``); each with the shape of ``u(x)``.
        ``None`` when the backbone has no ``rows`` method (callers then use nested JVPs).
        :meth:`Problem.term_residuals` uses this automatically: it makes a PINN step on CPU about 1.5x
        faster than nested JVPs, which issue one small matrix product per derivative.
        """
        backbone_rows = getattr(self.backbone, "rows", None)
        if backbone_rows is None:
            return None
        out = backbone_rows(rows_of(self.features, points, first, second))
        if self._hard():
            base = rows_of(lambda y: self._transform(y)[0], points, first, second)
            scale = rows_of(lambda y: self._transform(y)[1], points, first, second)
            out = base + scale * out
        rows = stacked(out)
        return rows[:, :, 0] if self.output_dim == 1 else rows


def make_field(
    problem: Problem,
    model: str = "mlp",
    *,
    width: int = 64,
    depth: int = 4,
    activation: str = "tanh",
    constraints: str = "hard",
    harmonics: int = 1,
    key: PRNGKeyArray,
    **model_kwargs,
) -> tuple[Field, Problem]:
    """Build a neural field for ``problem`` and the problem whose loss it should be trained on.

    With ``constraints='hard'`` every constraint the field can enforce exactly is enforced (periodic
    axes by embedding, the initial condition, a Dirichlet condition on the whole boundary), and the
    returned problem no longer carries those loss terms. The initial condition stays a loss term when
    it is not compatible with the other constraints (e.g. ``x^2 cos(pi x)`` on ``[-1, 1]``, whose periodic
    extension has a kink that an exact ``u0 + t N`` ansatz would keep for all time). With ``'soft'`` all
    terms stay in the loss.

    Args:
        problem: the PDE problem.
        model: 'mlp', 'fourier' (random Fourier features) or 'modified' (modified MLP).
        width, depth, activation: backbone size and nonlinearity.
        constraints: 'hard' or 'soft'.
        harmonics: Fourier modes per periodic axis in the embedding.
        key: PRNG key for the initial weights.
        **model_kwargs: extra backbone options (``n_features``, ``sigma`` for 'fourier').

    Returns:
        ``(field, training_problem)``.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    if constraints not in CONSTRAINTS:
        raise ValueError(f"unknown constraints {constraints!r}; choose one of {CONSTRAINTS}")
    if harmonics < 1:
        raise ValueError(f"harmonics must be >= 1, got {harmonics}")
    dom = problem.domain
    hard = constraints == "hard"
    periodic = problem.periodic_axes if hard else ()
    initial = problem.initial_condition if hard else None
    dirichlet = problem.boundary_value if hard and not periodic else None
    if initial is not None and not _initial_is_compatible(problem, periodic, dirichlet):
        initial = None  # an exact initial condition would carry its kink/mismatch into every t > t0
    in_size = dom.dim + len(periodic) * (2 * harmonics - 1)
    backbone = MODELS[model](in_size, problem.output_dim, width, depth, activation, key=key, **model_kwargs)
    field = Field(
        backbone,
        tuple(float(v) for v in dom.lower),
        tuple(float(v) for v in dom.upper),
        periodic=periodic,
        harmonics=harmonics,
        initial=initial,
        dirichlet=dirichlet,
        has_time=dom.has_time,
        output_dim=problem.output_dim,
    )
    drop = []
    if periodic:
        drop.append("periodic")
    if initial is not None:
        drop.append("initial")
    if dirichlet is not None:
        # Only the whole-boundary, all-component Dirichlet term is exact; face terms stay soft.
        kept = {
            k: t
            for k, t in problem.terms.items()
            if not (t.kind == "dirichlet" and t.region == "boundary" and t.components is None)
        }
        problem = eqx.tree_at(lambda p: p.terms, problem, kept)
    train_problem = problem.without(*drop) if drop else problem
    if not train_problem.terms:
        raise ValueError("every loss term is enforced exactly; nothing left to train on")
    return field, train_problem


def _initial_is_compatible(problem: Problem, periodic: tuple[int, ...], dirichlet) -> bool:
    """Whether ``u = u0 + tau N`` can be exact: ``u0`` must be periodic (with its first derivative) along
    the periodic axes and equal the Dirichlet data at ``t0`` on the boundary; checked at sample points."""
    from ..problems import partial, sample

    u0 = problem.initial_condition
    dom = problem.domain
    key = jax.random.PRNGKey(0)
    scale = 1e-6 * (1 + float(jnp.max(jnp.abs(jax.vmap(u0)(sample(dom, "initial", key, 64)[:, :-1])))))
    for axis in periodic:
        lo = sample(dom, f"face:{axis}:lo", key, 16)[:, :-1]
        hi = lo.at[:, axis].set(dom.hi[axis])
        for k in range(2):
            d_lo = jax.vmap(lambda y: partial(u0, y, *[axis] * k))(lo)
            d_hi = jax.vmap(lambda y: partial(u0, y, *[axis] * k))(hi)
            if float(jnp.max(jnp.abs(d_lo - d_hi))) > scale:
                return False
    if dirichlet is not None:
        b = sample(dom, "boundary", key, 64).at[:, -1].set(dom.time[0])
        diff = jax.vmap(lambda y: jnp.ravel(u0(y[:-1])) - jnp.ravel(dirichlet(y)))(b)
        if float(jnp.max(jnp.abs(diff))) > scale:
            return False
    return True


def ready(field: Callable) -> Callable:
    """The callable to evaluate a field with: a field that must solve something first (a hard-constraint
    field solves for its coefficients) exposes ``prepared()``, called once here; others are returned as is."""
    prepared = getattr(field, "prepared", None)
    return prepared() if callable(prepared) else field


@eqx.filter_jit
def _eval_batch(field, points):
    return jax.vmap(field)(points)


@full_precision
def predict(field: Callable, points: Float[Array, "n d"], batch: int = 8192) -> Float[np.ndarray, "n ..."]:
    """Evaluate ``field`` at many points in jitted batches; returns a NumPy array ``(n,)`` or ``(n, c)``.

    The last batch is padded to full size so one compiled program serves every batch.
    """
    if callable(getattr(field, "prepared", None)):
        field = eqx.filter_jit(ready)(field)  # one solve for all batches
    pts = np.asarray(points, np.dtype(jnp.zeros(()).dtype))
    n = pts.shape[0]
    batch = max(1, min(batch, n))
    outs = []
    for s in range(0, n, batch):
        chunk = pts[s : s + batch]
        pad = batch - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        outs.append(np.asarray(_eval_batch(field, jnp.asarray(chunk)))[: batch - pad])
    return np.concatenate(outs, axis=0)
