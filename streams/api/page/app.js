// The order centre: the seller tabs, the order list and an order's detail, over the order API of
// the worker that served this page (any worker answers for all). Every value is shown as text
// (textContent), never as markup. The view lives in the URL, so a link or a reload shows the same.
"use strict";

const TABS = ["Unpaid", "To ship", "Shipped", "Completed", "Cancelled"];
const FILTERS = ["region", "shop_id", "sku_id", "created_from", "created_to", "paid_from", "paid_to", "condition",
                 "due", "action_needed", "sort"];
const DEADLINE_WORDS = {SHIP_BY: "ships", UNPAID_TIMEOUT: "auto-cancels", CANCEL_REQUEST_TIMEOUT: "answer due",
                        AUTO_CONFIRM: "completes", REDELIVERY_WINDOW: "redelivery window ends",
                        REDELIVERY_DISPATCH: "redelivery due", SHIPMENT_STALLED: "carrier check",
                        REMORSE_PERIOD: "hold ends", AFTER_SALES_RESPONSE: "case answer due",
                        RETURN_SHIP_WINDOW: "return due back"};
// Deadlines of one package or one after-sales case are named KIND:id (the first package's: KIND alone).
const PACKAGE_DEADLINES = ["SHIPMENT_STALLED", "REDELIVERY_WINDOW", "REDELIVERY_DISPATCH"];
const CASE_DEADLINES = ["AFTER_SALES_RESPONSE", "RETURN_SHIP_WINDOW"];
const REFRESH_MS = 5000;
const TOKEN_KEY = "orderflow-token";

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// --- the view, in the URL ---

function view() {
  return new URLSearchParams(location.search);
}

function go(params, replace) {
  const url = location.pathname + (params.toString() ? "?" + params.toString() : "");
  (replace ? history.replaceState : history.pushState).call(history, null, "", url);
  render();
}

function apiParams(params) {
  // The order API's parameters of the view: its filters, sort, page size and cursor.
  const out = new URLSearchParams();
  for (const name of ["tab", ...FILTERS, "limit", "cursor"]) {
    if (params.get(name)) out.set(name, params.get(name));
  }
  return out;
}

function filterParams(params) {
  const out = apiParams(params);
  out.delete("sort"); out.delete("limit"); out.delete("cursor");
  return out;
}

// --- the API ---

class Unauthorised extends Error {}

function authorised() {
  // The token the seller signed in with, for this browser session only.
  const token = sessionStorage.getItem(TOKEN_KEY);
  return {headers: token ? {Authorization: "Bearer " + token} : {}};
}

async function api(path, params) {
  const response = await fetch(path + (params && params.toString() ? "?" + params.toString() : ""), authorised());
  if (response.status === 401) throw new Unauthorised();
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// --- showing ---

function localTime(ms, zone) {
  if (ms === null || ms === undefined) return "";
  const format = new Intl.DateTimeFormat("en-GB", {timeZone: zone || "UTC", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short"});
  return format.format(new Date(ms));
}

function duration(ms) {
  const minutes = Math.round(Math.abs(ms) / 60000);
  if (minutes < 60) return minutes + " min";
  const hours = Math.round(minutes / 60);
  if (hours < 48) return hours + " h";
  return Math.round(hours / 24) + " d";
}

function deadlineWords(name, firstPackage) {
  // "carrier check", "carrier check (package B)", "case answer due (case c1)": the words of the kind
  // (the part before ':'), and whose deadline it is. A plain package deadline is the first package's,
  // named when the order has several (`firstPackage`).
  const colon = name.indexOf(":");
  const kind = colon < 0 ? name : name.slice(0, colon);
  const id = colon < 0 ? (PACKAGE_DEADLINES.includes(kind) ? firstPackage : null) : name.slice(colon + 1);
  const words = DEADLINE_WORDS[kind] || kind.toLowerCase().replaceAll("_", " ");
  if (!id) return words;
  const owner = CASE_DEADLINES.includes(kind) ? "case " : PACKAGE_DEADLINES.includes(kind) ? "package " : "";
  return `${words} (${owner}${id})`;
}

function dueIn(deadline, now) {
  // "in 5 h", "overdue 3 h": by the worker's clock, which a demo runs fast.
  const left = deadline.due_at - now;
  return left >= 0 ? `in ${duration(left)}` : `overdue ${duration(left)}`;
}

function timeLeft(deadline, now) {
  // "ships in 5 h", "ships overdue 3 h".
  return deadline ? `${deadlineWords(deadline.name)} ${dueIn(deadline, now)}` : "";
}

function linesSummary(lines) {
  const shown = lines.slice(0, 2).map((line) => `${line.quantity} × ${line.product_name || line.sku_id}` +
    (line.status === "CANCELLED" ? " (cancelled)" : ""));
  return shown.join(", ") + (lines.length > 2 ? ` +${lines.length - 2} more` : "");
}

function showTabs(counts, params) {
  const nav = $("tabs");
  nav.replaceChildren();
  const current = params.get("tab") || "";
  for (const tab of ["", ...TABS]) {
    const button = el("button", null, "tab" + (tab === current ? " current" : ""));
    button.type = "button";
    button.dataset.tab = tab || "All";
    button.setAttribute("aria-pressed", String(tab === current));
    button.append(el("span", tab || "All", "name"), " ", el("span", tab ? counts.tabs[tab] : counts.total, "count"));
    button.addEventListener("click", () => {
      const next = view();
      if (tab) next.set("tab", tab); else next.delete("tab");
      next.delete("cursor"); next.delete("trail"); next.delete("order");
      go(next);
    });
    nav.append(button);
  }
}

function showOrders(page, params) {
  const body = $("orders").tBodies[0];
  body.replaceChildren();
  for (const order of page.orders) {
    const row = document.createElement("tr");
    row.dataset.orderId = order.order_id;
    const link = el("a", order.order_id, "order-id");
    link.href = "?" + withOrder(params, order.order_id).toString();
    link.addEventListener("click", (event) => { event.preventDefault(); go(withOrder(view(), order.order_id)); });
    const conditions = el("td", null, "conditions");
    for (const condition of order.conditions) conditions.append(el("span", condition, "badge"));
    const cells = [
      link, localTime(order.created_at, order.time_zone), localTime(order.paid_at, order.time_zone),
      order.buyer || "", linesSummary(order.lines), `${order.total_amount} ${order.currency}`, order.status,
      conditions, timeLeft(order.next_deadline, page.now),
    ];
    const labels = ["Order", "Created", "Paid", "Buyer", "Lines", "Total", "Status", "Conditions", "Next deadline"];
    cells.forEach((cell, n) => {
      const td = cell instanceof HTMLTableCellElement ? cell : el("td");
      if (cell instanceof HTMLAnchorElement) td.append(cell);
      else if (!(cell instanceof HTMLTableCellElement)) td.textContent = cell;
      td.dataset.label = labels[n];
      row.append(td);
    });
    body.append(row);
  }
  const trail = (params.get("trail") || "").split(",").filter(Boolean);
  $("previous").disabled = !params.get("cursor");
  $("next").disabled = !page.next_cursor;
  $("next").onclick = () => {
    const next = view();
    if (params.get("cursor")) next.set("trail", [...trail, params.get("cursor")].join(","));
    else next.set("trail", "");
    next.set("cursor", page.next_cursor);
    go(next);
  };
  $("previous").onclick = () => {
    const next = view();
    const back = trail.slice(0, -1);
    const cursor = trail[trail.length - 1];
    if (cursor) next.set("cursor", cursor); else next.delete("cursor");
    if (back.length) next.set("trail", back.join(",")); else next.delete("trail");
    if (!params.get("trail")) next.delete("trail");
    go(next);
  };
}

function fillForm(params) {
  const form = $("filters");
  for (const name of FILTERS) {
    const field = form.elements[name];
    if (field.type === "checkbox") field.checked = params.get(name) === "1";
    else field.value = params.get(name) || (name === "sort" ? "-created_at" : "");
  }
}

function orderPath(orderId) {
  // One order's path: an id the API's own paths would take for theirs is refused, not fetched.
  if (["counts", "export", ".", ".."].includes(orderId)) throw new Error(`no order ${orderId} can be shown here`);
  return encodeURIComponent(orderId);
}

function withOrder(params, orderId) {
  const next = new URLSearchParams(params);
  next.set("order", orderId);
  return next;
}

function listInto(id, items, text) {
  const list = $(id);
  list.replaceChildren(...(items.length ? items.map((item, index) => el("li", text(item, index))) : [el("li", "none")]));
}

function orderPackages(order) {
  // The order's packages; a worker of the version before packages answers with one carrier and
  // tracking number on the order: its one parcel.
  if (order.packages) return order.packages;
  if (!order.carrier) return [];
  return [{package_id: "1", line_ids: [], carrier: order.carrier, tracking_number: order.tracking_number,
           status: order.status, shipped_at: order.shipped_at, delivered_at: order.delivered_at,
           tracking: order.tracking || []}];
}

function showPackages(packages, zone) {
  // Each package: its id, status, carrier and tracking number, lines, times, then its own tracking.
  const list = $("packages");
  list.replaceChildren();
  if (!packages.length) list.append(el("li", "none shipped yet"));
  for (const parcel of packages) {
    const item = el("li", null, "package");
    item.dataset.packageId = parcel.package_id;
    const head = el("div", null, "package-head");
    head.append(el("strong", `Package ${parcel.package_id}`), " ", el("span", parcel.status, "badge"), " ",
                el("span", [parcel.carrier, parcel.tracking_number].filter(Boolean).join(" "), "carrier"));
    const lines = parcel.line_ids || [];
    const facts = [lines.length ? `${lines.length === 1 ? "line" : "lines"} ${lines.join(", ")}` : "",
                   parcel.shipped_at ? `shipped ${localTime(parcel.shipped_at, zone)}` : "",
                   parcel.delivered_at ? `delivered ${localTime(parcel.delivered_at, zone)}` : "",
                   parcel.failed ? `delivery failed ${localTime(parcel.failed.at, zone)} (${parcel.failed.reason})` +
                     (parcel.failed.redelivery_requested_at ? ", redelivery asked" : "") : ""];
    const tracking = el("ol", null, "package-tracking");
    const entries = parcel.tracking || [];
    tracking.replaceChildren(...(entries.length ? entries.map((entry) => el("li", trackingText(entry, zone)))
                                                : [el("li", "none")]));
    item.append(head, el("div", facts.filter(Boolean).join(", "), "package-facts"), tracking);
    list.append(item);
  }
}

function trackingText(entry, zone) {
  return `${localTime(entry.at, zone)}: ${entry.status}` + (entry.location ? ` at ${entry.location}` : "") +
    (entry.description ? `: ${entry.description}` : "");
}

function showDetail(order, opened) {
  const zone = order.time_zone;
  const packages = orderPackages(order);
  const firstPackage = packages.length > 1 ? packages[0].package_id : null;
  $("detail-title").textContent = `${order.order_id}: ${order.status}`;
  const facts = $("detail-facts");
  facts.replaceChildren();
  for (const [name, value] of [["Tab", order.tab], ["Region", order.region], ["Shop", order.shop_id],
                               ["Total", `${order.total_amount} ${order.currency}`],
                               ["Created", localTime(order.created_at, zone)], ["Paid", localTime(order.paid_at, zone)],
                               ["Packages", String(packages.length)]]) {
    facts.append(el("dt", name), el("dd", value));
  }
  listInto("timeline", order.history || [], (step) =>
    `${localTime(step.at, zone)}: ${step.from_status || "(new)"} → ${step.to_status} (${step.reason})`);
  showPackages(packages, zone);
  listInto("deadlines", order.deadlines || [], (deadline) =>
    `${deadlineWords(deadline.name, firstPackage)}: ${localTime(deadline.due_at, zone)} ` +
    `(${dueIn(deadline, order.now)})`);
  const conditions = order.conditions || {};
  listInto("lines", order.line_items || [], (line, index) => {
    // The worker names each line and its package (an older worker: by the line's id or place only).
    const shown = (order.lines || [])[index] || {};
    const lineId = shown.line_id || line.line_id || String(index + 1);
    // Stock and price conditions name their lines by position (confirmation in the lifecycle).
    const flags = Object.entries(conditions).filter(([, details]) => details && details.lines &&
      String(index) in details.lines).map(([name]) => name);
    // A line cancelled on its own: by the seller, or given up with its package.
    if (Object.hasOwn(order.cancelled_lines || {}, lineId)) flags.unshift("CANCELLED");
    return `${line.quantity} × ${line.product_name || ""} (${line.sku_id}) at ${line.unit_price}` +
      (shown.package_id ? `, package ${shown.package_id}` : "") + (flags.length ? ` [${flags.join(", ")}]` : "");
  });
  listInto("reviews", order.reviews || [], (review) => `${review.rating}/5 ${review.comment || ""}`);
  listInto("after-sales", order.after_sales || [], (item) =>
    `${item.kind} (${item.reason}), opened ${localTime(item.opened_at, zone)}` +
    (item.line_ids ? `, lines ${item.line_ids.join(", ")}` : "") +
    `, ${item.state || (item.outcome ? "CLOSED" : "REQUESTED")}` + (item.refunded ? ` (refunded ${item.refunded})` : ""));
  $("detail").hidden = false;
  if (opened) $("detail").scrollIntoView();
}

// --- the page ---

let renders = 0;  // the latest render: an older one that ends after it shows nothing

async function render(refresh) {
  const generation = ++renders;
  const params = view();
  if (!refresh) fillForm(params);  // a refresh leaves what the seller is typing alone
  $("error").hidden = true;
  try {
    const tabless = filterParams(params);
    tabless.delete("tab");  // every tab's count, under the other filters
    const orderId = params.get("order");
    const [counts, page, order] = await Promise.all([
      api("/orders/counts", tabless), api("/orders", apiParams(params)),
      orderId ? api("/orders/" + orderPath(orderId)) : null]);
    if (generation !== renders) return;
    $("signin").hidden = true;
    $("centre").hidden = false;
    showTabs(counts, params);
    showOrders(page, params);
    if (order) showDetail(order, !refresh);
    else $("detail").hidden = true;
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
    // For tests and tools: which render of which view is on the screen.
    document.body.dataset.loaded = `${generation}|${location.search}`;
  } catch (error) {
    if (generation !== renders) return;
    if (error instanceof Unauthorised) {
      $("centre").hidden = true;
      $("signin").hidden = false;
      return;
    }
    $("error").textContent = error.message;
    $("error").hidden = false;
  }
}

async function exportCsv() {
  // Through the export of the API, read as it streams in: the progress is the orders written so
  // far of those the counts say match.
  const params = filterParams(view());
  const progress = $("export-progress");
  delete progress.dataset.done;
  const expected = (await api("/orders/counts", params)).total;
  const response = await fetch("/orders/export?" + params.toString(), authorised());
  if (!response.ok) {
    progress.textContent = "export failed: " + response.status;
    return;
  }
  const reader = response.body.getReader();
  const chunks = [];
  const decoder = new TextDecoder();
  // Rows come in order-id order, a row per line item: an order is counted when its id first shows.
  let pending = "", header = true, last = null, written = 0;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    chunks.push(value);
    pending += decoder.decode(value, {stream: true});
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines) {
      const first = line.split(",")[0];
      if (header) header = false;
      else if (first !== last) { last = first; written += 1; }
    }
    progress.textContent = `exporting: ${Math.min(written, expected)} of about ${expected} orders`;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob(chunks, {type: "text/csv"}));
  link.download = "orders.csv";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  progress.textContent = "exported";
  progress.dataset.done = "1";
}

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const next = view();
  for (const name of FILTERS) {
    const field = event.target.elements[name];
    const value = field.type === "checkbox" ? (field.checked ? "1" : "") : field.value.trim();
    if (value) next.set(name, value); else next.delete(name);
  }
  next.delete("cursor"); next.delete("trail");
  go(next);
});
$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  render();
});
$("close").addEventListener("click", () => { const next = view(); next.delete("order"); go(next); });
$("export").addEventListener("click", () => {
  $("export").disabled = true;
  exportCsv().catch((error) => { $("export-progress").textContent = "export failed: " + (error.message || "sign in"); })
    .finally(() => { $("export").disabled = false; });
});
window.addEventListener("popstate", () => render());
render();
// Counts and the page shown refresh by themselves, at the same place (the URL's cursor).
setInterval(() => { if (!document.hidden) render(true); }, REFRESH_MS);
