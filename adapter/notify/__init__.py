"""Notifications: safeguarding Communications to organisations, and their delivery over FHIR R4 rest-hook
Subscriptions.

* ``organisations``: who can be notified, from configuration (setting ``organisations``), as Organization
  resources (and a Subscription for each configured endpoint), upserted at start-up;
* ``communications.notify``: what a rule calls, in its own transaction, to notify organisations;
* ``subscriptions``: the Subscriptions Carethread accepts (the API's hook) and how criteria match;
* ``delivery.DeliveryWorker``: the asyncio worker that sends the outbox, with retries, and records it.

``prepare_notifications`` is what ``carethread serve`` does at start-up.
"""

from __future__ import annotations

from pathlib import Path

from adapter.notify.communications import (
    COMMUNICATION_PROFILE,
    RULE_SYSTEM,
    Check,
    communication_id,
    default_check,
    notify,
    rule_codes,
)
from adapter.notify.delivery import DeliverySettings, DeliveryWorker
from adapter.notify.organisations import (
    Organisation,
    UnknownRecipient,
    load_organisations,
    organization_id,
    sync_organisations,
)
from adapter.settings import Settings
from adapter.store.base import Store

__all__ = [
    "COMMUNICATION_PROFILE",
    "RULE_SYSTEM",
    "DeliverySettings",
    "DeliveryWorker",
    "Organisation",
    "UnknownRecipient",
    "communication_id",
    "configure_organisations",
    "default_check",
    "load_organisations",
    "notify",
    "organization_id",
    "prepare_notifications",
    "rule_codes",
    "sync_organisations",
]


def configure_organisations(store: Store, settings: Settings, *, check: Check | None = None) -> None:
    """Load the organisations configuration (ConfigError if it is wrong) and upsert its Organizations and
    Subscriptions: every process that may notify (serve, sandbox, ingest) does this at start."""
    sync_organisations(store, load_organisations(_organisations_file(settings.organisations)), check or default_check)


def prepare_notifications(store: Store, settings: Settings, *, check: Check | None = None) -> DeliveryWorker:
    """Configure the organisations and return the delivery worker (not started: ``worker.start()`` in
    the running loop)."""
    check = check or default_check
    configure_organisations(store, settings, check=check)
    return DeliveryWorker(store, DeliverySettings(), check=check)


_ROOT = Path(__file__).resolve().parents[2]


def _organisations_file(path: Path | None) -> Path | None:
    """The setting as given; a relative path missing from the working directory is looked up in the
    installation (the shipped ``sandbox/organisations.yaml``, whatever directory ``carethread`` runs from)."""
    if path is None or path.is_absolute() or path.exists() or not (_ROOT / path).exists():
        return path
    return _ROOT / path
