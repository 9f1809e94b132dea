"""The GIS: the distribution network's connectivity model, served to the OMS (AMI-14) and the DMS (DGM-21).

- :class:`ConnectivityPayload` — the model as columns (devices, meters, normal and current states) and
  :func:`connectivity_payload` / :func:`territory_payload` to build it from the grid model (:mod:`.model`);
- :class:`GisActor` — the actor on the fabric (:mod:`.service`);
- the message bodies (:mod:`.wire`), whose keys are the ``fields`` of ``catalog/data/messages.yaml``.
"""

from gridloom.systems.gis.model import ConnectivityPayload, connectivity_payload, device_row, territory_payload
from gridloom.systems.gis.service import GisActor, GisStats
from gridloom.systems.gis.wire import ConnectivityColumns, ConnectivityRequest, ConnectivityResponse

__all__ = [
    "ConnectivityColumns",
    "ConnectivityPayload",
    "ConnectivityRequest",
    "ConnectivityResponse",
    "GisActor",
    "GisStats",
    "connectivity_payload",
    "device_row",
    "territory_payload",
]
