"""Configurable random distributions for device fleets (clock drift, delays, meter errors).

A :class:`Distribution` is a small frozen value, so it can sit in a frozen config and be
compared, printed and written to a scenario file; it draws with the generator it is given,
never a global one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from gridloom.errors import DeviceConfigError

FloatArray = npt.NDArray[np.float64]


class DistributionKind(StrEnum):
    CONSTANT = "constant"  # a = the value
    NORMAL = "normal"  # a = mean, b = standard deviation
    UNIFORM = "uniform"  # a = low, b = high
    LOGNORMAL = "lognormal"  # a = median (> 0), b = sigma of the underlying normal
    LAPLACE = "laplace"  # a = mean, b = scale (heavier tails than normal: a few bad crystals)


@dataclass(frozen=True)
class Distribution:
    """A distribution of one float; build it with the class methods (``Distribution.lognormal(2.0, 0.8)``)."""

    kind: DistributionKind
    a: float
    b: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DistributionKind(self.kind))
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise DeviceConfigError(f"{self.kind} distribution: parameters must be finite, got {self.a}, {self.b}")
        if self.kind in (DistributionKind.NORMAL, DistributionKind.LOGNORMAL, DistributionKind.LAPLACE) and self.b < 0:
            raise DeviceConfigError(f"{self.kind} distribution: spread must be >= 0, got {self.b}")
        if self.kind is DistributionKind.UNIFORM and self.b < self.a:
            raise DeviceConfigError(f"uniform distribution: high {self.b} < low {self.a}")
        if self.kind is DistributionKind.LOGNORMAL and self.a <= 0:
            raise DeviceConfigError(f"lognormal distribution: median must be > 0, got {self.a}")

    @classmethod
    def constant(cls, value: float) -> Distribution:
        return cls(DistributionKind.CONSTANT, value)

    @classmethod
    def normal(cls, mean: float, sigma: float) -> Distribution:
        return cls(DistributionKind.NORMAL, mean, sigma)

    @classmethod
    def uniform(cls, low: float, high: float) -> Distribution:
        return cls(DistributionKind.UNIFORM, low, high)

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Distribution:
        return cls(DistributionKind.LOGNORMAL, median, sigma)

    @classmethod
    def laplace(cls, mean: float, scale: float) -> Distribution:
        return cls(DistributionKind.LAPLACE, mean, scale)

    @property
    def is_constant(self) -> bool:
        """True when every draw gives the same value (no random numbers are consumed)."""
        return self.kind is DistributionKind.CONSTANT or (self.kind is not DistributionKind.UNIFORM and self.b == 0)

    def minimum(self) -> float:
        """The smallest value a draw can take (-inf for unbounded distributions)."""
        if self.is_constant:
            return self.a
        if self.kind is DistributionKind.UNIFORM:
            return self.a
        if self.kind is DistributionKind.LOGNORMAL:
            return 0.0
        return -math.inf

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """``size`` independent draws. A constant (or zero-spread) distribution consumes no random numbers."""
        if self.is_constant:
            return np.full(size, self.a, dtype=np.float64)
        match self.kind:
            case DistributionKind.NORMAL:
                return rng.normal(self.a, self.b, size)
            case DistributionKind.UNIFORM:
                return rng.uniform(self.a, self.b, size)
            case DistributionKind.LOGNORMAL:
                return rng.lognormal(math.log(self.a), self.b, size)
            case DistributionKind.LAPLACE:
                return rng.laplace(self.a, self.b, size)
        raise DeviceConfigError(f"unknown distribution kind {self.kind!r}")  # pragma: no cover
