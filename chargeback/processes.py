"""Second processes that help a big command: how many cores there are for them, and how
one is started and hands its results over.

A helper gets plain values, works on its own (a read-only connection of its own, if it
needs the database) and sends (kind, content) messages, pickled, down a one-way pipe;
the command reads them in order. The pipe holds little, so a helper stays a message or
two ahead, or as many more as it is given room for (`ahead`), and memory does not grow
with the work. A helper's refusal comes back as the same `Refused`, any other failure
as a `RuntimeError` naming it, and a helper that dies is noticed at once. When the
command stops reading (it is done, refused, or killed), the helper is stopped: its next
send finds the pipe closed and it ends.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import threading
from collections.abc import Callable
from types import TracebackType

from chargeback.errors import Refused

Send = Callable[[str, object], None]


def starting_a_helper() -> bool:
    """Whether this process is a helper still starting: Python runs the main script again
    in it, and a script that calls chargeback outside `if __name__ == "__main__":` would
    call it there too."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def cores() -> int:
    """The cores this process may run on (its affinity on Linux), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Helper:
    """A second process running `work(send, *args)`, and the reading end of its pipe.
    `doing` says what it does, in messages: "reading 2026-03.csv"."""

    def __init__(self, work: Callable[..., None], args: tuple[object, ...], doing: str,
                 ahead: int = 0) -> None:
        self.doing = doing
        context = multiprocessing.get_context("spawn")
        self.receiver, sender = context.Pipe(duplex=False)
        given, giving = context.Pipe(duplex=False)
        self.process = context.Process(target=_serve, args=(given, sender, ahead), daemon=True,
                                       name="chargeback-helper")
        self.process.start()
        sender.close()
        given.close()
        # The work goes down a pipe of its own rather than with the process's start: a
        # process that dies while it starts leaves this send refused, where Python's own
        # hand-over waits for ever once it is bigger than a pipe holds (the book is).
        try:
            giving.send_bytes(pickle.dumps((work, args), protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, ConnectionResetError):
            self.stop()
            raise RuntimeError(f"the process {doing} stopped before it was given its work") from None
        finally:
            giving.close()

    def receive(self) -> tuple[str, object]:
        """The next (kind, content) the helper sent."""
        try:
            kind, content = pickle.loads(self.receiver.recv_bytes())
        except EOFError:
            raise RuntimeError(f"the process {self.doing} stopped before it was done") from None
        if kind == "refused":
            raise Refused(str(content))
        if kind == "failed":
            raise RuntimeError(f"the process {self.doing} failed: {content}")
        return kind, content

    def stop(self) -> None:
        """Close the pipe and make sure the helper has ended."""
        self.receiver.close()
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _serve(given: multiprocessing.connection.Connection, sender: multiprocessing.connection.Connection,
           ahead: int) -> None:
    """In the helper: take the work, run it; say a refusal or a failure as such. With
    `ahead`, up to that many messages wait to be sent (`_Sending`) while the work goes on."""
    work, args = pickle.loads(given.recv_bytes())
    given.close()
    sending = _Sending(sender, ahead) if ahead else None

    def send(kind: str, content: object) -> None:
        message = pickle.dumps((kind, content), protocol=pickle.HIGHEST_PROTOCOL)
        if sending is None:
            sender.send_bytes(message)
        else:
            sending.put(message)

    try:
        try:
            work(send, *args)
        except Refused as exc:
            send("refused", str(exc))
        except Exception as exc:  # noqa: BLE001 - said to the command, which raises it
            send("failed", f"{type(exc).__name__}: {exc}")
        finally:
            if sending is not None:
                sending.finish()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command stopped reading


class _Sending:
    """Messages sent down the pipe by a thread of their own, up to `ahead` of them waiting:
    a helper that is faster than the command reads goes on with its work instead of
    waiting on the pipe, and is done that much earlier with what it can only do at the
    end (the pricing process's totals: 4 s at a million lines, which the command spent
    waiting). The thread waits in the kernel, not holding the interpreter's lock."""

    def __init__(self, sender: multiprocessing.connection.Connection, ahead: int) -> None:
        self.sender, self.closed = sender, False
        self.waiting: queue.Queue[bytes | None] = queue.Queue(maxsize=ahead)
        self.thread = threading.Thread(target=self._run, name="chargeback-sending", daemon=True)
        self.thread.start()

    def put(self, message: bytes) -> None:
        if self.closed:
            raise BrokenPipeError("the command stopped reading")
        self.waiting.put(message)

    def finish(self) -> None:
        """Wait until every message is sent (or the command stopped reading)."""
        self.waiting.put(None)
        self.thread.join()
        if self.closed:
            raise BrokenPipeError("the command stopped reading")

    def _run(self) -> None:
        while (message := self.waiting.get()) is not None:
            if not self.closed:  # once closed, the queue is only emptied, so `put` never blocks
                try:
                    self.sender.send_bytes(message)
                except Exception:  # noqa: BLE001 - a broken pipe, or any failure to send: the
                    self.closed = True  # work stops, and the command hears the helper stopped
