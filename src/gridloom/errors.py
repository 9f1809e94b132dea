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
    ├── AuditError
    │   └── AuditTampered           the audit log's hash chain is broken
    ├── StoreError                  the meter data store (DuckDB file or PostgreSQL)
    │   ├── StoreUnavailable        the store cannot be opened or reached (bad URL, server down, file locked)
    │   ├── StoreInputError         a table handed to the store lacks a column or has bad values; names column, row
    │   │   └── ImportRejected      a file for `mdms import` is malformed; names the line (or row) and field
    │   ├── StoreConflict           another writer held or changed the same rows; nothing was stored, retry
    │   └── UnknownTable            no store table with that name (carries close matches)
    ├── HeadEndError                the AMI head-end and the meter network behind it
    │   ├── HeadEndConfigError      a head-end or meter-network setting is invalid; names the field
    │   └── MalformedBody           a batch or request body lacks a field, has a wrong type or uneven columns
    ├── VeeError                    meter-data validation, estimation and editing (MDMS)
    │   ├── VeeConfigError          a VEE threshold is invalid; names the field
    │   ├── VeeInputError           a reads / registers / events table lacks a column or has bad values; names it
    │   └── EditRefused             an edit without a stored read, a reason code or a known column; names them
    ├── CisError
    │   ├── CisDataError            CIS data is inconsistent (dangling id, overlapping occupancy); names the ids
    │   ├── UnknownCisRecord        no account / premise / customer / meter / tariff with that id (close matches)
    │   └── MoveConflict            a move-in on an occupied premise, a move-out before the move-in or twice
    ├── BillingError
    │   ├── BillingInputError       a cycle, event window or price series that is malformed; names the field
    │   ├── NoUsageData             no reads in the cycle for the accounts asked for (names the cycle, accounts)
    │   ├── MissingPrices           the real-time price series lacks hours that carry usage; names them
    │   └── BillExists              the account already has a bill for the cycle (re-bill to replace it)
    ├── OmsError                    outage management (OMS) and the GIS connectivity model it runs on
    │   ├── OmsConfigError          an OMS or GIS setting is invalid; names the field
    │   ├── ConnectivityDataError   a connectivity model (GIS payload) is malformed; names the column, row or id
    │   └── OutageRecordsError      a saved outage-records file cannot be read, or a report period is malformed
    ├── ScenarioError               a scenario is malformed or asks for what is not built yet; names file, line, field
    ├── DemandResponseError         the LMS/DRMS, customer-side response, settlement, aggregator and market
    │   ├── DrConfigError           a program, enrolment or LMS setting is invalid; names the field or id
    │   ├── DrInputError            a load-management requirement, signal or bid is malformed; names the field
    │   ├── BaselineInputError      reads or events for baselines/settlement unusable; names the column, event
    │   └── MarketError             the clearinghouse refused a bid or cannot clear; names the bid or interval
    └── ProtocolError               a standard protocol's document cannot be made or read (Green Button, ...)
        ├── ProtocolInputError      reads or options handed to an exporter are malformed; names field, meter, time
        ├── NothingToExport         no interval reads for the meters and period asked for; names them
        ├── MalformedDocument       a received document is not well-formed, unsafe (DTD, entities) or off-standard
        └── OpenAdrError            OpenADR 2.0b: a VTN or VEN cannot start, or a peer was refused
            ├── OpenAdrConfigError  TLS or identity settings missing or wrong (a VTN never runs without TLS)
            └── OpenAdrRefused      a message or peer refused (certificate, signature, replay, target); carries the code

Errors that name a thing the user typed carry close matches, so the CLI can say
"did you mean". A :class:`Rejected` carries the interface it was sent on, so rejections
can be counted per interface.
"""

from __future__ import annotations

from collections.abc import Sequence


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


class StoreError(GridloomError):
    """Something about the meter data store (interval reads, register reads, meter events)."""


class StoreUnavailable(StoreError):
    """The store cannot be opened or reached: an unsupported URL, a server that does not answer,
    a DuckDB file locked by another process, or a store written by a newer gridloom."""


class StoreInputError(StoreError):
    """A table handed to the store lacks a required column, has an unknown one, or holds values the
    store refuses (null keys, naive timestamps, non-finite numbers); names the column and the row."""


class ImportRejected(StoreInputError):
    """A file given to ``gridloom mdms import`` is malformed; nothing of it was stored.

    ``line`` is the CSV line (1 = the header), ``row`` the 1-based Parquet row, ``field`` the column;
    each is None when the problem is not tied to one.
    """

    def __init__(
        self,
        path: str,
        message: str,
        *,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.row = row
        self.field = field
        where = [f"line {line}"] if line is not None else [f"row {row}"] if row is not None else []
        where += [f"field {field}"] if field is not None else []
        super().__init__(": ".join([path, *([", ".join(where)] if where else []), message]))


class StoreConflict(StoreError):
    """Another writer held or changed the same rows at the same time; nothing was stored: retry."""


class UnknownTable(StoreError):
    """No store table with that name; ``suggestions`` holds close names."""

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown store table {name!r}{hint}")


class HeadEndError(GridloomError):
    """Something about the AMI head-end or the meter network it talks to."""


class HeadEndConfigError(HeadEndError):
    """A head-end or meter-network setting is invalid, or names an interface or role the catalog
    does not allow; the message names the field."""


class MalformedBody(HeadEndError):
    """A message body the head-end cannot use: a field is missing or mistyped, or a batch's columns
    differ in length. The message names the field."""


class VeeError(GridloomError):
    """Something about validating, estimating or editing meter data (the MDMS's VEE)."""


class VeeConfigError(VeeError):
    """A VEE threshold is invalid; the message names the field."""


class VeeInputError(VeeError):
    """A table handed to VEE lacks a column or holds values VEE cannot use; names the table and column."""


class EditRefused(VeeError):
    """A manual edit that cannot be made: no stored read there, no reason code, an unknown column."""


class CisError(GridloomError):
    """Something about the customer information system: customers, accounts, premises, meters, tariffs."""


class CisDataError(CisError):
    """CIS data is inconsistent: a dangling reference, a meter on two premises at once, a bad tariff; names the ids."""


class UnknownCisRecord(CisError):
    """No record of that kind with that id; ``suggestions`` holds close ids."""

    def __init__(self, noun: str, name: str, suggestions: list[str] | None = None) -> None:
        self.noun = noun
        self.name = name
        self.suggestions = suggestions or []
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {noun} {name!r}{hint}")


class MoveConflict(CisError):
    """A move-in on a premise still occupied, a move-out before the move-in, or a second move-out."""


class BillingError(GridloomError):
    """Something about rating usage and issuing bills."""


class BillingInputError(BillingError):
    """A billing cycle, event window or price series is malformed; the message names the field."""


class NoUsageData(BillingError):
    """There are no interval reads in the cycle for the accounts asked for."""

    def __init__(self, cycle: str, *, accounts: list[str] | None = None) -> None:
        self.cycle = cycle
        self.accounts = accounts or []
        shown = ", ".join(self.accounts[:5]) + (f" and {len(self.accounts) - 5} more" if len(self.accounts) > 5 else "")
        who = f" for account(s) {shown}" if self.accounts else ""
        super().__init__(f"no interval reads in cycle {cycle}{who}: nothing to bill")


class MissingPrices(BillingError):
    """The real-time price series has no price for hours that carry usage; ``hours`` holds them (UTC)."""

    def __init__(self, message: str, *, hours: list[str] | None = None) -> None:
        self.hours = hours or []
        super().__init__(message)


class BillExists(BillingError):
    """The account already has an issued bill for the cycle; ``accounts`` holds them."""

    def __init__(self, cycle: str, accounts: list[str]) -> None:
        self.cycle = cycle
        self.accounts = accounts
        shown = ", ".join(accounts[:5]) + (f" and {len(accounts) - 5} more" if len(accounts) > 5 else "")
        super().__init__(f"cycle {cycle} is already billed for {shown}; re-bill to cancel and replace those bills")


class OmsError(GridloomError):
    """Something about outage management (OMS) or the GIS connectivity model it runs on."""


class OmsConfigError(OmsError):
    """An OMS or GIS setting is invalid; the message names the field and the accepted values."""


class ConnectivityDataError(OmsError):
    """A connectivity model (the GIS payload) is malformed: uneven columns, a parent after its child,
    an unknown device kind, a meter under no device; the message names the column, row or id."""


class OutageRecordsError(OmsError):
    """A saved outage-records file cannot be read (names the file and the entry), or a report period
    is malformed (names the option)."""


class ScenarioError(GridloomError):
    """A scenario that cannot be run: malformed YAML, a wrong value, or a system or event not built yet.

    ``source`` is the file (None for YAML text), ``line`` the 1-based line, ``field`` the dotted
    path (``timeline[1].device``), ``message`` the problem; each of the first three is None when
    not known. Several problems are reported together: ``also`` holds the others, one line each
    in the message.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
        also: Sequence[ScenarioError] = (),
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        self.also = tuple(also)
        where = [part for part in (source, f"line {line}" if line is not None else None, field) if part]
        first = f"{', '.join(where)}: {message}" if where else message
        super().__init__("\n".join([first, *(str(other) for other in self.also)]))


class ProtocolError(GridloomError):
    """Something about a standard protocol's documents (Green Button / NAESB ESPI, ...)."""


class ProtocolInputError(ProtocolError):
    """Reads or options handed to an exporter are malformed; the message names the field, meter and time."""


class NothingToExport(ProtocolError):
    """No interval reads for the meters and period asked for; ``meter_ids`` holds the meters asked for."""

    def __init__(self, message: str, *, meter_ids: list[str] | None = None) -> None:
        self.meter_ids = meter_ids or []
        super().__init__(message)


class MalformedDocument(ProtocolError):
    """A received document is not well-formed XML, uses a DTD or entities (refused: unsafe), or is off-standard."""


class DemandResponseError(GridloomError):
    """Something about demand response: the LMS/DRMS, customer response, settlement, aggregator or market."""


class DrConfigError(DemandResponseError):
    """A program, enrolment or LMS/aggregator setting is invalid; the message names the field or id."""


class DrInputError(DemandResponseError):
    """A load-management requirement, a signal or a bid is malformed; the message names the field."""


class BaselineInputError(DemandResponseError):
    """Reads or events handed to baselines or settlement are unusable; names the column or the event."""


class MarketError(DemandResponseError):
    """The clearinghouse refused a bid or cannot clear an interval; names the bid or the interval."""


class OpenAdrError(ProtocolError):
    """OpenADR 2.0b: a VTN or VEN cannot start, or a peer or message was refused."""


class OpenAdrConfigError(OpenAdrError):
    """TLS or identity settings are missing or wrong; a VTN never serves without TLS outside insecure test mode."""


class OpenAdrRefused(OpenAdrError):
    """A peer or message refused: unknown or revoked certificate, bad signature, replay, not targeted.

    ``code`` is the OpenADR response code (or HTTP status) that went on the wire, ``reason`` a short kind
    (``certificate``, ``revoked``, ``signature``, ``replay``, ``stale``, ``not-registered``).
    """

    def __init__(self, message: str, *, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{message} (code {code}, {reason})")
