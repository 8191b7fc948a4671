"""A second process that helps a big command (`processes.Helper`): its messages come in
order; with `ahead` it goes on working while its messages wait to be read; its refusal
comes back as a refusal; and it ends when the command stops reading."""

from __future__ import annotations

import os
import subprocess
import sys
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


#: A script that starts a helper without the main guard, so Python runs it again in the
#: helper while it starts; there the script stops (as a script whose database is locked
#: by the command would, or one that calls chargeback: see the next test).
UNGUARDED = '''
from chargeback.processes import Helper

def work(send, payload):
    send("done", len(payload))

if __name__ != "__main__":  # run again in the helper
    {in_the_helper}
with Helper(work, (b"x" * 1_000_000,), "checking lines") as helper:
    print(helper.receive())
'''


def _run_unguarded(tmp_path: Path, in_the_helper: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED.format(in_the_helper=in_the_helper))
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=environment)


def test_a_helper_that_dies_while_it_starts_is_an_error_not_a_wait_for_ever(tmp_path: Path) -> None:
    """Python hands a new process its arguments down a pipe that the starting process also
    holds open: once they are bigger than the pipe holds and the new process dies first,
    that hand-over waits for ever. The work goes down a pipe of its own instead."""
    ran = _run_unguarded(tmp_path, "raise SystemExit('the helper stopped while it started')")
    assert ran.returncode != 0
    assert "the process checking lines stopped before it was given its work" in ran.stderr


def test_chargeback_called_by_a_script_run_again_in_a_starting_helper_says_what_to_do(tmp_path: Path) -> None:
    ran = _run_unguarded(tmp_path, "from chargeback import db; db.connect('sqlite:///unused.db')")
    assert ran.returncode != 0
    assert 'call it under `if __name__ == "__main__":`' in ran.stderr
    assert "the process checking lines stopped before it was given its work" in ran.stderr
    assert not (tmp_path / "unused.db").exists()
