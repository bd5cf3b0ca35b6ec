"""EvoGrad (Bohdal, Yang & Hospedales, NeurIPS 2021): a first-order hypergradient through a virtual
evolutionary step.

With the current weights w detached (the paper's θ), draw a population of K candidates and weigh
them by their training losses:

    w_k = w + ε_k,   ε_k = σ·sign(N(0, I))  (``noise="sign"``)  or  σ·N(0, I)  (``"gaussian"``)
    ℓ_k = L_train(w_k, λ; D_t)              (graph to λ only)
    a = softmax(−ℓ/τ),   w* = Σ_k a_k w_k                                       (Eqs. 3–4)
    g = ∇_λ L_val(w*, λ) = ∂L_val/∂λ + ⟨∂L_val/∂w*, ∂w*/∂λ⟩                      (Eq. 5)

with K = ``population`` and τ = ``temperature``, and in closed form
``∂L_val/∂w* · ∂w*/∂λ = −(1/τ) Σ_k a_k ⟨∇_w L_val(w*), w_k − w*⟩ ∇_λ ℓ_k``. No
second derivatives: K training forward passes, one backward pass through them, one validation
gradient. For small σ the expectation is the 1-step hypergradient with virtual learning rate
σ²(1 − 1/K)/τ (ALGORITHMS.md §7). Like implicit differentiation it cannot learn the optimizer's
own hyperparameters (the virtual step is not the optimizer's step): asking for them is an error.

The candidate forward passes run in training mode on the same per-step seed (common random numbers
for dropout); the BatchNorm buffers they return are discarded, so the real model's running
statistics never see the candidates. ``when="before"`` estimates at s_{t−1} and then takes the
model's own step s_{t−1} → s_t (the Meta-Weight-Net / T1–T2 flow); ``when="after"`` takes the step
first and estimates at s_t. Both use the step's batch D_t and the validation batch of step t.

Defaults K = 2, σ = 1e-3, τ = 0.05 (paper, §4.2 and Appendix B). The offline call runs T online
steps at fixed λ and returns the last hypergradient (``info["sum"]`` holds Σ_t g_t).

Noise check (``check_noise=True``): a single estimate is a random projection — for small σ and K = 2
it is (J δ)(αᵀ δ) with δ = ε_1 − ε_2, J = ∂²ℓ/∂λ∂w and α = ∇_w L_val, whose mean is 2σ² J α but whose
spread is about 2σ² ‖J_i‖ ‖α‖ per hyperparameter: the signal-to-noise ratio is |cos(J_i, α)| √(K−1),
small for a network whose J_i and α are nearly orthogonal in many dimensions. At the first step of an
estimator it measures this directly: R = 8 extra estimates at the same state from a separate generator
(the run's own draws are unchanged; R·K training forwards and R validation gradients, counted in
``problem.cost``) give the cosine of one estimate to their expectation,
``c = √(max(‖ḡ‖² − tr Σ̂ / R, 0) / mean ‖g_r‖²)`` (an unbiased ‖μ‖² over the second moment). When
c < 0.3 (:data:`NOISE_COSINE`: below it, most of each estimate's norm is noise and an online run must
average ≳ 1/c² ≈ 10 steps before its direction means anything) it warns once, naming the fixes. It
measures one state, the first: from a random initialisation the signal is often weaker than later
in training, so the warning is conservative (``results/rotation``: it fires for 8 candidates too, and
those runs succeed).

    >>> hg = estimate("evograd", problem, lam, T=1, population=2, sigma=1e-3, temperature=0.05, when="before")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence, cast

import torch

from ..core.autograd import grad_or_zero
from ..core.deprecation import renamed_kwargs
from ..core.problem import InnerProblem
from ..core.state import State
from ..core.tree import detached
from ..core.types import Batch, Hparams
from ..core.warn import warn_user
from .base import Carry, Estimator, EstimatorState, GeneratorState, Hypergradient, register
from .shared import last_of_steps

__all__ = ["EvoGrad", "EvoGradState", "perturbations", "NOISE_COSINE", "NOISE_REDRAWS"]

NOISE = ("sign", "gaussian")
WHEN = ("before", "after")
NOISE_COSINE = 0.3      # warn below this cosine of one estimate to its expectation (module docstring)
NOISE_REDRAWS = 8       # R: extra estimates the check takes, once


_SIGNS: dict = {}


def _sign_table(dtype: torch.dtype) -> torch.Tensor:
    """256 × 8: row b holds ±1 for the 8 bits of the byte b (bit i set → +1 in column i)."""
    if dtype not in _SIGNS:
        bits = (torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1
        _SIGNS[dtype] = (2 * bits - 1).to(dtype)
    return _SIGNS[dtype]


def random_words(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """⌈n/64⌉ uniform 64-bit integers: the random bits behind n fair signs (:func:`signs_of`; one
    draw per 64 entries, several times cheaper than ``sign(randn)`` or ``bernoulli_``)."""
    return torch.randint(-2 ** 63, 2 ** 63 - 1, ((math.prod(shape) + 63) // 64,), generator=generator,
                         dtype=torch.int64)


def signs_of(words: torch.Tensor, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """±1 per bit of ``words`` (entry 64 j + i is +1 when bit i of word j is set), read a byte at a
    time from a table of the bytes' ±1 patterns: one gather per 8 entries."""
    signs = torch.nn.functional.embedding(words.view(torch.uint8).long(), _sign_table(dtype))
    return signs.reshape(-1)[:math.prod(shape)].reshape(shape)


def draw(params: Sequence[torch.Tensor], sigma: float, noise: str, generator: torch.Generator) -> list:
    """One perturbation ε aligned with ``params``: σ·s with s uniform on {−1, +1} (the distribution
    of σ·sign(N(0, I)), from :func:`random_words`) or σ·N(0, I), from ``generator`` (a CPU
    generator; the noise is moved to each parameter's device)."""
    if noise == "sign":
        return [_sign_eps(random_words(p.shape, generator), p, sigma) for p in params]
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype).mul_(sigma).to(p.device) for p in params]


def _sign_eps(words: torch.Tensor, p: torch.Tensor, sigma: float) -> torch.Tensor:
    """σ·s for ``p`` from the random bits ``words`` (:func:`signs_of`), on ``p``'s device."""
    return signs_of(words, p.shape, p.dtype).mul_(sigma).to(p.device)


def perturbations(params: Sequence[torch.Tensor], population: int, sigma: float, noise: str,
                  generator: torch.Generator) -> list[list[torch.Tensor]]:
    """ε_1 … ε_K for K = ``population`` (:func:`draw`, in order from ``generator``)."""
    return [draw(params, sigma, noise, generator) for _ in range(population)]


class _Replay:
    """ε_1 … ε_K drawn once from ``generator`` (left where :func:`perturbations` would leave it) and
    re-expanded on demand: sign noise keeps its random bits (1/32 of the floats in float32), Gaussian
    noise the generator's state before each draw. The K perturbations never coexist in memory."""

    def __init__(self, params: Sequence[torch.Tensor], population: int, sigma: float, noise: str,
                 generator: torch.Generator) -> None:
        self.params, self.sigma, self.noise = params, sigma, noise
        self.saved: list[Any] = []      # per candidate: its random words (sign) or the generator state (gaussian)
        for _ in range(population):
            if noise == "sign":
                self.saved.append([random_words(p.shape, generator) for p in params])
            else:
                self.saved.append(generator.get_state())
                draw(params, sigma, noise, generator)

    def __len__(self) -> int:
        return len(self.saved)

    def __getitem__(self, k: int) -> list:
        if self.noise == "sign":
            return [_sign_eps(w, p, self.sigma) for w, p in zip(self.saved[k], self.params)]
        return draw(self.params, self.sigma, self.noise, torch.Generator().set_state(self.saved[k]))


@dataclass
class EvoGradState(GeneratorState):
    """EvoGrad's memory across calls: the perturbations' generator, and the noise check's measurement
    (None until it is taken: the check runs once per run, at its first step)."""

    noise_cosine: float | None = None


@register
class EvoGrad(Estimator):
    """First-order hypergradient through a virtual evolutionary step; memory O(|w|) for any population.

    The perturbations are redrawn, never stored.

    Args:
        population: K, the number of candidates (≥ 2; with K = 1 the weights are constant and g is the
            direct term).
        sigma: σ, the perturbation scale.
        temperature: τ, the softmax temperature.
        noise: ``"sign"`` (σ·sign(N(0, I)), the paper's experiments) or ``"gaussian"`` (the 1-D toy).
        when: ``"before"`` or ``"after"`` the model's own step.
        seed: seed of the perturbations' generator, which lives in the estimator state
            (:meth:`new_state`; a driver carries one across inner optimizations).
        check_noise: measure, once at the first step, how much of one estimate is noise, and warn
            when it dominates (module docstring); ``False`` skips it (and its R extra estimates).
    """

    not_vectorizable = "its population weights are a softmax of each task's own perturbed losses"

    state_class = EvoGradState
    name = "evograd"
    online = True
    optimizer_hparams = False
    no_optimizer_hparams = "its virtual step is evolutionary, not the optimizer's, so lr / momentum do not enter"
    memory = "O(|w|)"

    @renamed_kwargs(K="population", tau="temperature")
    def __init__(self, population: int = 2, sigma: float = 1e-3, temperature: float = 0.05, noise: str = "sign",
                 when: str = "after", seed: int = 0, check_noise: bool = True) -> None:
        if not isinstance(population, int) or isinstance(population, bool) or population < 1:
            raise ValueError(f"population (K, the number of candidates) must be a positive int, got {population!r}")
        if not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"sigma must be a positive float, got {sigma!r}")
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature (τ) must be a positive float, got {temperature!r}")
        if noise not in NOISE:
            raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
        if when not in WHEN:
            raise ValueError(f"when must be one of {WHEN}, got {when!r}")
        self.population, self.sigma, self.temperature = population, float(sigma), float(temperature)
        self.noise, self.when, self.seed = noise, when, seed
        self.check_noise = bool(check_noise)

    def new_state(self) -> "EvoGradState":
        """The perturbations' generator, seeded with ``seed``."""
        return EvoGradState(torch.Generator().manual_seed(self.seed))

    def hypergradient(self, problem: InnerProblem, lam: Hparams, state: State, t: int,
                      generator: torch.Generator, batch: Batch = None) -> tuple[Hparams, Hparams, torch.Tensor, dict]:
        """(direct, indirect, L_val(w*), info) at w = ``state``'s weights, candidates on the batch of step t.

        Streamed so that memory is O(|w|) whatever K: the candidates w + ε_k are formed one at a
        time for their losses, w* = w + Σ_k a_k ε_k is accumulated from redrawn ε_k (Σ_k a_k = 1),
        and the indirect term is ∇_λ of a with output gradient c_k = ⟨∇_w L_val(w*), ε_k⟩ (the
        chain rule through w*; the w part of w_k drops out because Σ_k ∂a_k/∂λ = 0)."""
        w = [p.detach() for p in state.params]
        eps = _Replay(w, self.population, self.sigma, self.noise, generator)
        lam_g = detached(lam, requires_grad=True)
        with torch.enable_grad():
            each = []
            for k in range(self.population):          # the returned buffers are discarded
                cand = tuple(p + e for p, e in zip(w, eps[k]))
                each.append(problem.train_loss_at(state._replace(params=cand), lam_g, t, batch)[0])
                del cand
            losses = torch.stack(each)
            a = torch.softmax(-losses / self.temperature, dim=0)
        star = [p.clone() for p in w]
        for k, ak in enumerate(a.detach().tolist()):
            for x, e in zip(star, eps[k]):
                x.add_(e, alpha=ak)
        loss, alpha, direct = problem.val_grad(state._replace(params=tuple(star)), lam, t)
        del star
        c = torch.stack([cast(torch.Tensor, sum(torch.dot(g.reshape(-1), e.reshape(-1)) for g, e in zip(alpha, eps[k])))
                         for k in range(self.population)]).to(a.dtype)
        keys = list(lam_g)
        indirect = dict(zip(keys, grad_or_zero(a, [lam_g[k] for k in keys], [c])))
        info = {"weights": a.detach(), "train_losses": losses.detach(), "forwards": self.population}
        return direct, indirect, loss, info

    def measure_noise(self, problem: InnerProblem, lam: Hparams, state: State, t: int, batch: Batch = None) -> float:
        """The cosine of one estimate at ``state`` to the expectation of estimates there, from
        :data:`NOISE_REDRAWS` redraws of a separate generator (module docstring)."""
        gen = torch.Generator().manual_seed(self.seed + 7919)
        draws = []
        for _ in range(NOISE_REDRAWS):
            direct, indirect, _, _ = self.hypergradient(problem, lam, state, t, gen, batch)
            draws.append(torch.cat([(direct[k] + indirect[k]).reshape(-1) for k in lam]).double())
        G = torch.stack(draws)
        mean = G.mean(0)
        trace = ((G - mean) ** 2).sum(1).sum() / (len(draws) - 1)
        second = (G ** 2).sum(1).mean()
        if not bool(second > 0):
            return 1.0
        return float(torch.sqrt(torch.clamp(mean.pow(2).sum() - trace / len(draws), min=0) / second))

    def _check(self, est_state: EvoGradState, problem: InnerProblem, lam: Hparams, state: State, t: int,
               batch: Batch = None) -> None:
        if not self.check_noise or est_state.noise_cosine is not None:
            return
        c = self.measure_noise(problem, lam, state, t, batch)
        est_state.noise_cosine = c
        if c < NOISE_COSINE:
            warn_user(f"evograd: its estimates are dominated by noise here — one estimate's cosine to their "
                      f"expectation is about {c:.2f} (< {NOISE_COSINE}; population={self.population}, "
                      f"sigma={self.sigma:g}, {NOISE_REDRAWS} redraws at the first step), so a single "
                      f"hypergradient points almost anywhere. Raise population (the noise falls as "
                      f"1/sqrt(population - 1)), average over many steps with a scale-free outer optimizer "
                      f"(Adam, sign descent), or use one_step; check_noise=False silences this")

    def start(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState) -> Carry:
        return Carry(self.own(est_state))

    def advance(self, problem: InnerProblem, lam: Hparams, state: State, carry: Carry) -> tuple[Hypergradient, Carry]:
        """The model's step and the hypergradient at s_{t−1} (``when="before"``) or s_t; ``val_loss`` is
        L_val at the virtual weights w*."""
        t = state.t + 1
        est_state = cast(EvoGradState, carry.est_state)
        gen = est_state.generator
        if self.when == "before":
            self._check(est_state, problem, lam, state, t)
            direct, indirect, loss, info = self.hypergradient(problem, lam, state, t, gen)
            state = problem.step(state, lam)
        else:
            state = problem.step(state, lam)
            self._check(est_state, problem, lam, state, t, problem.train_batch(t))
            direct, indirect, loss, info = self.hypergradient(problem, lam, state, t, gen, problem.train_batch(t))
        info["t"] = t
        return Hypergradient.of(direct, indirect, state=state, val_loss=loss, info=info), carry

    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        return last_of_steps(self.advance, problem, lam, state, self.start(problem, lam, state, est_state), T)
