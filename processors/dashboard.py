"""The web dashboard: ``GET /dashboard`` on a worker's web server. One self-contained page
(``dashboard.html``: no script, style or font from elsewhere) that draws, once a second, from
the worker's own JSON: per instrument its book's health, best bid and offer, records applied,
gaps and last event's age; for the selected instrument a depth chart (cumulative bids and asks,
25 levels) and a candlestick chart of its 1 s klines; the worker's health."""

from __future__ import annotations

from importlib.resources import files

import faust
from faust.web import Request, Response, View

_PAGE = files("processors").joinpath("dashboard.html")


def register_dashboard(app: faust.App) -> None:
    page = _PAGE.read_bytes()

    @app.page("/dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(page, content_type="text/html")
