"""The FastAPI service: Graph's call notifications, webhooks and the operator API (``create_app``)."""

from mediabot.service.app import call_config, create_app

__all__ = ["call_config", "create_app"]
