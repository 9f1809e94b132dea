"""Load the catalog data and answer questions about it.

``load_catalog()`` reads every YAML file under ``data/`` once, checks that the pieces fit
together (unique ids, every actor and vocabulary term an interface names exists, every
declared message type lies on a flow of its interface) and returns a frozen :class:`Catalog`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gridloom.catalog.messages import DeclaredMessage, MessageType, load_declared_messages, message_types
from gridloom.catalog.models import (
    Actor,
    AmbiguousAlias,
    CustomerGateway,
    Domain,
    Interface,
    InterfaceStatus,
    Vocabularies,
)
from gridloom.errors import CatalogDataError, UnknownActor, UnknownDomain, UnknownInterface


def _close(name: str, candidates: Iterable[str]) -> list[str]:
    by_lower = {c.lower(): c for c in candidates}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)]


@dataclass(frozen=True)
class Catalog:
    """The seed's interfaces, actors, vocabularies and customer gateway message set."""

    interfaces: Mapping[str, Interface]
    actors: Mapping[str, Actor]
    ambiguous_aliases: tuple[AmbiguousAlias, ...]
    vocabularies: Vocabularies
    gateway: CustomerGateway
    _alias_index: Mapping[str, str] = field(repr=False, default_factory=dict)
    # Message types gridloom declares beside the seed's (data/messages.yaml), by interface id.
    declared_messages: Mapping[str, tuple[DeclaredMessage, ...]] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._check_references()

    def __iter__(self) -> Iterator[Interface]:
        return iter(self.interfaces.values())

    def __len__(self) -> int:
        return len(self.interfaces)

    # --- interfaces ---------------------------------------------------------------
    def interface(self, interface_id: str) -> Interface:
        """The interface with this id (case-insensitive: ``ami-9A`` finds ``AMI-9a``)."""
        found = self.interfaces.get(interface_id)
        if found is not None:
            return found
        for known, iface in self.interfaces.items():
            if known.lower() == interface_id.lower():
                return iface
        raise UnknownInterface(interface_id, _close(interface_id, self.interfaces))

    def declared_for(self, interface_id: str) -> tuple[DeclaredMessage, ...]:
        """The message types declared on an interface (``data/messages.yaml``), if any."""
        return self.declared_messages.get(self.interface(interface_id).id, ())

    def message_types(self, interface_id: str) -> list[MessageType]:
        """Every message type an interface carries: derived from the seed's words, declared, responses."""
        interface = self.interface(interface_id)
        return message_types(interface, self.declared_for(interface.id))

    def in_domain(self, domain: Domain | str) -> list[Interface]:
        """Every interface of one section of the seed."""
        wanted = self.domain(domain)
        return [i for i in self if i.domain is wanted]

    def involving(self, actor: str) -> list[Interface]:
        """Every interface with ``actor`` (id or alias) at one end of a flow."""
        actor_id = self.resolve_actor(actor).id
        return [i for i in self if actor_id in i.actors]

    def select(
        self, *, domain: Domain | str | None = None, actor: str | None = None, status: InterfaceStatus | None = None
    ) -> list[Interface]:
        """Interfaces filtered by section, actor and status (each optional)."""
        chosen = self.in_domain(domain) if domain is not None else list(self)
        if actor is not None:
            actor_id = self.resolve_actor(actor).id
            chosen = [i for i in chosen if actor_id in i.actors]
        if status is not None:
            chosen = [i for i in chosen if i.status is status]
        return chosen

    @staticmethod
    def domain(name: Domain | str) -> Domain:
        if isinstance(name, Domain):
            return name
        try:
            return Domain(name.upper())
        except ValueError:
            raise UnknownDomain(name, _close(name, [d.value for d in Domain])) from None

    # --- actors -------------------------------------------------------------------
    def resolve_actor(self, name: str, *, domain: Domain | str | None = None) -> Actor:
        """The actor an id or one of the seed's names refers to.

        Names the seed uses for different actors in different sections ("EMS") need the
        ``domain`` to resolve.
        """
        key = name.strip().lower()
        if key in self.actors:
            return self.actors[key]
        for ambiguous in self.ambiguous_aliases:
            if ambiguous.alias.lower() == key:
                if domain is None:
                    options = sorted(set(ambiguous.by_domain.values()))
                    raise UnknownActor(name, [f"{o} (give the section: {ambiguous.note})" for o in options])
                return self.actors[ambiguous.by_domain[self.domain(domain)]]
        actor_id = self._alias_index.get(key)
        if actor_id is None:
            raise UnknownActor(name, _close(name, [*self.actors, *self._alias_index]))
        return self.actors[actor_id]

    # --- consistency --------------------------------------------------------------
    def _check_references(self) -> None:
        problems: list[str] = []
        vocab = {
            "vulnerability_types": {t.id for t in self.vocabularies.vulnerability_types},
            "threat_types": {t.id for t in self.vocabularies.threat_types},
            "impact_types": {t.id for t in self.vocabularies.impact_types}
            | {t.id for t in self.vocabularies.impact_categories},
            "constraint_types": {t.id for t in self.vocabularies.constraint_types},
        }
        for iface in self:
            for n, flow in enumerate(iface.flows):
                for end in (flow.source, flow.target):
                    if end not in self.actors:
                        problems.append(f"{iface.id}: flow {n} names unknown actor {end!r}")
            for attr, known in vocab.items():
                for term in getattr(iface, attr):
                    if term not in known:
                        problems.append(f"{iface.id}: {attr} names unknown term {term!r}")
        for ambiguous in self.ambiguous_aliases:
            for actor_id in ambiguous.by_domain.values():
                if actor_id not in self.actors:
                    problems.append(f"ambiguous alias {ambiguous.alias!r} names unknown actor {actor_id!r}")
        if problems:
            raise CatalogDataError("catalog data is inconsistent:\n  " + "\n  ".join(problems))


def _read_yaml(path: Path) -> Any:  # noqa: ANN401 - YAML is untyped until validated
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogDataError(f"{path.name}: not valid YAML: {exc}") from exc


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], raw: Any, where: str) -> _M:  # noqa: ANN401
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise CatalogDataError(f"{where}: {exc}") from exc


def load_catalog_from(data_dir: Path) -> Catalog:
    """Load and check the catalog from a data folder laid out like ``gridloom/catalog/data``."""
    actors_raw = _read_yaml(data_dir / "actors.yaml")
    actors: dict[str, Actor] = {}
    alias_index: dict[str, str] = {}
    for n, raw in enumerate(actors_raw["actors"]):
        actor = _validated(Actor, raw, f"actors.yaml: actor #{n + 1}")
        if actor.id in actors:
            raise CatalogDataError(f"actors.yaml: actor id {actor.id!r} appears twice")
        actors[actor.id] = actor
        for alias in (actor.name, *actor.aliases):
            other = alias_index.setdefault(alias.lower(), actor.id)
            if other != actor.id:
                raise CatalogDataError(f"actors.yaml: alias {alias!r} names both {other!r} and {actor.id!r}")
    ambiguous = tuple(
        _validated(AmbiguousAlias, raw, f"actors.yaml: ambiguous alias #{n + 1}")
        for n, raw in enumerate(actors_raw.get("ambiguous_aliases", []))
    )

    interfaces: dict[str, Interface] = {}
    for path in sorted((data_dir / "interfaces").glob("*.yaml")):
        entries = _read_yaml(path)
        if not isinstance(entries, dict) or not isinstance(entries.get("interfaces"), list):
            raise CatalogDataError(f"{path.name}: expected a mapping with an 'interfaces' list")
        for n, raw in enumerate(entries["interfaces"]):
            label = raw.get("id", f"#{n + 1}") if isinstance(raw, dict) else f"#{n + 1}"
            iface = _validated(Interface, raw, f"{path.name}: interface {label}")
            if iface.id in interfaces:
                raise CatalogDataError(f"{path.name}: interface id {iface.id!r} appears twice")
            interfaces[iface.id] = iface

    # Optional, so a data folder from before declared message types still loads.
    messages_path = data_dir / "messages.yaml"
    declared = (
        load_declared_messages(_read_yaml(messages_path), interfaces, where=messages_path.name)
        if messages_path.exists()
        else {}
    )

    return Catalog(
        interfaces=interfaces,
        actors=actors,
        ambiguous_aliases=ambiguous,
        vocabularies=_validated(Vocabularies, _read_yaml(data_dir / "vocabularies.yaml"), "vocabularies.yaml"),
        gateway=_validated(CustomerGateway, _read_yaml(data_dir / "gateway.yaml"), "gateway.yaml"),
        _alias_index=alias_index,
        declared_messages=declared,
    )


@cache
def load_catalog() -> Catalog:
    """The catalog shipped with gridloom (loaded once per process)."""
    with resources.as_file(resources.files("gridloom.catalog") / "data") as data_dir:
        return load_catalog_from(data_dir)
