"""Change-notification subscriptions the bot keeps: created at start, renewed before expiry, checked on receipt."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mediabot._errors import GraphError, GraphNotFoundError
from mediabot.graph.client import GraphClient
from mediabot.graph.models import Subscription

__all__ = ["MAX_LIFETIME", "SubscriptionKeeper", "SubscriptionSpec"]

logger = logging.getLogger(__name__)

# Graph's maximum subscription lifetimes for the resources a calling bot watches.
MAX_LIFETIME: dict[str, timedelta] = {
    "/communications/callRecords": timedelta(minutes=4230),
    "/communications/presences": timedelta(minutes=60),
}
DEFAULT_LIFETIME = timedelta(minutes=60)


@dataclass(frozen=True)
class SubscriptionSpec:
    """What to subscribe to: a resource and its change types (lifetime defaults to Graph's maximum for it)."""

    resource: str
    change_type: str = "created"
    lifetime: timedelta | None = None

    def effective_lifetime(self) -> timedelta:
        """The lifetime asked for: the configured one, capped by Graph's maximum for the resource."""
        cap = next((v for k, v in MAX_LIFETIME.items() if self.resource.startswith(k)), DEFAULT_LIFETIME)
        return min(self.lifetime, cap) if self.lifetime else cap


@dataclass
class _Held:
    spec: SubscriptionSpec
    subscription: Subscription
    expires: datetime = field(default_factory=lambda: datetime.now(UTC))


class SubscriptionKeeper:
    """Holds the bot's subscriptions: creates them, renews them ahead of expiry, and vouches for their clientState."""

    def __init__(
        self,
        graph: GraphClient,
        specs: Sequence[SubscriptionSpec],
        *,
        notification_url: str,
        lifecycle_url: str | None = None,
        renew_margin: timedelta = timedelta(minutes=10),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._graph = graph
        self._specs = list(specs)
        self._notification_url = notification_url
        self._lifecycle_url = lifecycle_url
        self._renew_margin = renew_margin
        self._now = now
        self._sleep = sleep
        # One secret for all our subscriptions: a notification that does not carry it did not come from them.
        self._client_state = secrets.token_urlsafe(32)
        self._held: dict[str, _Held] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def subscriptions(self) -> list[Subscription]:
        """The subscriptions currently held."""
        return [h.subscription for h in self._held.values()]

    def accepts(self, subscription_id: str | None, client_state: str | None) -> bool:
        """True when a notification names one of our subscriptions and carries our clientState (constant time)."""
        if not subscription_id or subscription_id not in self._held or client_state is None:
            return False
        return hmac.compare_digest(client_state.encode(), self._client_state.encode())

    async def start(self) -> None:
        """Create every configured subscription, then keep renewing them in the background."""
        for spec in self._specs:
            try:
                await self._create(spec)
            except GraphError as exc:
                logger.error("cannot subscribe to %s: %s", spec.resource, exc)
        self._task = asyncio.create_task(self._renew_loop(), name="mediabot-subscriptions")

    async def stop(self, *, delete: bool = True) -> None:
        """Stop renewing; delete the subscriptions unless asked not to."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if delete:
            for subscription_id in list(self._held):
                with contextlib.suppress(GraphError):
                    await self._graph.delete_subscription(subscription_id)
            self._held.clear()

    async def renew_due(self) -> int:
        """Renew every subscription within the margin of its expiry (recreating lost ones); how many were renewed."""
        renewed = 0
        for subscription_id, held in list(self._held.items()):
            if held.expires - self._now() > self._renew_margin:
                continue
            try:
                await self.renew(subscription_id)
                renewed += 1
            except GraphError as exc:
                logger.error("cannot renew subscription %s to %s: %s", subscription_id, held.spec.resource, exc)
        return renewed

    async def renew(self, subscription_id: str) -> None:
        """Renew one subscription now; if Graph lost it, subscribe again."""
        held = self._held[subscription_id]
        expires = self._now() + held.spec.effective_lifetime()
        try:
            held.subscription = await self._graph.renew_subscription(subscription_id, expires)
            held.expires = expires
        except GraphNotFoundError:
            del self._held[subscription_id]
            logger.warning("subscription %s to %s was gone; subscribing again", subscription_id, held.spec.resource)
            await self._create(held.spec)

    async def handle_lifecycle(self, subscription_id: str, event: str) -> None:
        """React to a lifecycle notification: reauthorize (renew) or recreate a removed subscription."""
        held = self._held.get(subscription_id)
        if held is None:
            return
        if event == "subscriptionRemoved":
            del self._held[subscription_id]
            await self._create(held.spec)
        elif event == "reauthorizationRequired":
            await self.renew(subscription_id)

    async def _create(self, spec: SubscriptionSpec) -> None:
        expires = self._now() + spec.effective_lifetime()
        subscription = await self._graph.create_subscription(
            resource=spec.resource,
            change_type=spec.change_type,
            notification_url=self._notification_url,
            lifecycle_notification_url=self._lifecycle_url,
            expiration=expires,
            client_state=self._client_state,
        )
        self._held[subscription.id or ""] = _Held(spec, subscription, expires)
        logger.info("subscribed to %s (%s) until %s", spec.resource, subscription.id, expires.isoformat())

    async def _renew_loop(self) -> None:
        while True:
            if self._held:
                soonest = min(h.expires for h in self._held.values())
                wait = (soonest - self._renew_margin - self._now()).total_seconds()
            else:
                wait = self._renew_margin.total_seconds()
            await self._sleep(max(wait, 1.0))
            await self.renew_due()
