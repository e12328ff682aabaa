"""SubscriptionKeeper against the sandbox: create with the validation handshake, renew, clientState, delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mediabot.graph import GraphClient
from mediabot.graph.subscriptions import SubscriptionKeeper, SubscriptionSpec
from mediabot.sandbox import SandboxServer
from tests.conftest import Webhook


async def test_the_client_creates_renews_gets_and_deletes_a_subscription(
    graph: GraphClient, webhook: tuple[str, type[Webhook]]
) -> None:
    url, hook = webhook
    expires = datetime.now(UTC) + timedelta(minutes=60)
    created = await graph.create_subscription(
        resource="/communications/callRecords",
        change_type="created",
        notification_url=url,
        expiration=expires,
        client_state="s3",
    )
    assert created.id and hook.seen, "Graph validated the endpoint before creating the subscription"
    renewed = await graph.renew_subscription(created.id, expires + timedelta(hours=24))
    assert renewed.expiration_date_time and renewed.expiration_date_time > created.expiration_date_time  # type: ignore[operator]
    assert (await graph.get_subscription(created.id)).client_state == "s3"
    await graph.delete_subscription(created.id)
    await graph.delete_subscription(created.id)  # already gone: not an error


def test_lifetimes_are_capped_at_graphs_maximum_per_resource() -> None:
    assert SubscriptionSpec("/communications/callRecords").effective_lifetime() == timedelta(minutes=4230)
    assert SubscriptionSpec("/communications/presences/abc", "updated").effective_lifetime() == timedelta(minutes=60)
    spec = SubscriptionSpec("/communications/callRecords", lifetime=timedelta(days=30))
    assert spec.effective_lifetime() == timedelta(minutes=4230)


async def test_the_keeper_subscribes_vouches_renews_and_cleans_up(
    graph: GraphClient, webhook: tuple[str, type[Webhook]], sandbox: SandboxServer
) -> None:
    url, _ = webhook
    # The keeper's clock starts 4225 minutes in the past, so its first subscription expires five real minutes
    # from now; moving the clock to the real now makes it due, and the renewal stays within Graph's maximum.
    clock = [datetime.now(UTC) - timedelta(minutes=4225)]
    keeper = SubscriptionKeeper(
        graph, [SubscriptionSpec("/communications/callRecords")], notification_url=url, now=lambda: clock[0]
    )
    await keeper.start()
    try:
        (subscription,) = keeper.subscriptions
        assert subscription.id
        assert keeper.accepts(subscription.id, subscription.client_state)
        assert not keeper.accepts(subscription.id, "forged")
        assert not keeper.accepts("someone-elses", subscription.client_state)
        assert not keeper.accepts(subscription.id, None)
        assert await keeper.renew_due() == 0, "nothing is due right after creation"
        clock[0] = datetime.now(UTC)
        assert await keeper.renew_due() == 1
        patches = [r for r in sandbox.requests() if r["method"] == "PATCH" and subscription.id in r["path"]]
        assert patches and patches[-1]["status"] == 200
    finally:
        await keeper.stop()
    assert keeper.subscriptions == []
    deletes = [r for r in sandbox.requests() if r["method"] == "DELETE" and subscription.id in r["path"]]
    assert deletes and deletes[-1]["status"] == 204


async def test_a_subscription_graph_lost_is_recreated_on_renewal(
    graph: GraphClient, webhook: tuple[str, type[Webhook]]
) -> None:
    url, _ = webhook
    keeper = SubscriptionKeeper(graph, [SubscriptionSpec("/communications/callRecords")], notification_url=url)
    await keeper.start()
    try:
        (lost,) = keeper.subscriptions
        await graph.delete_subscription(lost.id or "")
        await keeper.renew(lost.id or "")
        (fresh,) = keeper.subscriptions
        assert fresh.id != lost.id
        assert keeper.accepts(fresh.id, fresh.client_state)
    finally:
        await keeper.stop()


@pytest.mark.parametrize("event", ["subscriptionRemoved", "reauthorizationRequired"])
async def test_lifecycle_notifications_keep_the_subscription(
    graph: GraphClient, webhook: tuple[str, type[Webhook]], event: str
) -> None:
    url, _ = webhook
    keeper = SubscriptionKeeper(graph, [SubscriptionSpec("/communications/callRecords")], notification_url=url)
    await keeper.start()
    try:
        (before,) = keeper.subscriptions
        await keeper.handle_lifecycle(before.id or "", event)
        (after,) = keeper.subscriptions
        assert (after.id == before.id) is (event == "reauthorizationRequired")
    finally:
        await keeper.stop()
