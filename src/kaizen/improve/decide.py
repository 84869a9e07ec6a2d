"""The adoption rule, in one place: a candidate replaces the incumbent only on evidence.

At full length, on the same seeds (at least MIN_SEEDS), the paired gain in validation accuracy must have a
95% interval above zero after Holm's correction over the candidates confirmed in the round. Which candidates
reach confirmation is decided by short races on a seed of their own, which no confirmation run uses: the pick
is independent of the confirmation's seed-to-seed noise, so the candidates raced but not confirmed are not
hypotheses of the confirmation and are not counted (counting them as p = 1, as an earlier version did, made a
gain of a point unprovable on three seeds among five candidates: the interval's t-quantile grows from 4.3 to
9.9). A confirmation may look twice: at the first seeds and, when the gain is positive but not yet proven and
the budget pays, again with more seeds; the first look then uses half the error (a 97.5% interval) and the
second the rest, computed from the two looks' joint law (`second_look_error`: 97.0% for 3 then 5 seeds, where
Bonferroni over the looks would spend 97.5% and leave part of the 5% unused), so the two looks together keep
a false adoption at or below 5%. The number of looks is fixed before
the confirmation's first run, from the budget alone: when it cannot pay for the second look's seeds, the one look
uses the whole 5% (a 95% interval) rather than half of it for a look that cannot happen. Validation accuracy
moves in steps of one example, so seeds whose gains agree exactly are taken to spread by half a step, not zero.
The paired test and the Holm adjustment are study.stats'.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from kaizen.study import stats

MIN_SEEDS = 3
CONFIDENCE = 0.95
# The second look's level is computed by simulating the two looks' t-statistics under no gain: this many draws,
# from a fixed seed (the same level every time), less three of the simulation's standard errors (never above 5%).
LOOK_DRAWS = 400_000


@dataclass(frozen=True)
class Decision:
    """Whether to adopt, the gain (candidate - incumbent) with its raw and Holm-level intervals, and why."""

    adopt: bool
    gain: float
    interval: tuple[float, float]
    holm_interval: tuple[float, float]
    p_value: float
    p_holm: float
    comparisons: int
    seeds: int
    reason: str
    looks: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "adopt": self.adopt,
            "gain": _num(self.gain),
            "interval95": [_num(v) for v in self.interval],
            "holm_interval": [_num(v) for v in self.holm_interval],
            "p_value": _num(self.p_value),
            "p_holm": _num(self.p_holm),
            "comparisons": self.comparisons,
            "seeds": self.seeds,
            "looks": self.looks,
            "reason": self.reason,
        }


def _num(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


MAX_SEEDS_SHOWN = 30  # beyond this many seeds the advice is "more than 30"


def seeds_to_prove(gain: float, spread: float, comparisons: int = 1) -> int | None:
    """The fewest seeds whose one-look interval (Holm over `comparisons`) would exclude zero if the gain and the
    standard deviation of the per-seed gains stayed as measured: an estimate from few seeds, for the user to act
    on (more seeds, or a larger validation split, which narrows the spread). None when the gain is not positive or
    the spread is zero; MAX_SEEDS_SHOWN + 1 when more would be needed."""
    if not gain > 0 or not spread > 0:
        return None
    alpha = (1 - CONFIDENCE) / max(1, comparisons)
    for n in range(MIN_SEEDS, MAX_SEEDS_SHOWN + 1):
        if float(scipy_stats.t.ppf(1 - alpha / 2, n - 1)) * spread / math.sqrt(n) < gain:
            return n
    return MAX_SEEDS_SHOWN + 1


@functools.lru_cache(maxsize=64)
def second_look_error(first: int, seeds: int, error: float) -> float:
    """The two-sided error of the second look's interval, on `seeds` seeds of which the first look judged `first`
    at error / 2, such that the two looks together adopt a candidate with no gain with probability `error`.

    Bonferroni (error / 2 at each look) ignores that the second look reuses the first look's seeds: the two
    t-statistics are correlated, so a second look at error / 2 leaves part of the error unspent. Under no gain and
    normal per-seed gains (the paired t-test's own model) the pair of statistics does not depend on the unknown
    spread, so their joint law is simulated once with unit spread; the second look's critical value is the one at
    which the draws the first look did not adopt cross it `error / 2` of the time (less three simulation standard
    errors, so the level stays at or below `error`). For 3 then 5 seeds at 5% that is 3.0% instead of 2.5%: the
    critical value falls from 3.50 to 3.31, and the interval is 5% narrower at no cost to the first look."""
    rng = np.random.default_rng(0)
    gains = rng.standard_normal((LOOK_DRAWS, seeds))

    def t(values: np.ndarray) -> np.ndarray:
        return np.abs(values.mean(1)) / (values.std(1, ddof=1) / math.sqrt(values.shape[1]))

    first_critical = float(scipy_stats.t.ppf(1 - error / 4, first - 1))
    left = t(gains)[t(gains[:, :first]) <= first_critical]
    spent = (LOOK_DRAWS - left.size) / LOOK_DRAWS
    rest = error - spent - 3 * math.sqrt(error * (1 - error) / LOOK_DRAWS)
    critical = float(np.sort(left)[::-1][int(rest * LOOK_DRAWS)])
    return max(error / 2, float(2 * scipy_stats.t.sf(critical, seeds - 1)))


def decide(
    incumbent: dict[int, float],
    candidate: dict[int, float],
    comparisons: int,
    looks: int = 1,
    unit: float = 0.0,
    first: int = 0,
) -> Decision:
    """Judge `candidate` against `incumbent` (validation accuracy by seed) among `comparisons` candidates, at one
    of `looks` looks at the same comparison (more seeds each time). With two looks the first spends half the 5%
    error and the second, on more seeds of which the first look judged `first`, the rest of it
    (`second_look_error`), so looking again with more seeds cannot raise the chance of a false adoption above 5%.

    `unit` is what one validation example is worth (1 / the validation split's size). The per-seed gains move in
    steps of it, so seeds that agree exactly say only that they agree within one example: their spread is taken
    as at least half a unit. Without this floor, three seeds that each gained one of 32 validation photos had a
    spread of zero and an interval [+3.12, +3.12], and were adopted."""
    seeds = sorted(set(incumbent) & set(candidate))
    comparisons = max(1, comparisons)
    if len(seeds) < MIN_SEEDS:
        return Decision(
            False,
            math.nan,
            (math.nan, math.nan),
            (math.nan, math.nan),
            math.nan,
            math.nan,
            comparisons,
            len(seeds),
            f"only {len(seeds)} paired seed(s); adoption needs {MIN_SEEDS}",
        )
    base = {seed: incumbent[seed] for seed in seeds}
    challenger = {seed: candidate[seed] for seed in seeds}
    difference = stats.difference(base, challenger)
    differences = [challenger[seed] - base[seed] for seed in seeds]
    deviation = statistics.stdev(differences)
    floored = deviation < unit / 2
    deviation = max(deviation, unit / 2)
    spread = deviation / math.sqrt(len(seeds))
    df = len(seeds) - 1
    raw = (difference.ci_low, difference.ci_high)
    p_value = difference.p_value if math.isfinite(difference.p_value) else 1.0
    if floored:  # the paired t-test again, on the floored spread
        p_value = float(2 * scipy_stats.t.sf(abs(difference.diff) / spread, df))
        raw = stats.t_interval(difference.diff, spread, df)
    looks = max(1, looks)
    # This look's share of Holm's level for the smallest p-value (1 - CONFIDENCE) / comparisons: all of it with one
    # look, half at a first look, the rest (at least half) at a second one.
    family = (1 - CONFIDENCE) / comparisons
    alpha = family / looks
    if looks == 2 and MIN_SEEDS <= first < len(seeds):
        alpha = second_look_error(first, len(seeds), family)
    p_holm = min(1.0, family / alpha * stats.adjust([p_value] + [1.0] * (comparisons - 1), "holm")[0])
    half = float(scipy_stats.t.ppf(1 - alpha / 2, df)) * spread
    holm_interval = (difference.diff - half, difference.diff + half)
    adopt = difference.diff > 0 and holm_interval[0] > 0
    shown = f"{100 * difference.diff:+.2f} points, Holm-level interval [{100 * holm_interval[0]:+.2f}, {100 * holm_interval[1]:+.2f}]"
    level = f"{100 * (1 - alpha):.1f}%"
    after = f"after Holm over {comparisons} candidate(s)"
    if looks > 1:
        after += f" and {looks} looks ({level} at this one)"
    if floored:
        after += (
            f"; the seeds' gains agreed within one of {round(1 / unit)} validation examples, so their spread is "
            "taken as half of one"
        )
    if adopt:
        reason = f"adopted: paired gain {shown} over {len(seeds)} seeds, above zero {after}"
    elif difference.diff > 0:
        reason = f"not adopted: gain {shown} over {len(seeds)} seeds includes zero {after}; no reliable improvement"
        needed = seeds_to_prove(difference.diff, deviation, comparisons)
        if needed is not None:
            reason += (
                f"; at this seed-to-seed spread about {needed} seeds in one look would prove it (--seeds {needed})"
                if needed <= MAX_SEEDS_SHOWN
                else f"; at this seed-to-seed spread more than {MAX_SEEDS_SHOWN} seeds would be needed to prove it"
            )
    else:
        reason = f"not adopted: no gain ({shown}) over {len(seeds)} seeds"
    return Decision(
        adopt,
        difference.diff,
        raw,
        holm_interval,
        p_value,
        p_holm,
        comparisons,
        len(seeds),
        reason,
        looks,
    )
