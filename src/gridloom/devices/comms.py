"""The AMI communication model: what a meter's message goes through on its way to the head-end.

Two hops, as in a real AMI network (NIST DGM interface between the AMI head-end and meters):
a narrowband mesh (RF or PLC) from meters to their data concentrator, then a backhaul (WAN)
from the concentrator to the head-end.

- **Interval reads** are lost per read on the mesh (``read_loss_probability``, what is left
  after the meter's own retries) and per batch on the backhaul (``batch_loss_probability``);
  a read batch waits a backhaul delay drawn per batch (``read_delay_s``, lognormal by default).
- **Events** travel on their own path, so an outage report never waits behind reads: the
  concentrator gathers events for ``event_window_s`` and forwards them at once, with their own
  delay (``event_delay_s``) and losses (``event_loss_probability`` per event, backhaul loss per
  batch).
- **Last gasps** are lost far more often than other messages. A dying meter has one attempt on
  its stored energy, and a mesh relays through neighbouring meters that are just as dead in a
  wide outage. So a last gasp is lost with ``last_gasp_loss_probability`` plus
  ``last_gasp_mesh_dependency`` times the share of the remaining probability, scaled by the
  share of its concentrator's meters without supply (see :func:`last_gasp_loss`).

Every draw comes from the generator passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gridloom.devices.distributions import Distribution
from gridloom.errors import DeviceConfigError, DeviceInputError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CommConfig:
    """Losses and delays of the AMI network. Probabilities are per message unless named per batch."""

    concentrator_size: int = 500  # meters per concentrator
    read_loss_probability: float = 0.02  # per interval read, meter to concentrator
    batch_loss_probability: float = 0.002  # per concentrator batch on the backhaul (reads and events)
    event_loss_probability: float = 0.01  # per event other than a last gasp
    last_gasp_loss_probability: float = 0.25  # per last gasp when the neighbourhood still has supply
    last_gasp_mesh_dependency: float = 0.6  # how much of the rest is lost when every neighbour is dead too
    read_delay_s: Distribution = field(default_factory=lambda: Distribution.lognormal(20.0, 0.8))
    event_delay_s: Distribution = field(default_factory=lambda: Distribution.lognormal(2.0, 0.7))
    event_window_s: float = 2.0  # the concentrator gathers events this long before forwarding them

    def __post_init__(self) -> None:
        if not isinstance(self.concentrator_size, int) or self.concentrator_size <= 0:
            raise DeviceConfigError(
                f"CommConfig.concentrator_size must be a positive integer, got {self.concentrator_size!r}"
            )
        for name in (
            "read_loss_probability",
            "batch_loss_probability",
            "event_loss_probability",
            "last_gasp_loss_probability",
            "last_gasp_mesh_dependency",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise DeviceConfigError(f"CommConfig.{name} must be within [0, 1], got {value!r}")
        if not (math.isfinite(self.event_window_s) and self.event_window_s >= 0):
            raise DeviceConfigError(f"CommConfig.event_window_s must be >= 0, got {self.event_window_s!r}")
        for name in ("read_delay_s", "event_delay_s"):
            if getattr(self, name).minimum() < 0:
                raise DeviceConfigError(f"CommConfig.{name} must not draw negative delays")


def last_gasp_loss(config: CommConfig, dead_share: FloatArray | float) -> FloatArray:
    """Loss probability of a last gasp whose concentrator has ``dead_share`` (0..1) of its meters dead."""
    base = config.last_gasp_loss_probability
    share = np.clip(np.asarray(dead_share, dtype=np.float64), 0.0, 1.0)
    return np.asarray(base + (1.0 - base) * config.last_gasp_mesh_dependency * share, dtype=np.float64)


def survivors(rng: np.random.Generator, loss_probability: float | FloatArray, size: int) -> BoolArray:
    """Which of ``size`` messages get through, each lost independently with ``loss_probability``.

    With one probability for all, draws the number lost and then which ones (a binomial count
    and a uniform subset are the same as independent draws), so a million reads with 2 % loss
    need 20,000 random numbers, not a million.
    """
    if np.ndim(loss_probability) == 0:
        p = float(loss_probability)
        kept = np.ones(size, dtype=bool)
        if p <= 0.0 or size == 0:
            return kept
        if p >= 1.0:
            return np.zeros(size, dtype=bool)
        lost = int(rng.binomial(size, p))
        kept[rng.choice(size, size=lost, replace=False)] = False
        return kept
    p_each = np.asarray(loss_probability, dtype=np.float64)
    if p_each.shape != (size,):
        raise DeviceInputError(f"loss_probability must be a scalar or have shape ({size},), got {p_each.shape}")
    return np.asarray(rng.random(size) >= p_each, dtype=bool)
