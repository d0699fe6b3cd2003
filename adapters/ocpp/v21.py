"""OCPP 2.1: the 2.0.1 translator on the 2.1 schemas, with what 2.1 changed in its answers.

A 2.1 station reports connector states through NotifyEvent (AvailabilityState) rather than
StatusNotification; the 2.0.1 translator already understands both. The RPC additions
(CALLRESULTERROR, SEND) are handled by the framing layer.
"""

from __future__ import annotations

from ocpp.v21.enums import Action

from adapters.ocpp.v201 import OcppV201


class OcppV21(OcppV201):
    version = "2.1"
    subprotocol = "ocpp2.1"
    known_actions = frozenset(action.value for action in Action)
    charging_needs_answer = "NoChargingProfile"  # 2.1's explicit "no schedule will follow"
