"""Reads capture files in the layout of ``shared/recordings`` (see its README).

- ``ws.log``: first line ``<url> <-> <unix seconds>`` (connection opened), then one
  ``<unix seconds>: <frame>`` per received text frame; empty lines are skipped.
- ``http.log``: ``<url> -> <unix seconds>: <body>`` per REST response.

Our own captures are written in the same layout, so one importer reads both. A malformed line
is counted and skipped, never fatal: a capture is evidence, and the rest of it still counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedFrame:
    #: Receive time, microseconds since the epoch.
    receive_ts: int
    text: str


@dataclass(frozen=True)
class RecordedResponse:
    url: str
    receive_ts: int
    body: str


@dataclass
class WsCapture:
    url: str
    opened_ts: int
    frames: list[RecordedFrame]
    malformed_lines: list[int] = field(default_factory=list)


@dataclass
class HttpCapture:
    responses: list[RecordedResponse]
    malformed_lines: list[int] = field(default_factory=list)


def _micros(seconds: str) -> int:
    whole, _, frac = seconds.strip().partition(".")
    return int(whole) * 1_000_000 + int((frac + "000000")[:6] or 0)


def read_ws_log(path: Path) -> WsCapture:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or " <-> " not in lines[0]:
        raise ValueError(f"{path}: the first line must be '<url> <-> <unix seconds>'")
    url, _, opened = lines[0].partition(" <-> ")
    capture = WsCapture(url.strip(), _micros(opened), [])
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        stamp, sep, text = line.partition(": ")
        try:
            if not sep:
                raise ValueError("no ': ' separator")
            capture.frames.append(RecordedFrame(_micros(stamp), text))
        except ValueError:
            capture.malformed_lines.append(number)
    if capture.malformed_lines:
        log.warning("%s: skipped %d malformed lines", path, len(capture.malformed_lines))
    return capture


def read_http_log(path: Path) -> HttpCapture:
    capture = HttpCapture([])
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        url, sep, rest = line.partition(" -> ")
        stamp, sep2, body = rest.partition(": ")
        try:
            if not (sep and sep2):
                raise ValueError("expected '<url> -> <unix seconds>: <body>'")
            capture.responses.append(RecordedResponse(url.strip(), _micros(stamp), body))
        except ValueError:
            capture.malformed_lines.append(number)
    if capture.malformed_lines:
        log.warning("%s: skipped %d malformed lines", path, len(capture.malformed_lines))
    return capture


def _seconds(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


class CaptureWriter:
    """Writes one connection's traffic in the layout ``read_ws_log``/``read_http_log`` read
    (``ws.log``, ``http.log`` in one folder), so our captures and the real recordings go through
    one importer and ``tickflow capture check``.

    Lines are buffered by the file object and written as they come; a frame with a line break
    in it (never valid JSON from a venue, but a malformed frame may have one) is kept on one line
    with the break escaped, so the file stays one record per line.
    """

    def __init__(self, directory: Path, url: str, opened_us: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._ws = (directory / "ws.log").open("w", encoding="utf-8")
        self._ws.write(f"{url} <-> {_seconds(opened_us)}\n")
        self._http = (directory / "http.log").open("a", encoding="utf-8")

    def frame(self, receive_us: int, text: str) -> None:
        if "\n" in text:
            text = text.replace("\n", "\\n")
        self._ws.write(f"{_seconds(receive_us)}: {text}\n")

    def response(self, url: str, receive_us: int, body: str) -> None:
        self._http.write(f"{url} -> {_seconds(receive_us)}: {body.replace(chr(10), ' ')}\n")

    def close(self) -> None:
        self._ws.close()
        self._http.close()
