"""The order API served by each worker over HTTP (Faust web views).

    GET /orders             a page of order summaries: filters, sort, cursor (order_query)
    GET /orders/counts      counts per seller tab and per status, same filters
    GET /orders/export      the seller-centre export as CSV, streamed (export)
    GET /orders/{order_id}  one order: status, tab, conditions, history, packages and their tracking, deadlines,
                            reviews, after-sales
    GET /centre/            the order centre, a page over the above (streams/api/page/)

Any worker answers for all: it asks every other worker of the group (their web
URLs come from Faust's partition assignor) the same question with `local=1`,
which answers from that worker's active partitions only, and merges the
answers. One order is asked of the worker that owns its partition.

Loopback only by default, answering only requests whose Host is a loopback
name (DNS rebinding). With an api_token (required to bind any other address)
every request needs `Authorization: Bearer <api_token>`; the fan-out sends it
on: over HTTPS to peers checked against peer_ca when the workers have a
web_cert, and then to no peer over plain HTTP.

Reading this worker's orders (stored_orders) takes one of api_concurrency
slots and stops when the client hangs up; a fan-out whose part fails cancels
the others.
"""
from __future__ import annotations

import asyncio
import functools
import hmac
import importlib.resources
import io
import ipaddress
import logging
from typing import Awaitable, Callable, Mapping

import aiohttp
import faust
from aiohttp import web
from yarl import URL

from orderflow.tables.orders import TABLE_NAME

from orderflow.streams.api.export import CsvWriter, time_zones, write_orders
from orderflow.streams.api.stored_orders import PartitionsMoved, Pause, StoredOrders
from orderflow.streams.config import Config, peer_tls
from orderflow.streams.api.order_query import (FILTER_PARAMS, MAX_LIMIT, PAGE_PARAMS, Filters, Query, QueryError,
                                               check_known, counts, detail, flag, summary)

log = logging.getLogger("orderflow.api")

# The order centre (streams/api/page/): its files, shipped in the package, served as they are.
PAGE_PATH = "/centre/"
PAGE_FILES = {"": ("index.html", "text/html"), "app.js": ("app.js", "text/javascript"),
              "app.css": ("app.css", "text/css")}
PEER_TIMEOUT = aiohttp.ClientTimeout(total=60)


class PeerError(Exception):
    """Another worker did not answer; a partial answer would be silently wrong."""


class ClientGone(Exception):
    """The client hung up: its request's work stops."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config) -> None:
    """Refuse to serve orders to the network without a token."""
    if not is_loopback(config.web_bind) and not config.api_token:
        raise ValueError(f"web_bind {config.web_bind!r} is not a loopback address: set api_token "
                         "(ORDERFLOW_API_TOKEN) so that the order API demands it, or bind 127.0.0.1")


def _json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None, **extra) -> web.Response:
    return _json({"error": message, **extra}, status, headers)


def _params(request: web.Request) -> dict[str, str]:
    """Query parameters; a repeated one (status=A&status=B) reads as a list (status=A,B)."""
    return {name: ",".join(request.query.getall(name)) for name in request.query.keys()}


def _require_token(token: str):
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler):
        if request.path.startswith(PAGE_PATH):  # the page's own files hold no order: it asks for the token
            return await handler(request)
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            return _error(401, "missing or wrong token: send Authorization: Bearer <api_token>",
                          headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)
    return require_token


def _require_loopback_host():
    """A page the operator's browser opens elsewhere could reach a loopback API by rebinding its own
    name to 127.0.0.1 (DNS rebinding); its requests still carry that name in Host, so only loopback
    names are answered."""
    @web.middleware
    async def require_loopback_host(request: web.Request, handler):
        try:
            host = URL(f"//{request.host}").host if request.host else None
        except ValueError:  # not a host name at all
            host = None
        if not host or not is_loopback(host):
            return _error(403, f"Host {request.host!r} is not a loopback name: this API, bound to loopback, "
                               "answers only requests addressed to it (127.0.0.1, ::1 or localhost)")
        return await handler(request)
    return require_loopback_host


def _check_client(request: web.Request) -> None:
    if request.transport is None or request.transport.is_closing():
        raise ClientGone()


async def _watch_client(request: web.Request, tasks: list[asyncio.Task]) -> None:
    """Stop a fan-out (ClientGone cancels its parts, closing the requests to the peers) once its
    client hangs up."""
    while not all(task.done() for task in tasks):
        _check_client(request)
        await asyncio.sleep(0.05)


class OrderApi:
    """The handlers, over one worker's orders table and its peers' web servers."""

    def __init__(self, worker):
        self.worker = worker
        self.app: faust.App = worker.app
        self.orders = worker.orders
        self.zone_of = time_zones(worker.book.policy)
        self.covers = worker.book.policy.covers()
        token = worker.config.api_token
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._tls = peer_tls(worker.config)
        self._https_only = bool(worker.config.web_cert or worker.config.peer_ca)
        self.stored = StoredOrders(worker.orders, self._active)
        if worker.config.api_concurrency < 1:
            raise ValueError(f"api_concurrency must be 1 or more, not {worker.config.api_concurrency}")
        self._slots = asyncio.Semaphore(worker.config.api_concurrency)

    # --- this worker's orders ---

    def _active(self) -> list[int]:
        changelog = self.worker.orders_table.changelog_topic_name
        return [tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == changelog]

    async def _local(self, request: web.Request, work: Callable[[Pause], Awaitable]):
        """Run `work` over this worker's orders once one of the api_concurrency slots is free;
        stop it (ClientGone) when the client hangs up."""
        async def pause() -> None:
            await asyncio.sleep(0)
            _check_client(request)
        reads = self.worker.metrics.api_reads
        with reads.labels("waiting").track_inprogress():
            await self._slots.acquire()
        try:
            _check_client(request)
            with reads.labels("running").track_inprogress():
                return await work(pause)
        finally:
            self._slots.release()

    # --- the other workers ---

    def _me(self) -> URL:
        return URL(str(self.app.conf.canonical_url))

    def _peers(self) -> list[URL]:
        return [url for url in map(URL, self.app.router.tables_metadata()) if url != self._me()]

    async def _ask(self, url: URL, path: str, params: Mapping[str, str], accept=(200,)) -> tuple[int, dict]:
        target = url.with_path(path).with_query({**params, "local": "1"})
        if self._https_only and url.scheme != "https":
            raise PeerError(f"worker {url} did not answer: it serves plain HTTP, and this worker (web_cert, "
                            "peer_ca) sends its requests and token to peers over HTTPS only")
        try:
            async with self.app.http_client.get(target, headers=self._auth, timeout=PEER_TIMEOUT,
                                                ssl=self._tls if url.scheme == "https" else None) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise PeerError(f"worker {url} did not answer: {exc or type(exc).__name__}") from exc
        if response.status not in accept:
            raise PeerError(f"worker {url} answered {response.status}: {body.get('error')}")
        return response.status, body

    async def _everywhere(self, request: web.Request, mine: Awaitable, path: str, params: Mapping[str, str],
                          local: bool):
        """This worker's answer and, unless `local`, every other worker's for the same request. The
        first to fail cancels the others (a client gone stops the peers' work too)."""
        peers = () if local else self._peers()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(mine)] + [group.create_task(self._ask(url, path, params)) for url in peers]
                if peers:  # this worker's part may end without a pause while the peers' go on
                    group.create_task(_watch_client(request, tasks))
        except ExceptionGroup as failed:
            for other in failed.exceptions[1:]:
                log.info("%s: also failed: %r", request.path, other)
            raise failed.exceptions[0] from None
        return tasks[0].result(), [task.result()[1] for task in tasks[1:]]

    async def _page(self, request: web.Request, query: Query, params: Mapping[str, str], local: bool,
                    show: Callable[[dict], dict]) -> tuple[list[dict], str | None]:
        mine, answers = await self._everywhere(
            request, self._local(request, lambda pause: self.stored.page(query, pause)), "/orders", params, local)
        shown = [show(order) for order in mine]
        if not answers:
            return query.page(shown)
        return query.merge([shown] + [a["orders"] for a in answers], more=any(a["next_cursor"] for a in answers))

    # --- the handlers ---

    async def list_orders(self, request: web.Request) -> web.Response:
        params = _params(request)
        self._judge_now(params)
        check_known(params, FILTER_PARAMS + PAGE_PARAMS + ("detail", "include_personal_data", "local"))
        query = Query.parse(params)
        shown = (functools.partial(detail, include_personal_data=flag(params, "include_personal_data"))
                 if flag(params, "detail") else summary)
        orders, cursor = await self._page(request, query, params, flag(params, "local"),
                                          lambda order: self._zoned(shown(order)))
        # The worker's clock: what "ships in 5 h" counts from (a demo's clock runs fast).
        return _json({"orders": orders, "next_cursor": cursor, "covers": self.covers, "now": query.filters.now})

    def _judge_now(self, params: dict[str, str]) -> None:
        """The urgency views' time (`now`, the worker's clock unless given), passed on to the other
        workers too, so that all judge at one instant."""
        params.setdefault("now", str(self.worker.clock.now()))

    def _zoned(self, shown: dict) -> dict:
        """An order as shown, with its region's time zone (for the times a seller reads)."""
        return {**shown, "time_zone": self.zone_of(shown.get("region")).key}

    async def count_orders(self, request: web.Request) -> web.Response:
        params = _params(request)
        self._judge_now(params)
        check_known(params, FILTER_PARAMS + ("local",))
        filters = Filters.parse(params)
        statuses, answers = await self._everywhere(
            request, self._local(request, lambda pause: self.stored.statuses(filters, pause)), "/orders/counts", params,
            flag(params, "local"))
        for answer in answers:
            statuses.update(answer["statuses"])
        return _json({**counts(statuses), "covers": self.covers, "now": filters.now})

    async def one_order(self, request: web.Request, order_id: str) -> web.Response:
        params = _params(request)
        check_known(params, ("include_personal_data", "local"))
        personal = flag(params, "include_personal_data")
        if not flag(params, "local"):
            try:
                owner = URL(str(self.app.router.key_store(TABLE_NAME, order_id.encode())))
            except KeyError:
                return _error(503, "the workers are sharing out the partitions: try again shortly",
                              headers={"Retry-After": "2"})
            if owner != self._me():
                status, body = await self._ask(owner, request.path, params, accept=(200, 404))
                return _json(body, status)
        order = self.orders.lookup(order_id)
        if order is None or order.get("status") is None:
            return _error(404, f"no order {order_id!r}", order_id=order_id)
        return _json({**self._zoned(detail(order, personal)), "now": self.worker.clock.now()})

    async def export_orders(self, request: web.Request) -> web.StreamResponse:
        """The export as CSV, page after page in order-id order, so neither this worker nor
        the client holds more than a page."""
        params = _params(request)
        self._judge_now(params)
        check_known(params, FILTER_PARAMS + ("format", "include_personal_data", "local"))
        if params.get("format", "csv") != "csv":
            raise QueryError("format", "only csv streams over HTTP; for xlsx use `orderflow export --format xlsx`")
        personal, local = flag(params, "include_personal_data"), flag(params, "local")
        page_params = {**{name: params[name] for name in FILTER_PARAMS if name in params},
                       "sort": "order_id", "limit": str(MAX_LIMIT), "detail": "1",
                       "include_personal_data": "1" if personal else "0"}
        query = Query.parse(page_params)
        response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                               "Content-Disposition": 'attachment; filename="orders.csv"',
                                               "X-Orders-Cover": self.covers})
        await response.prepare(request)
        buffer = io.StringIO()
        buffer.write("\ufeff")  # Excel reads UTF-8 only with a byte-order mark
        writer = CsvWriter(buffer)
        show = functools.partial(detail, include_personal_data=personal)
        while True:
            try:
                orders, cursor = await self._page(request, query, page_params, local, show)
            except PeerError as exc:
                # The status line is sent: dropping the connection is how the client learns the file is cut short.
                log.warning("export cut short: %s", exc)
                raise ConnectionAbortedError(str(exc)) from exc
            write_orders(orders, writer, self.zone_of, personal)
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
            if cursor is None:
                break
            page_params["cursor"] = cursor
            query = query.resume(cursor)
        await response.write_eof()
        return response


def _view(handler: Callable[..., Awaitable[web.StreamResponse]], gone: Callable[[], None]) -> type[faust.web.View]:
    class OrderView(faust.web.View):
        async def get(self, request: web.Request, **match: str) -> web.StreamResponse:
            try:
                return await handler(request, **match)
            except QueryError as exc:
                return _error(400, str(exc), parameter=exc.param)
            except PeerError as exc:
                log.warning("%s", exc)
                return _error(502, str(exc))
            except ClientGone:
                gone()
                return _error(499, "the client closed the connection")  # nobody reads it
            except PartitionsMoved:
                return _error(503, "the workers are sharing out the partitions: try again shortly",
                              headers={"Retry-After": "2"})
    return OrderView


def _page_view() -> type[faust.web.View]:
    files = importlib.resources.files("orderflow.streams.api") / "page"

    class PageView(faust.web.View):
        async def get(self, request: web.Request, name: str = "") -> web.Response:
            if name not in PAGE_FILES:
                return _error(404, f"no file {name!r} in the order centre")
            file, content_type = PAGE_FILES[name]
            return web.Response(body=(files / file).read_bytes(), content_type=content_type, charset="utf-8",
                                headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                                         "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})
    return PageView


def register_views(worker) -> None:
    """Add the order API's routes to the worker's Faust app (refusing an exposed API without a token)."""
    check_exposure(worker.config)
    api = OrderApi(worker)
    # On the aiohttp application itself, so that Faust's own pages (/router) are covered too.
    if is_loopback(worker.config.web_bind):
        worker.app.web.web_app.middlewares.append(_require_loopback_host())
    if worker.config.api_token:
        worker.app.web.web_app.middlewares.append(_require_token(worker.config.api_token))
    # Fixed paths before /orders/{order_id}, which would match them too.
    for path, handler in (("/orders", api.list_orders), ("/orders/counts", api.count_orders),
                          ("/orders/export", api.export_orders), ("/orders/{order_id}", api.one_order)):
        worker.app.page(path, name=handler.__name__)(_view(handler, worker.metrics.api_abandoned.inc))
    worker.app.page(PAGE_PATH, name="order_centre")(_page_view())
    worker.app.page(PAGE_PATH + "{name}", name="order_centre_file")(_page_view())
