"""The demo's local SMTP server: aiosmtpd storing every received message in a Maildir.

Interface: ``<SMARKETING_DATA_DIR>/mailbox`` (Python ``mailbox.Maildir``). A message carrying
``X-Smarketing-Message-Id`` is stored under that id, so a resend of the same message (the one
documented crash window) replaces the file instead of adding a second copy, as a de-duplicating
receiver would; anything else is added as a new Maildir message.
"""

from __future__ import annotations

import mailbox
import os
import re
import socket
import tempfile
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_PORT = 8025


class MaildirHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.box = mailbox.Maildir(str(self.directory), create=True)
        self.received = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        message_id = (message_from_bytes(content, policy=policy.compat32).get("X-Smarketing-Message-Id") or "").strip()
        if _SAFE_ID.match(message_id):
            handle, temp = tempfile.mkstemp(dir=self.directory / "tmp")
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            os.replace(temp, self.directory / "new" / f"{message_id}.eml")
        else:
            self.box.add(content)
        self.received += 1
        return "250 OK: stored"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(preferred: int = DEFAULT_PORT) -> int:
    if _port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DemoMailbox:
    """``with DemoMailbox(dir) as box:`` runs the SMTP server on 127.0.0.1 for the block's duration."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.directory = Path(directory)
        self.handler = MaildirHandler(self.directory)
        self.port = port or pick_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def connection_uri(self) -> str:
        """The ``smarketing_smtp`` Airflow connection for this server (plain SMTP on loopback)."""
        return f"smtp://127.0.0.1:{self.port}?disable_ssl=true&disable_tls=true&from_email=hello%40shop.example"

    def __enter__(self) -> DemoMailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def summarize(directory: Path) -> Counter:
    """Messages in the Maildir by ``X-Smarketing-Kind``."""
    kinds: Counter = Counter()
    if not (Path(directory) / "new").exists():
        return kinds
    for message in mailbox.Maildir(str(directory), create=False):
        kinds[message.get("X-Smarketing-Kind", "other")] += 1
    return kinds
