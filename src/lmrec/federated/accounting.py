"""Privacy accounting: every ε comes from Opacus's RDP accountant, never from a formula of ours.

The Rényi orders are Opacus's defaults (``RDPAccountant.DEFAULT_ALPHAS``: 1.1 .. 10.9 and 12 .. 63;
a test checks the copy). Higher orders tighten the bound only for very few steps at large ε; they
made the noise-multiplier search slow (orders up to 1023 cost seconds per accountant call), and
fewer orders can only *overstate* ε (the conversion takes the minimum over the orders tried).
Opacus is imported on first use: a Ray actor that never accounts does not pay for it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Rényi orders the accountant optimises over (Opacus's defaults)
ALPHAS: list[float] = [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)]


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps at ``delta``: Opacus's RDP accountant.

    The same two calls as ``RDPAccountant.get_epsilon`` with history ``[(z, q, steps)]``
    (``compute_rdp`` then ``get_privacy_spent``; a test checks they agree), with one step's RDP
    cached: Opacus's ``compute_rdp`` is ``steps`` times it, and its series for fractional orders
    cost seconds per call, which every client paid every round to report ε.
    """
    from opacus.accountants.analysis.rdp import get_privacy_spent

    if steps == 0:
        return 0.0
    rdp = steps * np.asarray(_step_rdp(float(noise_multiplier), float(sample_rate)))
    eps, _ = get_privacy_spent(orders=ALPHAS, rdp=rdp, delta=delta)
    return float(eps)


@functools.lru_cache(maxsize=64)
def _step_rdp(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    from opacus.accountants.analysis.rdp import compute_rdp

    rdp = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=ALPHAS)
    return tuple(float(x) for x in np.atleast_1d(rdp))


@functools.lru_cache(maxsize=256)
def noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier whose ε after ``steps`` steps is at most ``target_epsilon``
    (Opacus's ``get_noise_multiplier``, same accountant and orders as :func:`epsilon`; remembered per
    arguments, since one search takes about a second)."""
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


def client_noise(target_epsilon: float, delta: float, n_records: int, batch_size: int, passes: int) -> float:
    """The DP-SGD noise multiplier of a client holding ``n_records``: Poisson batches of expected
    size ``batch_size`` (sample rate 1 / batches per pass), ``passes`` passes over its records in all
    (local epochs x rounds), ``target_epsilon`` met after the last one (:func:`noise_for`)."""
    batches = max(1, math.ceil(n_records / min(batch_size, max(n_records, 1))))
    return noise_for(target_epsilon, delta, 1.0 / batches, batches * passes)
