"""Whether to take an incoming call: ``AnswerPolicy`` (configuration) and ``AnswerDecision`` (one call's verdict).

The policy is the default; :meth:`Bot.on_incoming_call <mediabot.calls.bot.Bot.on_incoming_call>` may return its
own decision for a call, and returning ``None`` falls back to the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from mediabot.calls.call import ManagedCall

__all__ = ["AnswerAction", "AnswerDecision", "AnswerPolicy", "RejectReasonName"]

RejectReasonName = Literal["none", "busy", "forbidden"]


class AnswerAction(StrEnum):
    """What to do with an incoming call."""

    ANSWER = "answer"
    REJECT = "reject"
    REDIRECT = "redirect"


@dataclass(frozen=True, kw_only=True)
class AnswerDecision:
    """The verdict on one incoming call; build it with :meth:`answer`, :meth:`reject` or :meth:`redirect`."""

    action: AnswerAction
    reason: RejectReasonName = "none"
    targets: tuple[Mapping[str, Any], ...] = field(default=())
    ring_timeout_s: int | None = None

    @classmethod
    def answer(cls) -> AnswerDecision:
        """Answer the call."""
        return cls(action=AnswerAction.ANSWER)

    @classmethod
    def reject(cls, reason: RejectReasonName = "none") -> AnswerDecision:
        """Reject the call with ``reason`` (``none``, ``busy`` or ``forbidden``)."""
        return cls(action=AnswerAction.REJECT, reason=reason)

    @classmethod
    def redirect(cls, targets: Sequence[Mapping[str, Any]], ring_timeout_s: int | None = None) -> AnswerDecision:
        """Redirect the call to ``targets`` (``user_target(...)``/``phone_target(...)``) without answering it."""
        if not targets:
            raise ValueError("a redirect needs at least one target")
        return cls(action=AnswerAction.REDIRECT, targets=tuple(targets), ring_timeout_s=ring_timeout_s)


class AnswerPolicy(BaseModel):
    """Which incoming calls to answer: everyone, only an allow-list of caller ids, or nobody; the rest are rejected.

    ``allowed_callers`` holds user, application, application-instance or phone ids (compared case-insensitively,
    as Graph spells GUIDs in either case); ``None`` allows every caller.
    """

    model_config = ConfigDict(frozen=True)

    accept_calls: bool = True
    allowed_callers: frozenset[str] | None = None
    reject_reason: RejectReasonName = "none"

    @field_validator("allowed_callers")
    @classmethod
    def _fold_case(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        return None if value is None else frozenset(item.strip().lower() for item in value if item.strip())

    @classmethod
    def answer_all(cls) -> AnswerPolicy:
        """Answer every call."""
        return cls()

    @classmethod
    def allow_list(cls, caller_ids: Iterable[str], *, reject_reason: RejectReasonName = "forbidden") -> AnswerPolicy:
        """Answer calls from these caller ids only; reject the others with ``reject_reason``."""
        return cls(allowed_callers=frozenset(caller_ids), reject_reason=reject_reason)

    @classmethod
    def reject_all(cls, reason: RejectReasonName = "busy") -> AnswerPolicy:
        """Reject every call (maintenance, draining) with ``reason``."""
        return cls(accept_calls=False, reject_reason=reason)

    def allows(self, call: ManagedCall) -> bool:
        """Whether this policy answers ``call``."""
        if not self.accept_calls:
            return False
        if self.allowed_callers is None:
            return True
        return any(caller.lower() in self.allowed_callers for caller in call.caller_ids())

    def decide(self, call: ManagedCall) -> AnswerDecision:
        """The decision for ``call``: answer, or reject with the configured reason."""
        if self.allows(call):
            return AnswerDecision.answer()
        return AnswerDecision.reject(self.reject_reason)
