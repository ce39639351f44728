"""The statistics of ``nudge report``: rates, uplift and their 95 % intervals.

Everything comes from statsmodels and scipy; nothing here is a hand-rolled
formula. Per arm (a group of recipients):

- conversion rate = converters / recipients, Wilson score interval
  (``proportion_confint(method="wilson")``);
- revenue per recipient = the mean of each recipient's attributed revenue
  (0 for recipients who did not convert).

Between two arms (``a`` = treatment or one variant, ``b`` = holdout or another
variant):

- absolute uplift = rate_a - rate_b, Newcombe's hybrid score interval
  (``confint_proportions_2indep(compare="diff", method="newcomb")``);
- relative uplift = rate_a / rate_b - 1, log interval with 0.5 added to every
  count (``compare="ratio", method="log-adjusted"``); undefined when ``b`` has no
  converter;
- p-value of "no difference in conversion rate": the score test without
  continuity correction (``test_proportions_2indep(method="score",
  correction=False)``), i.e. the pooled two-proportion z-test;
- revenue per recipient difference: Welch's t-test and its interval
  (``scipy.stats.ttest_ind(equal_var=False)``).

Funnel (contract 8.4), per group of sent decisions: each step's share of the
sent decisions (delivered, opened, clicked, ordered), Wilson interval.

Return on cost: cost = sent decisions x the channel's ``cost`` (rules);
incremental revenue = the revenue per recipient difference (treatment - holdout
of the same channel) x the treatment's recipients, with Welch's interval scaled
the same way; incremental revenue per unit of cost = that / cost, interval
likewise (the cost is known, not estimated). None without a holdout, without a
known cost, or for a free channel (cost 0).

A figure that cannot be computed (an empty arm, no variance) is ``None``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import msgspec
import numpy as np
from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    test_proportions_2indep,
)

ALPHA = 0.05  # 95 % intervals
MIN_RECIPIENTS = 30  # per arm, below which a comparison says nothing
MIN_CONVERTERS = 5  # per arm, below which a comparison says nothing

Interval = tuple[float, float]


class ArmStats(msgspec.Struct, frozen=True):
    """One arm: its recipients, who converted and what they spent."""

    recipients: int
    converters: int
    conversions: int
    revenue: float
    rate: float | None
    rate_ci: Interval | None
    revenue_per_recipient: float | None


class Uplift(msgspec.Struct, frozen=True):
    """Arm ``a`` against arm ``b``: differences, their intervals and p-values."""

    absolute: float | None
    absolute_ci: Interval | None
    relative: float | None
    relative_ci: Interval | None
    p_value: float | None
    revenue_diff: float | None
    revenue_diff_ci: Interval | None
    revenue_p_value: float | None


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(low: float, high: float) -> Interval | None:
    lo, hi = _finite(low), _finite(high)
    return None if lo is None or hi is None else (lo, hi)


def arm_stats(recipients: int, revenues: Sequence[float], conversions: int) -> ArmStats:
    """``revenues``: the attributed revenue of each converter (one value per converter)."""
    converters = len(revenues)
    if converters > recipients:
        raise ValueError(f"{converters} converters among {recipients} recipients")
    total = float(sum(revenues))
    if recipients == 0:
        return ArmStats(0, 0, conversions, total, None, None, None)
    low, high = proportion_confint(converters, recipients, alpha=ALPHA, method="wilson")
    return ArmStats(
        recipients=recipients,
        converters=converters,
        conversions=conversions,
        revenue=total,
        rate=converters / recipients,
        rate_ci=_interval(low, high),
        revenue_per_recipient=total / recipients,
    )


class Step(msgspec.Struct, frozen=True):
    """A funnel step: sent decisions that reached it, their share of sent and its interval."""

    count: int
    rate: float | None
    rate_ci: Interval | None


def funnel_step(count: int, sent: int) -> Step:
    if count > sent:
        raise ValueError(f"{count} of {sent} sent decisions")
    if sent == 0:
        return Step(count, None, None)
    low, high = proportion_confint(count, sent, alpha=ALPHA, method="wilson")
    return Step(count, count / sent, _interval(low, high))


class CostReturn(msgspec.Struct, frozen=True):
    """What the sent decisions cost and the incremental revenue they brought, per unit."""

    cost: float | None  # sent x the channel's cost; None: not known (no rules, unknown channel)
    incremental_revenue: float | None  # revenue per recipient T - H, x recipients T
    incremental_revenue_ci: Interval | None
    per_cost: float | None  # incremental revenue / cost
    per_cost_ci: Interval | None


def cost_return(cost: float | None, uplift: Uplift | None, recipients: int) -> CostReturn:
    """``uplift``: treatment against the holdout of the same channel; ``recipients``: the
    treatment's."""
    gain = gain_ci = None
    if uplift is not None and uplift.revenue_diff is not None:
        gain = uplift.revenue_diff * recipients
        ci = uplift.revenue_diff_ci
        gain_ci = None if ci is None else (ci[0] * recipients, ci[1] * recipients)
    if gain is None or cost is None or cost <= 0:
        return CostReturn(cost, gain, gain_ci, None, None)
    per_ci = None if gain_ci is None else (gain_ci[0] / cost, gain_ci[1] / cost)
    return CostReturn(cost, gain, gain_ci, gain / cost, per_ci)


def size_warnings(a: ArmStats, b: ArmStats, names: tuple[str, str]) -> list[str]:
    """The small-group rule: < MIN_RECIPIENTS recipients or < MIN_CONVERTERS converters."""
    out = []
    for arm, name in zip((a, b), names, strict=True):
        if arm.recipients < MIN_RECIPIENTS:
            out.append(f"{name}: {arm.recipients} recipients (< {MIN_RECIPIENTS})")
        if arm.converters < MIN_CONVERTERS:
            out.append(f"{name}: {arm.converters} converters (< {MIN_CONVERTERS})")
    return out


def _per_recipient(revenues: Sequence[float], recipients: int) -> np.ndarray:
    values = np.zeros(recipients, dtype=float)
    values[: len(revenues)] = revenues
    return values


def compare_arms(
    a: ArmStats,
    a_revenues: Sequence[float],
    b: ArmStats,
    b_revenues: Sequence[float],
) -> Uplift | None:
    """Arm ``a`` minus arm ``b`` (revenues as for :func:`arm_stats`); None if an arm is empty."""
    if a.recipients == 0 or b.recipients == 0:
        return None
    xa, na, xb, nb = a.converters, a.recipients, b.converters, b.recipients
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        diff_low, diff_high = confint_proportions_2indep(
            xa, na, xb, nb, compare="diff", method="newcomb", alpha=ALPHA
        )
        test = test_proportions_2indep(
            xa, na, xb, nb, compare="diff", method="score", correction=False
        )
        relative = relative_ci = None
        if xb > 0:
            ratio_low, ratio_high = confint_proportions_2indep(
                xa, na, xb, nb, compare="ratio", method="log-adjusted", alpha=ALPHA
            )
            relative = (xa / na) / (xb / nb) - 1
            relative_ci = _interval(ratio_low - 1, ratio_high - 1)
        welch = stats.ttest_ind(
            _per_recipient(a_revenues, na), _per_recipient(b_revenues, nb), equal_var=False
        )
        revenue_ci = welch.confidence_interval(confidence_level=1 - ALPHA)
    return Uplift(
        absolute=xa / na - xb / nb,
        absolute_ci=_interval(diff_low, diff_high),
        relative=relative,
        relative_ci=relative_ci,
        p_value=_finite(test.pvalue),
        revenue_diff=(a.revenue / na) - (b.revenue / nb),
        revenue_diff_ci=_interval(revenue_ci.low, revenue_ci.high),
        revenue_p_value=_finite(welch.pvalue),
    )
