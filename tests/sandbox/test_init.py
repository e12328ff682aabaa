import mediabot.sandbox as sandbox


def test_public_names_are_pinned() -> None:
    assert sandbox.__all__ == [
        "BUNDLED_SCENARIO",
        "AppRegistration",
        "SandboxConfig",
        "SandboxServer",
        "create_sandbox_app",
        "serve",
    ]
    for name in sandbox.__all__:
        assert getattr(sandbox, name).__doc__
