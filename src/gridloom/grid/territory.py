"""Service territories of any size, built from SimBench districts.

A territory of N customers is R = ceil(N / n) replicas of one district of n customers:
each replica is a substation with its own feeders, electrically independent of the
others, so the physics of every feeder is the district's own. In the last replica only
the customers needed to reach N are connected; the others are vacant premises (no load,
no meter). Replicas are the batch dimension of the power flow (scenario = step * R + r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from gridloom.errors import GridError
from gridloom.grid.model import District

MIN_CUSTOMERS = 1
MAX_CUSTOMERS = 2_000_000


@dataclass(frozen=True)
class Territory:
    district: District
    replicas: int
    customers: int

    @cached_property
    def active(self) -> npt.NDArray[np.bool_]:
        """(replicas, district customers): True where a premise has a connected customer."""
        flat = np.arange(self.replicas * self.district.n_customers) < self.customers
        return flat.reshape(self.replicas, self.district.n_customers)

    @cached_property
    def customer_index(self) -> npt.NDArray[np.intp]:
        """Global index (replica * n + local) of each connected customer, in order."""
        return np.arange(self.customers, dtype=np.intp)

    def replica_of(self, customer: npt.ArrayLike) -> npt.NDArray[np.intp]:
        return np.asarray(customer, dtype=np.intp) // self.district.n_customers

    def local_of(self, customer: npt.ArrayLike) -> npt.NDArray[np.intp]:
        return np.asarray(customer, dtype=np.intp) % self.district.n_customers

    def meter_ids(self) -> npt.NDArray[np.str_]:
        """Stable meter ids: substation (replica) and the district's load row, e.g. ``s003-m01234``."""
        replica = self.replica_of(self.customer_index)
        local = self.local_of(self.customer_index)
        return np.char.add(
            np.char.add("s", np.char.zfill(replica.astype(str), 3)),
            np.char.add("-m", np.char.zfill(local.astype(str), 5)),
        )


def build_territory(district: District, customers: int) -> Territory:
    """A territory of exactly ``customers`` customers made of replicas of ``district``."""
    if not MIN_CUSTOMERS <= customers <= MAX_CUSTOMERS:
        raise GridError(f"a territory has {MIN_CUSTOMERS:,} to {MAX_CUSTOMERS:,} customers, not {customers:,}")
    replicas = math.ceil(customers / district.n_customers)
    return Territory(district=district, replicas=replicas, customers=customers)
