"""Privacy accounting: every ε comes from Opacus's RDP accountant, never from a formula of ours.

The Rényi orders are Opacus's defaults (``RDPAccountant.DEFAULT_ALPHAS``: 1.1 .. 10.9 and 12 .. 63;
a test checks the copy). Higher orders tighten the bound only for very few steps at large ε; they
made the noise-multiplier search slow (orders up to 1023 cost seconds per accountant call), and
fewer orders can only *overstate* ε (the conversion takes the minimum over the orders tried).
Opacus is imported on first use: a Ray actor that never accounts does not pay for it.
"""

from __future__ import annotations

#: Rényi orders the accountant optimises over (Opacus's defaults)
ALPHAS: list[float] = [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)]


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps at ``delta``: Opacus's RDP accountant."""
    from opacus.accountants import RDPAccountant

    if steps == 0:
        return 0.0
    acc = RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta, alphas=ALPHAS))


def noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier whose ε after ``steps`` steps is at most ``target_epsilon``
    (Opacus's ``get_noise_multiplier``, same accountant and orders as :func:`epsilon`)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant="rdp",
            alphas=ALPHAS,
            epsilon_tolerance=0.01 * target_epsilon,
        )
    )
