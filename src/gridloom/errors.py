"""gridloom's exceptions, all rooted in :class:`GridloomError`.

::

    GridloomError
    ├── CatalogError
    │   ├── CatalogDataError        the catalog's YAML is malformed or inconsistent
    │   ├── UnknownInterface        no interface with that id (also a Rejected, below)
    │   ├── UnknownActor            no actor with that id or alias
    │   └── UnknownDomain           no section / domain with that name
    ├── FabricError
    │   ├── Rejected                a message the fabric refused; never reaches the receiver
    │   │   ├── MalformedEnvelope   not a gridloom frame, or a field is missing or of the wrong type
    │   │   ├── UnknownInterface    the interface id is not in the catalog
    │   │   ├── UnknownMessageType  the interface does not carry that message type
    │   │   ├── SignatureInvalid    the signature does not match the frame
    │   │   ├── CertificateInvalid  unknown signer, not issued by our CA, expired or not yet valid
    │   │   │   └── CertificateRevoked
    │   │   ├── DecryptionFailed    the payload cannot be decrypted by this receiver
    │   │   ├── ReplayDetected      a (sender, sequence) pair seen before
    │   │   ├── StaleMessage        older than the interface's freshness window (or from the future)
    │   │   └── NotAuthorised       the sender's role may not use this interface in this direction
    │   ├── PkiError                the certificate authority or a keystore is missing or unusable
    │   └── TransportError          the transport is not started or its server cannot be reached
    ├── GridError
    │   ├── UnknownNetwork          no SimBench district with that code (carries close matches)
    │   ├── NetworkDataError        a grid could not be loaded or converted to power-grid-model
    │   ├── GridInputError          an array argument has the wrong shape or non-finite values; names it
    │   ├── CalculationFailed       a power flow or state estimation did not converge; names the scenarios
    │   ├── NotObservable           the measurements do not determine the state (state estimation)
    │   ├── TopologyError           the net cannot be turned into a device tree (e.g. no external grid)
    │   └── UnknownGridDevice       no device with that id or index in the connectivity model
    ├── DeviceError
    │   ├── DeviceConfigError       a fleet or communication setting is invalid; names the field
    │   ├── DeviceInputError        an input array has the wrong shape, type or values; names the argument
    │   ├── UnknownDevice           a device index or id that is not in the fleet
    │   └── IntervalOutOfOrder      a measurement or command earlier than what the fleet already measured
    └── AuditError
        └── AuditTampered           the audit log's hash chain is broken

Errors that name a thing the user typed carry close matches, so the CLI can say
"did you mean". A :class:`Rejected` carries the interface it was sent on, so rejections
can be counted per interface.
"""

from __future__ import annotations


class GridloomError(Exception):
    """Root of every error gridloom raises on purpose."""


class CatalogError(GridloomError):
    """Something about the interface catalog."""


class CatalogDataError(CatalogError):
    """The catalog data files are malformed or inconsistent; names the file and the entry."""


class _UnknownName(CatalogError):
    noun = "name"

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {self.noun} {name!r}{hint}")


class UnknownActor(_UnknownName):
    noun = "actor"


class UnknownDomain(_UnknownName):
    noun = "domain"


class FabricError(GridloomError):
    """Something about moving messages between actors."""


class Rejected(FabricError):
    """A message the fabric refused. ``interface`` is where it claimed to travel, if known."""

    def __init__(self, message: str, *, interface: str | None = None) -> None:
        self.interface = interface
        super().__init__(f"{interface}: {message}" if interface else message)

    @property
    def kind(self) -> str:
        return type(self).__name__


class MalformedEnvelope(Rejected):
    pass


class UnknownInterface(_UnknownName, Rejected):
    """No interface with that id: a catalog lookup error, and a rejection when a message names it."""

    noun = "interface"


class UnknownMessageType(Rejected):
    pass


class SignatureInvalid(Rejected):
    pass


class CertificateInvalid(Rejected):
    pass


class CertificateRevoked(CertificateInvalid):
    pass


class DecryptionFailed(Rejected):
    pass


class ReplayDetected(Rejected):
    pass


class StaleMessage(Rejected):
    pass


class NotAuthorised(Rejected):
    pass


class PkiError(FabricError):
    """The certificate authority or a keystore is missing, damaged or unreadable."""


class TransportError(FabricError):
    """The transport is not started, or its server cannot be reached."""


class GridError(GridloomError):
    """Something about the grid model, power flow or state estimation."""


class UnknownNetwork(GridError):
    """No district with that SimBench code; ``suggestions`` holds close matches."""

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown network {name!r}{hint}")


class NetworkDataError(GridError):
    """A grid could not be loaded from SimBench or converted to power-grid-model."""


class GridInputError(GridError):
    """An array handed to the grid physics has the wrong shape or invalid values; names the argument."""


class CalculationFailed(GridError):
    """A power flow or state estimation did not converge. ``scenarios`` holds the failed scenario indices."""

    def __init__(self, message: str, *, scenarios: list[int] | None = None) -> None:
        self.scenarios = scenarios or []
        super().__init__(message)


class NotObservable(GridError):
    """State estimation: the measurements given do not determine every energised node's voltage."""


class TopologyError(GridError):
    """The network cannot be turned into a radial device tree (no external grid, unsupported layout)."""


class UnknownGridDevice(GridError):
    """No device with that id or index in a connectivity model; ``suggestions`` holds close ids."""

    def __init__(self, name: str, suggestions: list[str] | None = None, *, detail: str | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown grid device {name!r}{hint}" + (f" ({detail})" if detail else ""))


class DeviceError(GridloomError):
    """Something about a simulated device fleet (meters, concentrators, field devices)."""


class DeviceConfigError(DeviceError):
    """A fleet or communication configuration is invalid; the message names the field."""


class DeviceInputError(DeviceError):
    """An input given to a fleet has the wrong shape, type or values; the message names the argument."""


class UnknownDevice(DeviceError):
    """A device index or id that is not in the fleet."""

    def __init__(self, message: str, *, devices: list[str] | None = None) -> None:
        self.devices = devices or []
        super().__init__(message)


class IntervalOutOfOrder(DeviceError):
    """A measurement or a command dated before the end of the interval the fleet already measured."""


class AuditError(GridloomError):
    """Something about the audit log."""


class AuditTampered(AuditError):
    """The audit log's chain is broken: an entry was altered, removed, inserted or reordered."""
