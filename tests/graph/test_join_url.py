import pytest

from mediabot.graph.join_url import parse_join_web_url

CLASSIC = (
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NTg0NmQ3NTctZDVkZC00YzRhLThmNmEtOGQ3M2E2ODc5MTE0"
    "%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%22"
    "550fae72-d251-43ec-868c-373732c2704f%22%7d"
)


def test_classic_link_gives_thread_message_organizer_and_tenant() -> None:
    info = parse_join_web_url(CLASSIC)
    assert info.thread_id == "19:meeting_NTg0NmQ3NTctZDVkZC00YzRhLThmNmEtOGQ3M2E2ODc5MTE0@thread.v2"
    assert info.message_id == "0"
    assert info.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert info.organizer_id == "550fae72-d251-43ec-868c-373732c2704f"
    assert not info.by_meeting_id


def test_short_link_gives_meeting_id_and_passcode() -> None:
    info = parse_join_web_url("https://teams.microsoft.com/meet/2345678901234?p=a1B2c3")
    assert info.by_meeting_id
    assert info.join_meeting_id == "2345678901234"
    assert info.passcode == "a1B2c3"


@pytest.mark.parametrize(
    "url",
    [
        "http://teams.microsoft.com/meet/123",
        "https://teams.microsoft.com/l/chat/0/0",
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0",
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0?context=%7bnot-json",
        "not a url",
    ],
)
def test_links_that_cannot_be_joined_are_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError):
        parse_join_web_url(url)
