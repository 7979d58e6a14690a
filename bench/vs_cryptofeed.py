"""tickflow's producer against cryptofeed's Kafka backend, on the same simulated Binance feed.

What it measures, for each pipeline, end to end (WebSocket frames in -> normalized events in Kafka):

* **events/s**: normalized events that landed on the broker per wall-clock second;
* **CPU-us per event** and **events per CPU-second**: user + system CPU of the pipeline's process
  and all its threads (librdkafka's included), from ``/proc/<pid>/stat``, per event;
* **peak RSS** of the process (``VmHWM``).

Events are counted on the broker, not by either pipeline: the sum of the end offsets of the
pipeline's topics (tickflow: ``tickflow.book``, ``.trades``, ``.bbo``, ``.klines``; cryptofeed: its
per-symbol topics ``book-BINANCE-<BASE>-<QUOTE>``, ``trades-...``, ``ticker-...``, ``candles-...``,
created for the run because the broker creates no topics) before and after. The process and
the offsets are sampled every ``--interval`` s; the window runs from the last sample before the
first event landed to the first sample at which the final count was reached (the pipeline is
then idle for ``--settle`` s and stopped with SIGTERM), so start-up (imports) and the idle tail are
outside the window.

Same input for both: for every pipeline run a fresh simulator (``tickflow simulate binance-spot
--synthetic --rate 0``: as fast as the socket takes, frames pre-rendered, the same ``--seed``) sends
the same ``--frames`` frames of depth@100ms, aggTrade, bookTicker and kline_1m over ``--symbols``
symbols; REST depth snapshots (limit 1000) come from the same simulator. Same broker, same host.

Why one after the other, not concurrently on two simulator ports: this machine has two cores. Run
together, two simulators, two pipelines and the broker would fight over them and the faster
pipeline would slow the other one down; one at a time, each pipeline competes only with its own
simulator and the broker, identically. The order alternates between repeats (``--repeat``), and
the ratios are computed within each repeat, then the median is reported: the machine is noisy
(other work shares it), a ratio measured in one repeat is what to compare.

Two regimes, both worth running (``--rate``):

* full speed (``--rate 0``, the default): capacity. Both get the same messages as fast as they
  read them, but they do not make the same events of them: a depth snapshot is the book where
  the venue is *now* (at full speed: as far as the simulator has written), and every diff
  older than the snapshot is dropped, by Binance's rules. cryptofeed reads the socket into an
  unbounded queue (``max_queue=None``) and fetches each snapshot inline on the symbol's first
  diff, by which time the simulator has written nearly everything: it bridges near the end and
  publishes almost no book deltas. So compare the events *and* the CPU-seconds for the same input.
* paced (e.g. ``--rate 500``, about 900 events/s, which both keep up with): the same events on
  both sides (the table's "by kind" lines show it), so CPU per event compares like with like.

Settings: each side's defaults. tickflow: ``tickflow produce`` with a generated feeds config
(idempotent producer, acks=all, zstd, Avro with Confluent framing, schema registry; raw capture
off). cryptofeed 2.4.1: ``cryptofeed.backends.kafka`` callbacks as shipped (JSON values, aiokafka
defaults acks=1, no compression, and its writer awaits each record's acknowledgement before the
next), uvloop, ``candle_closed_only=False`` so every kline frame is an event on both sides. See
``bench/cryptofeed_runner.py`` for what is patched to point cryptofeed at the simulator.
``--pin`` runs each pipeline under ``taskset -c 0`` and the simulator under ``taskset -c 1``: the
pipeline (with its librdkafka threads) on one core, for the "events per second on one core" figure.

Reproduce (the bench stack, and cryptofeed in its own virtual environment, outside the repo)::

    bench/setup_cryptofeed.sh                 # once: ../.bench-venvs/cryptofeed (cryptofeed 2.4.1)
    export TICKFLOW_STACK__STATE_DIR=/tmp/bench-stack TICKFLOW_STACK__KAFKA_PORT=19492 \\
           TICKFLOW_STACK__REGISTRY_PORT=18481 TICKFLOW_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19492 \\
           TICKFLOW_REGISTRY__URL=http://127.0.0.1:18481/apis/ccompat/v7
    .venv/bin/tickflow infra up
    .venv/bin/python bench/vs_cryptofeed.py --symbols 50 --frames 200000 --repeat 3
    .venv/bin/python bench/vs_cryptofeed.py --pin --repeat 3       # each pipeline on one core
    .venv/bin/tickflow infra down

The last line of output is one JSON object with every figure, for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from harness import (
    RECORDING_SYMBOLS,
    REPO,
    TICKFLOW,
    EndOffsets,
    ProcStats,
    Sample,
    Simulator,
    ensure_topics,
    median,
    pinned,
    stop_process,
)

from tickflow import topics
from tickflow.config import load_settings

OUR_TOPICS = [topics.BOOK, topics.TRADES, topics.BBO, topics.KLINES]
CRYPTOFEED_KEYS = ("book", "trades", "ticker", "candles")  # cryptofeed's default Kafka keys, one per channel
DEFAULT_CRYPTOFEED_PYTHON = REPO.parent / ".bench-venvs" / "cryptofeed" / "bin" / "python"


@dataclass
class Result:
    pipeline: str
    repeat: int
    events: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    events_per_s: float
    cpu_us_per_event: float
    events_per_cpu_s: float
    complete: bool
    #: Events per kind (book, trades, bbo/ticker, klines/candles).
    kinds: dict[str, int]
    #: The same over the second half of the events only (from the first sample at which half
    #: had landed to the end): the steady state, once every book is live and the start-up (50
    #: REST snapshots of 1000 levels, and the diffs buffered meanwhile that turn out stale and
    #: make no event) is over.
    steady_events_per_s: float
    steady_events_per_cpu_s: float


def measure(
    name: str, repeat: int, argv: list[str], counter: EndOffsets, *, interval: float, settle: float, timeout: float
) -> Result:
    """Run ``argv`` until its events stop landing; the window is set from broker offsets (see the docstring)."""
    log_path = Path(tempfile.gettempdir()) / f"tickflow-bench-{name}.log"
    before = counter.by_topic()
    base = sum(before.values())
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=REPO)
    stats = ProcStats(proc.pid)
    samples: list[Sample] = []
    started, last_change, last, complete = time.monotonic(), time.monotonic(), base, True
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early ({proc.returncode}); see {log_path}")
            cpu = stats.cpu_seconds()
            rss, hwm = stats.memory_kb()
            offsets = counter.total()
            now = time.monotonic()
            samples.append(Sample(now, cpu, rss, hwm, offsets))
            if offsets != last:
                last, last_change = offsets, now
            if offsets > base and now - last_change >= settle:
                break
            if now - started > timeout:
                complete = False
                print(f"  {name}: still producing after {timeout:.0f}s; measuring what landed", file=sys.stderr)
                break
            time.sleep(interval)
    finally:
        code = stop_process(proc)
    if code not in (0, -15):
        print(f"  {name}: exited with {code} after SIGTERM; see {log_path}", file=sys.stderr)
    final = samples[-1].offsets
    if final == base:
        raise RuntimeError(f"{name} produced nothing; see {log_path}")
    first = next(i for i, s in enumerate(samples) if s.offsets > base)
    start = samples[max(first - 1, 0)]
    end = next(s for s in samples if s.offsets == final)
    events, wall, cpu = final - base, end.t - start.t, end.cpu - start.cpu
    peak = max(s.hwm_kb for s in samples) / 1024
    half = next(s for s in samples if s.offsets - base >= (final - base) / 2)
    steady_events, steady_wall, steady_cpu = final - half.offsets, end.t - half.t, end.cpu - half.cpu
    kinds: dict[str, int] = {}
    for topic, offset in counter.by_topic().items():
        kind = topic.removeprefix("tickflow.").split("-", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + offset - before[topic]
    return Result(name, repeat, events, wall, cpu, peak, events / wall, cpu / events * 1e6, events / cpu, complete,
                  kinds, steady_events / max(steady_wall, 1e-9),
                  steady_events / max(steady_cpu, 1e-9))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    parser.add_argument("--symbols", type=int, default=50, help="symbols (default 50)")
    parser.add_argument("--frames", type=int, default=200_000, help="frames the simulator sends per run (200000)")
    parser.add_argument("--seed", type=int, default=7, help="the synthetic market's seed (default 7)")
    parser.add_argument("--rate", type=float, default=0,
                        help="the simulator's --rate: market events/s, 0 = full speed (default 0)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="repeats, each running both pipelines (default 3)")
    parser.add_argument("--pin", action="store_true", help="pipeline on CPU 0, simulator on CPU 1 (taskset)")
    parser.add_argument("--only", choices=("tickflow", "cryptofeed"), help="run one pipeline only")
    parser.add_argument("--recording", type=Path, help="replay this recording instead of the synthetic market")
    parser.add_argument("--interval", type=float, default=0.25, help="sampling interval, s (default 0.25)")
    parser.add_argument("--settle", type=float, default=8.0, help="idle seconds that end a run (default 8)")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest run, s (default 900)")
    parser.add_argument("--cryptofeed-python", type=Path,
                        default=Path(os.environ.get("CRYPTOFEED_PYTHON", DEFAULT_CRYPTOFEED_PYTHON)),
                        help="Python of the cryptofeed venv (default $CRYPTOFEED_PYTHON, else "
                             "../.bench-venvs/cryptofeed/bin/python next to the repository)")  # fmt: skip
    args = parser.parse_args()

    pipelines = [args.only] if args.only else ["tickflow", "cryptofeed"]
    if "cryptofeed" in pipelines and not args.cryptofeed_python.exists():
        print(f"vs_cryptofeed: no cryptofeed venv at {args.cryptofeed_python}; create it with\n"
              f"    bench/setup_cryptofeed.sh   (or pass --cryptofeed-python / set CRYPTOFEED_PYTHON)",
              file=sys.stderr)  # fmt: skip
        return 2
    bootstrap = load_settings().kafka.bootstrap_servers
    pipeline_cpus = "0" if args.pin else None

    venue = "recording" if args.recording else "tickflow simulate --synthetic"
    print(f"venue: {venue}")

    def simulator() -> Simulator:
        return Simulator(symbols=args.symbols, frames=args.frames, rate=args.rate, seed=args.seed,
                         recording=args.recording, cpus="1" if args.pin else None)  # fmt: skip

    # The symbols, as the simulator lists them (the recording replay lists none: its four are known).
    with simulator() as sim:
        listed = RECORDING_SYMBOLS if args.recording else sim.exchange_info()
    if not listed:
        print("vs_cryptofeed: the simulator serves no /api/v3/exchangeInfo (is its synthetic mode there?)",
              file=sys.stderr)  # fmt: skip
        return 2
    listed = listed[: args.symbols]
    venue_symbols = [s for s, _, _ in listed]
    cf_topics = [f"{key}-BINANCE-{base}-{quote}" for key in CRYPTOFEED_KEYS for _, base, quote in listed]
    created = ensure_topics(bootstrap, cf_topics)
    print(f"{len(venue_symbols)} symbols ({', '.join(venue_symbols[:4])}, ...); "
          f"{len(cf_topics)} cryptofeed topics ({created} created); broker {bootstrap}")  # fmt: skip
    counters = {"tickflow": EndOffsets(bootstrap, OUR_TOPICS), "cryptofeed": EndOffsets(bootstrap, cf_topics)}

    feeds_file = Path(tempfile.gettempdir()) / "tickflow-bench-feeds.yaml"
    results: list[Result] = []
    try:
        for r in range(args.repeat):
            order = pipelines if r % 2 == 0 else pipelines[::-1]
            for name in order:
                with simulator() as sim:
                    if name == "tickflow":
                        feed = {"venue": "binance-spot", "symbols": venue_symbols, "ws_url": f"ws://{sim.address}",
                                "rest_url": f"http://{sim.address}"}  # fmt: skip
                        feeds_file.write_text(yaml.safe_dump({"feeds": [feed]}))
                        argv = [TICKFLOW, "produce", "--feeds", str(feeds_file)]
                    else:
                        argv = [str(args.cryptofeed_python), str(REPO / "bench" / "cryptofeed_runner.py"),
                                "--url", sim.address, "--bootstrap", bootstrap,
                                "--symbols", ",".join(venue_symbols)]  # fmt: skip
                        if args.recording:
                            argv += ["--symbol-map", ",".join(f"{b}/{q}" for _, b, q in listed)]
                    result = measure(name, r + 1, pinned(argv, pipeline_cpus), counters[name],
                                     interval=args.interval, settle=args.settle, timeout=args.timeout)  # fmt: skip
                results.append(result)
                print(f"  repeat {r + 1} {name:10s}: {result.events:>9,} events in {result.wall_s:6.2f}s = "
                      f"{result.events_per_s:>9,.0f}/s; {result.cpu_s:6.2f} CPU-s = {result.cpu_us_per_event:6.1f} "
                      f"CPU-us/event ({result.events_per_cpu_s:,.0f}/CPU-s); peak RSS {result.peak_rss_mb:.0f} MB"
                      + ("" if result.complete else " (timed out)"), flush=True)  # fmt: skip
                print("      by kind: " + ", ".join(f"{k} {v:,}" for k, v in result.kinds.items())
                      + f"; second half of the events: {result.steady_events_per_s:,.0f}/s, "
                      f"{result.steady_events_per_cpu_s:,.0f}/CPU-s", flush=True)  # fmt: skip
    except RuntimeError as exc:
        print(f"vs_cryptofeed: error: {exc}", file=sys.stderr)
        return 1

    print(f"\n{args.frames:,} frames over {len(venue_symbols)} symbols per run, {args.repeat} repeat(s)"
          f"{', pipeline pinned to CPU 0, simulator to CPU 1' if args.pin else ''}; medians:\n")  # fmt: skip
    # CPU-seconds in the window: the same input for both, whatever each makes of it.
    print(
        "| pipeline | events | events/s (wall) | CPU-µs/event | events per CPU-second | peak RSS MB | CPU-s "
        "| 2nd half: events/s | 2nd half: events per CPU-second |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary: dict[str, object] = {"bench": "vs_cryptofeed", "frames": args.frames, "symbols": len(venue_symbols),
                                  "rate": args.rate, "repeat": args.repeat, "pinned": args.pin,
                                  "venue": venue}  # fmt: skip
    for name in pipelines:
        rs = [r for r in results if r.pipeline == name]
        med = {k: median([getattr(r, k) for r in rs]) for k in
               ("events", "events_per_s", "cpu_us_per_event", "events_per_cpu_s", "peak_rss_mb", "cpu_s",
                "steady_events_per_s", "steady_events_per_cpu_s")}  # fmt: skip
        print(f"| {name} | {med['events']:,.0f} | {med['events_per_s']:,.0f} | {med['cpu_us_per_event']:.1f} | "
              f"{med['events_per_cpu_s']:,.0f} | {med['peak_rss_mb']:.0f} | {med['cpu_s']:.1f} | "
              f"{med['steady_events_per_s']:,.0f} | {med['steady_events_per_cpu_s']:,.0f} |")  # fmt: skip
        summary[name] = {k: round(v, 1) for k, v in med.items()}
    if len(pipelines) == 2:
        ours = [r for r in results if r.pipeline == "tickflow"]
        theirs = [r for r in results if r.pipeline == "cryptofeed"]
        cpu_ratio = median([a.events_per_cpu_s / b.events_per_cpu_s for a, b in zip(ours, theirs, strict=True)])
        wall_ratio = median([a.events_per_s / b.events_per_s for a, b in zip(ours, theirs, strict=True)])
        print(f"\nratio tickflow / cryptofeed (median of per-repeat ratios): events per CPU-second "
              f"**{cpu_ratio:.1f}x** (target >= 5x: {'MET' if cpu_ratio >= 5 else 'NOT MET'}), "
              f"events per wall second {wall_ratio:.1f}x")  # fmt: skip
        summary["ratio_events_per_cpu_s"] = round(cpu_ratio, 2)
        summary["ratio_events_per_s"] = round(wall_ratio, 2)
    if "tickflow" in pipelines:
        ours_cpu = median([r.events_per_cpu_s for r in results if r.pipeline == "tickflow"])
        steady_cpu = median([r.steady_events_per_cpu_s for r in results if r.pipeline == "tickflow"])
        print(f"tickflow: {ours_cpu:,.0f} normalized events per CPU-second over the whole run, {steady_cpu:,.0f} "
              f"over its second half (target >= 50,000 on one core: whole run "
              f"{'MET' if ours_cpu >= 50_000 else 'NOT MET'}, steady state "
              f"{'MET' if steady_cpu >= 50_000 else 'NOT MET'})")  # fmt: skip
    summary["runs"] = [asdict(r) for r in results]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
