"""One FastAPI router per emulated resource; ``mediabot.sandbox._app`` mounts them."""
