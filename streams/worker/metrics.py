"""What a worker tells operators and orchestrators: /health, /ready and Prometheus /metrics.

    GET /health   200 while the process serves HTTP
    GET /ready    200 when every order-events partition assigned here is recovered and at most
                  `ready_max_lag` events behind; else 503; both with the partitions' figures
    GET /metrics  the Prometheus text format (prometheus-client), README "Metrics"

They sit on the worker's web server beside the order API, behind the same Host
check and token. Counters that the shell already keeps (the order book's
tally, deadlines pending, read positions) are read when scraped; the rest is
observed where it happens: deliveries and batches in the batch protocol,
deadline firings in the order agent.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import faust
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

OUTCOMES = ("in", "applied", "dead_lettered", "duplicates", "buffered")


class Metrics:
    """The worker's own registry (not the process-wide default one: tests run several workers)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.delivered = Counter("orderflow_records_delivered", "Records the batch protocol delivered, per topic "
                                 "(outputs, derived records, stock requests and changelogs).", ["topic"],
                                 registry=self.registry)
        self.delivery_failures = Counter("orderflow_delivery_failures", "Deliveries the broker refused or did not "
                                         "complete; each stops the worker before its batch is acknowledged.",
                                         registry=self.registry)
        self.batch_inputs = Histogram("orderflow_batch_inputs", "Input messages per batch, per input topic.",
                                      ["topic"], buckets=(0, 1, 10, 100, 500, 1000, 2000, 5000),
                                      registry=self.registry)
        self.batch_seconds = Histogram("orderflow_batch_seconds", "Time from a batch's deliveries to its "
                                       "acknowledgement (steps 2 to 5 of the batch protocol), per input topic.",
                                       ["topic"], registry=self.registry)
        self.timer_lag = Histogram("orderflow_timer_lag_seconds", "How long after its due time a deadline fired "
                                   "(by the worker's clock).", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                                                                       300, 3600), registry=self.registry)
        self.api_reads = Gauge("orderflow_api_reads", "Order API requests reading this worker's orders "
                               "(`running`, at most api_concurrency) and waiting for their turn.", ["state"],
                               registry=self.registry)
        self.api_abandoned = Counter("orderflow_api_requests_abandoned", "Order API requests whose work stopped "
                                     "because their client hung up.", registry=self.registry)

    def observe_batch(self, topic: str, inputs: int, started: float) -> None:
        self.batch_inputs.labels(topic).observe(inputs)
        self.batch_seconds.labels(topic).observe(time.monotonic() - started)

    def observe_firings(self, outputs: Iterable[dict], now_ms: int) -> None:
        """Once per deadline fired (an order's firing may give several outputs at its due time)."""
        for _, at in {(output["order_id"], output["at"]) for output in outputs}:
            self.timer_lag.observe(max(0, now_ms - at) / 1000)

    def watch(self, worker) -> None:
        """Figures read from the worker when scraped."""
        self.registry.register(_Scraped(worker))


class _Scraped(Collector):
    def __init__(self, worker):
        self.worker = worker

    def collect(self):
        events = CounterMetricFamily("orderflow_events", "Order events and stock replies through the order book, "
                                     "by outcome (in = applied + dead_lettered + duplicates + buffered).",
                                     labels=["outcome"])
        for outcome in OUTCOMES:
            events.add_metric([outcome], self.worker.book.tally[outcome])
        yield events
        yield GaugeMetricFamily("orderflow_deadlines_pending", "Deadlines pending in the partitions this worker "
                                "owns (RocksDB's estimate).", value=self.worker.pending_deadlines())
        state = self.worker.readiness()
        lag = GaugeMetricFamily("orderflow_consumer_lag", "Messages fetched by the broker's highwater and not yet "
                                "applied, per input partition of the order agent.", labels=["topic", "partition"])
        for (topic, partition), behind in sorted(state["lags"].items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        partitions = GaugeMetricFamily("orderflow_partitions", "order-events partitions assigned to this worker, "
                                       "and those recovered (restored, indexed, served).", labels=["state"])
        partitions.add_metric(["assigned"], len(state["assigned"]))
        partitions.add_metric(["recovered"], len(state["recovered"]))
        yield partitions


def register_health(worker) -> None:
    max_lag = worker.config.ready_max_lag

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "serving"})

    async def ready(_request: web.Request) -> web.Response:
        state = worker.readiness()
        lags = {f"{topic}/{partition}": behind for (topic, partition), behind in sorted(state["lags"].items())}
        waiting = sorted(set(state["assigned"]) - set(state["recovered"]))
        behind = {where: n for where, n in lags.items() if n > max_lag}
        is_ready = state["settled"] and not waiting and not behind
        return web.json_response({"ready": is_ready, "rebalancing": not state["settled"],
                                  "assigned": state["assigned"], "recovering": waiting, "lag": lags,
                                  "max_lag": max_lag}, status=200 if is_ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(worker.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    for path, handler in (("/health", health), ("/ready", ready), ("/metrics", metrics)):
        worker.app.page(path, name=handler.__name__)(_view(handler))


def _view(handler: Callable) -> type[faust.web.View]:
    class HealthView(faust.web.View):
        async def get(self, request: web.Request) -> web.Response:
            return await handler(request)
    return HealthView
