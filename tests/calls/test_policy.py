"""AnswerPolicy decisions by caller identity, AnswerDecision builders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from mediabot.calls import AnswerAction, AnswerDecision, AnswerPolicy, CallPhase, ManagedCall
from mediabot.graph import phone_target, user_target
from mediabot.graph.models import ParticipantInfo


def call_from(kind: str, identity_id: str) -> ManagedCall:
    call = ManagedCall("c1", direction="incoming", state=CallPhase.INCOMING, created=datetime.now(UTC), created_at=0.0)
    identity: dict[str, Any] = {"@odata.type": "#microsoft.graph.identitySet", kind: {"id": identity_id}}
    call.source = ParticipantInfo.from_graph({"identity": identity})
    return call


def test_answer_all_answers_everyone() -> None:
    decision = AnswerPolicy.answer_all().decide(call_from("user", "anyone"))
    assert decision == AnswerDecision.answer()
    assert decision.action is AnswerAction.ANSWER


@pytest.mark.parametrize(
    ("kind", "identity_id", "allowed"),
    [
        ("user", "8A34A46B-3D17-4ADC-8DCE-DC4E7D572698", True),  # case differs from the list
        ("applicationInstance", "bot-instance", True),
        ("application", "other-app", False),
        ("phone", "+15550100", True),
        ("phone", "+15550199", False),
    ],
)
def test_allow_list_by_caller_id(kind: str, identity_id: str, allowed: bool) -> None:
    policy = AnswerPolicy.allow_list(
        ["8a34a46b-3d17-4adc-8dce-dc4e7d572698", "BOT-INSTANCE", "+15550100"], reject_reason="forbidden"
    )
    decision = policy.decide(call_from(kind, identity_id))
    assert policy.allows(call_from(kind, identity_id)) is allowed
    assert decision == (AnswerDecision.answer() if allowed else AnswerDecision.reject("forbidden"))


def test_reject_all_and_unknown_caller() -> None:
    assert AnswerPolicy.reject_all().decide(call_from("user", "x")) == AnswerDecision.reject("busy")
    anonymous = call_from("user", "x")
    anonymous.source = None
    assert AnswerPolicy.allow_list(["x"]).decide(anonymous).action is AnswerAction.REJECT


def test_policy_validates_reason() -> None:
    with pytest.raises(ValidationError):
        AnswerPolicy(reject_reason="rude")


def test_redirect_needs_targets() -> None:
    decision = AnswerDecision.redirect([user_target("u"), phone_target("+1555")], ring_timeout_s=30)
    assert decision.action is AnswerAction.REDIRECT and len(decision.targets) == 2
    with pytest.raises(ValueError):
        AnswerDecision.redirect([])
