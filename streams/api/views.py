"""The order API served by each worker over HTTP (Faust web views).

    GET /orders             a page of order summaries: filters, sort, cursor (order_query)
    GET /orders/counts      counts per seller tab and per status, same filters
    GET /orders/export      the seller-centre export as CSV, streamed (export)
    GET /orders/{order_id}  one order: status, tab, conditions, history, tracking, deadlines, reviews, after-sales

Any worker answers for all: it asks every other worker of the group (their web
URLs come from Faust's partition assignor) the same question with `local=1`,
which answers from that worker's active partitions only, and merges the
answers. One order is asked of the worker that owns its partition.

Loopback only by default, answering only requests whose Host is a loopback
name (DNS rebinding). With an api_token (required to bind any other address)
every request needs `Authorization: Bearer <api_token>`; the fan-out sends it
on.
"""
from __future__ import annotations

import asyncio
import functools
import heapq
import hmac
import io
import ipaddress
import itertools
import logging
from collections import Counter
from typing import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping

import aiohttp
import faust
from aiohttp import web
from yarl import URL

from orderflow.tables.direct import partition_db
from orderflow.tables.json_table import decode
from orderflow.tables.orders import TABLE_NAME

from orderflow.streams.api.export import CsvWriter, time_zones, write_orders
from orderflow.streams.config import Config
from orderflow.streams.api.order_query import (FILTER_PARAMS, MAX_LIMIT, PAGE_PARAMS, Filters, Query, QueryError,
                                               check_known, counts, detail, summary)

log = logging.getLogger("orderflow.api")

# Orders scanned between two yields to the event loop, so that a scan of a large
# table never holds up the agent or the consumer's heartbeats.
SCAN_CHUNK = 1000
PEER_TIMEOUT = aiohttp.ClientTimeout(total=60)


class PeerError(Exception):
    """Another worker did not answer; a partial answer would be silently wrong."""


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


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "0").lower()
    if value not in ("0", "1", "false", "true"):
        raise QueryError(name, f"use 1 or 0, not {value!r}")
    return value in ("1", "true")


def _require_token(token: str):
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler):
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


async def _chunks(orders: Iterable[dict]) -> AsyncIterator[list[dict]]:
    it = iter(orders)
    while chunk := list(itertools.islice(it, SCAN_CHUNK)):
        yield chunk
        await asyncio.sleep(0)


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

    # --- this worker's orders ---

    def _orders_by_id(self, after: str | None) -> Iterator[dict]:
        """This worker's orders in id order, from just after `after`: a RocksDB seek per
        active partition, so a page costs its own size (Faust's store has no seek of its own)."""
        table = self.worker.orders_table
        start = after.encode() + b"\0" if after is not None else None
        scans = [partition_db(table, tp.partition).items(from_key=start) for tp in self.app.assignor.assigned_actives()
                 if tp.topic == table.changelog_topic_name]
        for key, value in heapq.merge(*scans, key=lambda item: item[0]):
            if key != table.data.offset_key:
                yield decode(value)

    async def _candidates(self, query: Query) -> list[dict]:
        """The local orders of the query's page, plus one if another page follows."""
        by_id = query.sort == "order_id"
        source = self._orders_by_id(query.resume_after_id) if by_id else (o for _, o in self.orders.items())
        best: list[dict] = []
        async for chunk in _chunks(source):
            best = query.select(itertools.chain(best, chunk))
            if by_id and len(best) > query.limit:
                break  # the source is in sort order: nothing later can enter the page
        return best

    async def _statuses(self, filters: Filters) -> Counter:
        statuses: Counter = Counter()
        async for chunk in _chunks(o for _, o in self.orders.items()):
            statuses.update(o["status"] for o in chunk if filters.accepts(o))
        return statuses

    # --- the other workers ---

    def _me(self) -> URL:
        return URL(str(self.app.conf.canonical_url))

    def _peers(self) -> list[URL]:
        return [url for url in map(URL, self.app.router.tables_metadata()) if url != self._me()]

    async def _ask(self, url: URL, path: str, params: Mapping[str, str], accept=(200,)) -> tuple[int, dict]:
        target = url.with_path(path).with_query({**params, "local": "1"})
        try:
            async with self.app.http_client.get(target, headers=self._auth, timeout=PEER_TIMEOUT) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise PeerError(f"worker {url} did not answer: {exc or type(exc).__name__}") from exc
        if response.status not in accept:
            raise PeerError(f"worker {url} answered {response.status}: {body.get('error')}")
        return response.status, body

    async def _everywhere(self, mine: Awaitable, path: str, params: Mapping[str, str], local: bool):
        """This worker's answer and, unless `local`, every other worker's for the same request."""
        peers = () if local else self._peers()
        results = await asyncio.gather(mine, *(self._ask(url, path, params) for url in peers))
        return results[0], [body for _, body in results[1:]]

    async def _page(self, query: Query, params: Mapping[str, str], local: bool,
                    show: Callable[[dict], dict]) -> tuple[list[dict], str | None]:
        mine, answers = await self._everywhere(self._candidates(query), "/orders", params, local)
        shown = [show(order) for order in mine]
        if not answers:
            return query.page(shown)
        return query.merge([shown] + [a["orders"] for a in answers], more=any(a["next_cursor"] for a in answers))

    # --- the handlers ---

    async def list_orders(self, request: web.Request) -> web.Response:
        params = _params(request)
        check_known(params, FILTER_PARAMS + PAGE_PARAMS + ("detail", "include_personal_data", "local"))
        query = Query.parse(params)
        show = (functools.partial(detail, include_personal_data=_flag(params, "include_personal_data"))
                if _flag(params, "detail") else summary)
        orders, cursor = await self._page(query, params, _flag(params, "local"), show)
        return _json({"orders": orders, "next_cursor": cursor, "covers": self.covers})

    async def count_orders(self, request: web.Request) -> web.Response:
        params = _params(request)
        check_known(params, FILTER_PARAMS + ("local",))
        filters = Filters.parse(params)
        statuses, answers = await self._everywhere(self._statuses(filters), "/orders/counts", params,
                                                   _flag(params, "local"))
        for answer in answers:
            statuses.update(answer["statuses"])
        return _json({**counts(statuses), "covers": self.covers})

    async def one_order(self, request: web.Request, order_id: str) -> web.Response:
        params = _params(request)
        check_known(params, ("include_personal_data", "local"))
        personal = _flag(params, "include_personal_data")
        if not _flag(params, "local"):
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
        return _json(detail(order, personal))

    async def export_orders(self, request: web.Request) -> web.StreamResponse:
        """The export as CSV, page after page in order-id order, so neither this worker nor
        the client holds more than a page."""
        params = _params(request)
        check_known(params, FILTER_PARAMS + ("format", "include_personal_data", "local"))
        if params.get("format", "csv") != "csv":
            raise QueryError("format", "only csv streams over HTTP; for xlsx use `orderflow export --format xlsx`")
        personal, local = _flag(params, "include_personal_data"), _flag(params, "local")
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
                orders, cursor = await self._page(query, page_params, local, show)
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


def _view(handler: Callable[..., Awaitable[web.StreamResponse]]) -> type[faust.web.View]:
    class OrderView(faust.web.View):
        async def get(self, request: web.Request, **match: str) -> web.StreamResponse:
            try:
                return await handler(request, **match)
            except QueryError as exc:
                return _error(400, str(exc), parameter=exc.param)
            except PeerError as exc:
                log.warning("%s", exc)
                return _error(502, str(exc))
    return OrderView


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
        worker.app.page(path, name=handler.__name__)(_view(handler))
