"""The web dashboard in a real headless browser (Debian's chromium, driven by Playwright): the
page loads, its charts draw from live data, its numbers change while the pipeline runs. A
screenshot is kept in ``artifacts/dashboard.png``."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator.binance import BinanceSynthetic
from tests.integration.processors_worker import ALL_TOPICS, RoutedSink, Worker, free_port, make_worker
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.producer import EventProducer

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture
def worker(settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> Iterator[Worker]:
    w = make_worker(settings, new_topic, tmp_path, "dash", ALL_TOPICS, free_port())
    with w.running():
        yield w


@pytest.fixture
def market(worker: Worker, settings: Settings, codec: AvroCodec) -> Iterator[None]:
    """A synthetic Binance market flowing into the worker's book and trade topics meanwhile."""
    from producers.venues import VENUES

    stop = threading.Event()

    async def run() -> None:
        async with BinanceSynthetic(symbols=2, seed=5, rate=80) as sim:
            with EventProducer(settings.kafka, codec) as producer:
                sink = RoutedSink(producer, {topics.BOOK: worker.book, topics.TRADES: worker.topics["trades"]})  # type: ignore[attr-defined]
                feed = VENUES["binance-spot"].make_feed(sim.symbols, sink, ws_url=sim.ws_url, rest_url=sim.rest_url)
                done = asyncio.Event()
                task = asyncio.create_task(feed.run(done))
                while not stop.is_set():
                    await asyncio.sleep(0.2)
                done.set()
                await asyncio.wait_for(task, 10)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(30)


def test_the_dashboard_draws_live_data_in_a_real_browser(worker: Worker, market: None) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Debian's chromium: apt-get install chromium"
    worker.wait_for("a live book", lambda: any(b["health"] == "LIVE" for b in worker.get("/books")["books"]))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--no-sandbox", "--disable-background-networking"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{worker.port}/dashboard")
            drawn = "window.tickflowDashboard.depthDrawn > 0 && window.tickflowDashboard.candlesDrawn > 0"
            page.wait_for_function(drawn, timeout=60_000)
            first = {
                "records": page.inner_text("#records"),
                "updates": page.evaluate("window.tickflowDashboard.updates"),
            }
            assert page.locator("#books tr.instrument td.LIVE").count() >= 1
            assert page.inner_text("#health") == "healthy"
            # Both canvases have something drawn on them (not blank).
            for canvas in ("depth", "candles"):
                painted = page.evaluate(
                    f"""(() => {{ const c = document.getElementById('{canvas}');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }})()"""
                )
                assert painted > 500, f"{canvas} chart is blank"
            # The numbers change while the market runs.
            page.wait_for_function(f"window.tickflowDashboard.updates >= {first['updates'] + 3}", timeout=30_000)
            page.wait_for_function(f"document.getElementById('records').textContent !== '{first['records']}'",
                                   timeout=30_000)  # fmt: skip
            best_bid = page.get_attribute("#bbo", "data-best-bid")
            assert best_bid and float(best_bid) > 0
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()


def test_the_dashboard_shows_the_routers_commands_and_outcomes(worker: Worker) -> None:
    """With ``?router=``, the page reads a router's ``/status`` (the real status server, over a
    router that answered real commands; its venue a recording client) and shows its commands,
    outcomes, rejections by rule and an engaged kill switch, as the numbers change."""
    from decimal import Decimal

    from playwright.sync_api import sync_playwright

    from processors.router.status import start_status_server
    from tests.unit.test_router_checks import create, make_router, now
    from tickflow.events import KillSwitch

    router, _ = make_router()
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def serve() -> None:
        await router.handle(create())  # accepted
        await router.handle(create(price=Decimal("100.001")))  # rejected: tick_size
        await start_status_server(router, "127.0.0.1", port)
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(30)
    chromium = shutil.which("chromium")
    assert chromium
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--no-sandbox", "--disable-background-networking"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{worker.port}/dashboard?router=http://127.0.0.1:{port}")
            page.wait_for_function("window.tickflowDashboard.ordersDrawn > 0", timeout=30_000)
            cells = page.locator("#order-outcomes tbody td").all_inner_texts()
            assert cells[1:3] == ["2", "1"] and cells[6] == "1", cells  # commands, accepted, rejected
            assert page.locator('#rejections tr[data-rule="tick_size"]').count() == 1
            assert page.inner_text("#killswitch") == ""
            # The router answers more, and a kill switch is engaged: the page follows.
            switch = KillSwitch(scope="*", engaged=True, reason="drill", set_by="test", ts=now())
            loop.call_soon_threadsafe(router.market.apply, switch)
            asyncio.run_coroutine_threadsafe(router.handle(create()), loop).result(10)  # rejected: kill_switch
            page.wait_for_function("window.tickflowDashboard.commands === 3", timeout=30_000)
            page.wait_for_function("document.getElementById('killswitch').textContent.includes('drill')",
                                   timeout=30_000)  # fmt: skip
            assert page.locator('#rejections tr[data-rule="kill_switch"]').count() == 1
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-orders.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
            loop.call_soon_threadsafe(loop.stop)
