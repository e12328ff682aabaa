"""The vendored v1.0 schemas accept the documented request bodies and refuse broken ones."""

from __future__ import annotations

from mediabot.sandbox._schemas import catalog


def test_catalog_loads_types_and_actions_from_package_data() -> None:
    schemas = catalog()
    for name in ("call", "participant", "subscription", "onlineMeeting", "presence"):
        assert schemas.has_type(name)
    for action in ("call.answer", "call.playPrompt", "participants.invite", "presence.setPresence"):
        assert schemas.has_action(action)


def test_required_parameters_and_enums_are_enforced() -> None:
    schemas = catalog()
    assert schemas.action_errors("call.answer", {"callbackUri": "https://x", "mediaConfig": {}}) == []
    assert any("mediaConfig" in e for e in schemas.action_errors("call.answer", {"callbackUri": "https://x"}))
    assert schemas.action_errors("call.reject", {"reason": "busy"}) == []
    assert schemas.action_errors("call.reject", {"reason": "bored"})
    assert schemas.action_errors("call.answer", ["not", "an", "object"]) == ["the request body must be a JSON object"]


def test_odata_type_selects_the_derived_schema() -> None:
    schemas = catalog()
    body = {"mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": 5}}
    errors = schemas.type_errors("call", body)
    assert errors and errors[0].startswith("mediaConfig.blob")
