"""A second process that helps a big command (`processes.Helper`): its messages come in
order; with `ahead` it goes on working while its messages wait to be read; its refusal
comes back as a refusal; and it ends when the command stops reading."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chargeback.errors import Refused
from chargeback.processes import Helper, Send

#: Bigger than a pipe holds (64 KB on Linux): a send of one waits until it is read.
BIG = 1_000_000


def _work(send: Send, messages: int, marker: str, refuse: bool) -> None:
    """Send `messages` big ones, then mark the work done in a file, then say done (or refuse)."""
    for number in range(messages):
        send("part", (number, b"x" * BIG))
    Path(marker).write_text("worked")
    if refuse:
        raise Refused("no rate for HELP on 2026-03-02")
    send("done", None)


def _appears(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def test_a_helper_with_room_ahead_finishes_its_work_before_anything_is_read(tmp_path: Path) -> None:
    marker = tmp_path / "worked"
    with Helper(_work, (3, str(marker), False), "sending parts", ahead=3) as helper:
        assert _appears(marker, 30)  # nothing read yet: three parts wait, one is being sent
        received = [helper.receive() for _ in range(4)]
    assert [kind for kind, _ in received] == ["part", "part", "part", "done"]
    assert [content[0] for _, content in received[:3]] == [0, 1, 2]  # type: ignore[index]
    assert all(content[1] == b"x" * BIG for _, content in received[:3])  # type: ignore[index]


def test_a_helper_without_room_ahead_waits_for_its_messages_to_be_read(tmp_path: Path) -> None:
    marker = tmp_path / "worked"
    with Helper(_work, (3, str(marker), False), "sending parts") as helper:
        assert not _appears(marker, 1.5)
        assert [helper.receive()[0] for _ in range(4)] == ["part", "part", "part", "done"]
    assert marker.exists()


def test_a_refusal_comes_after_the_messages_sent_before_it(tmp_path: Path) -> None:
    with Helper(_work, (2, str(tmp_path / "worked"), True), "sending parts", ahead=3) as helper:
        assert [helper.receive()[0] for _ in range(2)] == ["part", "part"]
        with pytest.raises(Refused, match="no rate for HELP"):
            helper.receive()


def test_a_helper_with_room_ahead_stops_working_when_the_command_stops_reading(tmp_path: Path) -> None:
    """Its next message after the pipe broke ends its work: at most the two waiting and the
    one sent when it broke were made in vain."""
    marker = tmp_path / "worked"
    helper = Helper(_work, (8, str(marker), False), "sending parts", ahead=2)
    helper.receive()
    helper.receiver.close()  # as when the command dies
    helper.process.join(timeout=30)
    assert helper.process.exitcode == 0
    assert not marker.exists()
