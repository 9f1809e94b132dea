"""The head-end's settings: where meter data goes, who may command meters, and the safeguards."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gridloom.catalog.messages import DeclaredType
from gridloom.errors import HeadEndConfigError


@dataclass(frozen=True)
class EventSubscription:
    """Who gets meter events besides the MDMS: an instance (``to``) or every instance of a role (``group``).

    ``kinds`` limits the events to some MeterEventKind names (e.g. LAST_GASP, POWER_RESTORE for
    an OMS); ``None`` sends them all. The catalog must let the head-end send ``meter_events`` on
    ``interface`` to the subscriber's role; the head-end checks that when it attaches.
    """

    interface: str = "AMI-11"
    to: str | None = None
    group: str | None = "oms"
    kinds: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if (self.to is None) == (self.group is None):
            raise HeadEndConfigError("EventSubscription needs exactly one of to= (an instance) or group= (a role)")
        if self.kinds is not None:
            object.__setattr__(self, "kinds", frozenset(self.kinds))


@dataclass(frozen=True)
class HeadEndConfig:
    """Settings of one head-end. Defaults are conservative; a utility tunes them to its fleet.

    Safeguards on remote connect/disconnect (in the order they are checked):

    - ``command_roles`` / ``command_instances``: who may command meters at this head-end, on top
      of the fabric's per-interface role check (CIS on DGM-19, MDMS on DGM-29);
    - ``max_meters_per_request``: a hard upper bound on one request;
    - ``approval_threshold_meters``: a request naming *more* meters than this needs a second,
      distinct approver: the same command (same request id, action and meters) from another
      identity within ``approval_window_s``;
    - ``disconnect_cap_per_hour``: disconnects over any sliding hour, counted per meter commanded;
      a request that would go over it is refused whole, whoever sends it. ``connect_cap_per_hour``
      does the same for connects when set (cold-load pickup).
    """

    mdms: str | None = None  # the MDMS instance; None sends to every instance of role mdms
    reads_interface: str = "AMI-10"  # or "DGM-29" (interval reads only)
    forward_events_to_mdms: bool = True
    event_subscriptions: tuple[EventSubscription, ...] = ()
    command_roles: frozenset[str] = field(default_factory=lambda: frozenset({"cis", "mdms"}))
    command_instances: frozenset[str] | None = None
    max_meters_per_request: int = 5_000
    approval_threshold_meters: int = 50
    approval_window_s: float = 900.0
    disconnect_cap_per_hour: int = 500
    connect_cap_per_hour: int | None = None
    max_on_demand_meters: int = 500
    on_demand_timeout_s: float = 30.0
    command_timeout_s: float = 120.0
    sweep_interval_s: float | None = 1.0  # how often (wall seconds) overdue requests are failed; None: never

    def __post_init__(self) -> None:
        object.__setattr__(self, "command_roles", frozenset(self.command_roles))
        object.__setattr__(self, "event_subscriptions", tuple(self.event_subscriptions))
        if self.command_instances is not None:
            object.__setattr__(self, "command_instances", frozenset(self.command_instances))
        if self.reads_interface not in ("AMI-10", "DGM-29"):
            raise HeadEndConfigError(
                f"HeadEndConfig.reads_interface must be AMI-10 or DGM-29, got {self.reads_interface!r}"
            )
        for name in ("max_meters_per_request", "max_on_demand_meters", "disconnect_cap_per_hour"):
            _positive_int(self, name)
        if self.connect_cap_per_hour is not None:
            _positive_int(self, "connect_cap_per_hour")
        if not isinstance(self.approval_threshold_meters, int) or self.approval_threshold_meters < 0:
            raise HeadEndConfigError(
                "HeadEndConfig.approval_threshold_meters must be an integer >= 0, "
                f"got {self.approval_threshold_meters!r}"
            )
        for name in ("approval_window_s", "on_demand_timeout_s", "command_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise HeadEndConfigError(f"HeadEndConfig.{name} must be a positive number of seconds, got {value!r}")
        if self.sweep_interval_s is not None and not self.sweep_interval_s > 0:
            raise HeadEndConfigError(
                f"HeadEndConfig.sweep_interval_s must be > 0 or None, got {self.sweep_interval_s!r}"
            )

    def cap_per_hour(self, action: DeclaredType) -> int | None:
        """The hourly cap on meters switched by ``action`` (None: no cap)."""
        if action is DeclaredType.REMOTE_DISCONNECT:
            return self.disconnect_cap_per_hour
        return self.connect_cap_per_hour


def _positive_int(config: HeadEndConfig, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise HeadEndConfigError(f"HeadEndConfig.{name} must be a positive integer, got {value!r}")
