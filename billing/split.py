"""Splitting an integer whole into integer parts that always add up to the whole."""

from __future__ import annotations

from typing import Sequence


def split_by_weights(whole: int, weights: Sequence[int]) -> list[int]:
    """Largest-remainder split of `whole` by non-negative integer weights.

    Each part gets floor(whole * w / sum); the units left over go one each to the parts with
    the largest remainders, the earlier part first on a tie. All weights zero -> equal split.
    Works for negative wholes too (the split of -x is the negation of the split of x).
    """
    if not weights:
        raise ValueError("nothing to split among")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    if whole < 0:
        return [-p for p in split_by_weights(-whole, weights)]
    denom = sum(weights)
    ws = weights if denom else [1] * len(weights)
    denom = denom or len(weights)
    parts = [whole * w // denom for w in ws]
    left = whole - sum(parts)
    if left:  # most splits (one non-zero weight, exact shares) end here
        remainders = [whole * w % denom for w in ws]
        for i in sorted(range(len(ws)), key=lambda i: (-remainders[i], i))[:left]:
            parts[i] += 1
    return parts
