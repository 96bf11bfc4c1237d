// The live inbox page: history over REST, then the live stream through tidings.js.
// ?user_id= picks the user in insecure mode; ?token= carries a JWT in secure mode.
//
// The server is the source of truth: every change (a mark, archive, delete, mute) is
// sent as a command and shown when its event comes back — from this tab or any other
// session of the user — and the badges are the server's counts, asked for after each.
import { CloseCode, TidingsClient, TidingsRest } from "/tidings.js";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const userId = params.get("user_id");
const rest = new TidingsRest({ token, userId });

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const list = $("list");
const template = document.getElementById("item");
const typeRow = document.getElementById("type-row");
const typeFilter = $("type-filter");
const unreadOnly = $("unread-only");

/** id → {notification, element}, everything shown on the page (both views). */
const items = new Map();
const types = new Set();
let muted = new Set();
let byType = {};
/** "inbox" or "archived". */
let view = "inbox";
let client = null;

function note(text) {
  $("note").textContent = text;
}

function live() {
  return client !== null && client.state === "open";
}

// --- counts -------------------------------------------------------------------------

let countsInFlight = false;
let countsAgain = false;

/** Ask for the counts; answers that would cross are coalesced into one more ask. */
function refreshCounts() {
  if (countsInFlight) {
    countsAgain = true;
    return;
  }
  countsInFlight = true;
  if (live() && client.getCounts()) return; // answered by a "counts" event
  rest.counts().then(showCounts, (error) => {
    countsInFlight = false;
    note(`Could not read the counts: ${error.message}`);
  });
}

function showCounts({ unread, unseen, by_type }) {
  countsInFlight = false;
  if (countsAgain) {
    countsAgain = false;
    refreshCounts();
  }
  $("unread").textContent = String(unread);
  const badge = $("unseen");
  badge.textContent = String(unseen);
  badge.dataset.count = String(unseen);
  document.title = unseen > 0 ? `(${unseen}) Tidings · Inbox` : "Tidings · Inbox";
  byType = by_type || {};
  for (const type of Object.keys(byType)) knowType(type);
  renderTypes();
}

// --- types and mutes ------------------------------------------------------------------

function knowType(type) {
  if (types.has(type)) return;
  types.add(type);
  const option = document.createElement("option");
  option.value = option.textContent = type;
  typeFilter.appendChild(option);
}

function renderTypes() {
  const rows = $("types");
  rows.replaceChildren();
  for (const type of [...types].sort()) {
    const row = typeRow.content.firstElementChild.cloneNode(true);
    row.dataset.type = type;
    row.querySelector(".name").textContent = type;
    const figures = byType[type] || { unread: 0, unseen: 0 };
    row.querySelector(".figures").textContent = `${figures.unread} unread · ${figures.unseen} new`;
    const box = row.querySelector(".mute");
    box.dataset.testid = `mute-${type}`;
    box.checked = muted.has(type);
    box.addEventListener("change", () => setMuted(type, box.checked));
    rows.appendChild(row);
  }
  for (const { notification, element } of items.values()) {
    element.classList.toggle("muted", muted.has(notification.type) && !notification.ignore_mutes);
  }
}

async function setMuted(type, on) {
  const next = new Set(muted);
  if (on) next.add(type);
  else next.delete(type);
  if (live() && client.updatePreferences([...next])) return; // answered by "preferences"
  try {
    showPreferences(await rest.updatePreferences([...next]));
  } catch (error) {
    note(`Could not change the mutes: ${error.message}`);
    renderTypes();
  }
}

function showPreferences({ muted_types }) {
  muted = new Set(muted_types);
  for (const type of muted) knowType(type);
  renderTypes();
  refreshCounts();
}

// --- the list -----------------------------------------------------------------------

function formatTime(iso) {
  const when = new Date(iso);
  const sameDay = when.toDateString() === new Date().toDateString();
  return sameDay
    ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function render(n) {
  const element = template.content.firstElementChild.cloneNode(true);
  element.dataset.id = String(n.id);
  element.dataset.type = n.type;
  const priority = element.querySelector(".priority");
  priority.textContent = n.priority;
  priority.dataset.priority = n.priority;
  element.querySelector(".type").textContent = n.type;
  const time = element.querySelector("time");
  time.dateTime = n.created_at;
  time.textContent = formatTime(n.created_at);
  time.title = n.created_at;
  element.querySelector(".title").textContent = n.title;
  element.querySelector(".message").textContent = n.message;
  element.querySelector(".mark-read").addEventListener("click", () => act("markRead", n.id));
  element.querySelector(".archive").addEventListener("click", () => act("archive", n.id));
  element.querySelector(".unarchive").addEventListener("click", () => act("unarchive", n.id));
  element.querySelector(".delete").addEventListener("click", () => act("delete", n.id));
  return element;
}

function paint({ notification: n, element }) {
  element.classList.toggle("unread", !n.read);
  element.classList.toggle("unseen", !n.seen);
  element.classList.toggle("archived", Boolean(n.archived));
  element.classList.toggle("muted", muted.has(n.type) && !n.ignore_mutes);
  applyFilter(element, n);
}

/** Newest first: most arrivals are the newest, so the scan stops at once. */
function insert(element, id) {
  for (const child of list.children) {
    if (Number(child.dataset.id) < id) {
      list.insertBefore(element, child);
      return;
    }
  }
  list.appendChild(element);
}

/** Show a notification (or refresh the one shown with the same id). */
function add(n) {
  const known = items.get(n.id);
  if (known !== undefined) {
    known.notification = { ...known.notification, ...n };
    paint(known);
    return false;
  }
  const item = { notification: { ...n }, element: render(n) };
  items.set(n.id, item);
  insert(item.element, n.id);
  knowType(n.type);
  paint(item);
  updateEmpty();
  return true;
}

function update(id, change) {
  const item = items.get(id);
  if (item === undefined) return false;
  Object.assign(item.notification, change);
  paint(item);
  updateEmpty();
  return true;
}

function remove(id) {
  const item = items.get(id);
  if (item === undefined) return;
  items.delete(id);
  item.element.remove();
  updateEmpty();
}

function applyFilter(element, n) {
  const type = typeFilter.value;
  element.hidden =
    Boolean(n.archived) !== (view === "archived") ||
    (type !== "" && n.type !== type) ||
    (unreadOnly.checked && n.read);
}

function updateEmpty() {
  const anyVisible = [...list.children].some((child) => !child.hidden);
  const empty = $("empty");
  empty.hidden = anyVisible;
  empty.textContent =
    view === "archived" ? "Nothing archived." : "No notifications yet. They appear here as they arrive.";
}

function applyFilters() {
  for (const { notification, element } of items.values()) applyFilter(element, notification);
  updateEmpty();
}

async function load(filters) {
  try {
    const page = await rest.list({ limit: 50, ...filters });
    for (const n of page.notifications) add(n);
    return page.notifications;
  } catch (error) {
    note(`Could not load the inbox: ${error.message}`);
    return [];
  }
}

async function showView(name) {
  view = name;
  $("view-inbox").setAttribute("aria-pressed", String(name === "inbox"));
  $("view-archived").setAttribute("aria-pressed", String(name === "archived"));
  document.body.dataset.view = name;
  applyFilters();
  if (name === "archived") await load({ archived: true });
}

// --- acting -------------------------------------------------------------------------

const REST_ACTIONS = {
  markRead: (id) => rest.markRead(id),
  archive: (id) => rest.archive(id),
  unarchive: (id) => rest.unarchive(id),
  delete: (id) => rest.delete(id),
};

/** Over the socket when it is open (the event that comes back updates the page), else
 * over REST (and the page is updated from the answer). */
async function act(action, id) {
  if (live() && client[action](id)) return;
  try {
    const answer = await REST_ACTIONS[action](id);
    if (action === "delete") remove(id);
    else if (answer) add(answer);
    refreshCounts();
  } catch (error) {
    note(`Could not ${action === "markRead" ? "mark it read" : action} it: ${error.message}`);
  }
}

/** The bell was opened: everything shown so far is seen. */
async function openBell() {
  const newest = Math.max(0, ...items.keys());
  if (live() && client.markSeen(newest)) return; // answered by "seen"
  try {
    const { up_to_id } = await rest.markSeen(newest);
    seenUpTo(up_to_id);
  } catch (error) {
    note(`Could not mark them seen: ${error.message}`);
  }
}

async function markAllRead() {
  if (live() && client.markAllRead()) return; // answered by "readall"
  try {
    const { up_to_id } = await rest.markAllRead();
    readUpTo(up_to_id, null);
  } catch (error) {
    note(`Could not mark all read: ${error.message}`);
  }
}

function seenUpTo(upToId) {
  for (const [id, item] of items) {
    if (id <= upToId && !item.notification.seen) update(id, { seen: true });
  }
  refreshCounts();
}

function readUpTo(upToId, type) {
  for (const [id, item] of items) {
    if (id <= upToId && !item.notification.read && (type === null || item.notification.type === type)) {
      update(id, { read: true });
    }
  }
  refreshCounts();
}

// --- the connection -----------------------------------------------------------------

function showState({ state, code, retryIn }) {
  const badge = $("state");
  badge.dataset.state = state;
  const seconds = retryIn === null ? 0 : Math.ceil(retryIn / 1000);
  let label = "Connecting…";
  if (state === "open") label = "Live";
  else if (state === "waiting" && code === CloseCode.DISCONNECTED)
    label = `Disconnected by an operator · retrying in ${seconds}s`;
  else if (state === "waiting") label = seconds > 0 ? `Reconnecting in ${seconds}s…` : "Reconnecting…";
  else if (state === "closed" && code === CloseCode.UNAUTHORIZED) label = "Not authorized";
  else if (state === "closed") label = "Offline";
  badge.querySelector(".label").textContent = label;
}

async function boot() {
  typeFilter.addEventListener("change", applyFilters);
  unreadOnly.addEventListener("change", applyFilters);
  $("bell").addEventListener("click", openBell);
  $("mark-all-read").addEventListener("click", markAllRead);
  $("view-inbox").addEventListener("click", () => showView("inbox"));
  $("view-archived").addEventListener("click", () => showView("archived"));
  $("user").textContent = userId ? `user ${userId}` : token ? "signed in" : "user 1";
  document.body.dataset.view = view;

  try {
    showPreferences(await rest.preferences());
  } catch (error) {
    note(`Could not read the preferences: ${error.message}`);
  }
  const history = await load({});
  const since = Math.max(0, ...history.map((n) => n.id));
  updateEmpty();
  refreshCounts();

  client = new TidingsClient({ token, userId, since });
  client.addEventListener("state", (event) => {
    showState(event.detail);
    if (event.detail.state !== "open") countsInFlight = false; // an ask lost with the socket
  });
  client.addEventListener("connected", (event) => {
    $("user").textContent = `user ${event.detail.user_id}`;
    note("");
    refreshCounts();
  });
  client.addEventListener("notification", (event) => {
    add(event.detail);
    refreshCounts();
  });
  client.addEventListener("read", (event) => {
    update(event.detail.notification_id, { read: true });
    refreshCounts();
  });
  client.addEventListener("seen", (event) => seenUpTo(event.detail.up_to_id));
  client.addEventListener("readall", (event) => readUpTo(event.detail.up_to_id, event.detail.notification_type));
  client.addEventListener("archived", (event) => {
    update(event.detail.notification_id, { archived: true });
    refreshCounts();
  });
  client.addEventListener("unarchived", async (event) => {
    if (!update(event.detail.notification_id, { archived: false })) await load({});
    refreshCounts();
  });
  client.addEventListener("deleted", (event) => {
    remove(event.detail.notification_id);
    refreshCounts();
  });
  client.addEventListener("counts", (event) => showCounts(event.detail));
  client.addEventListener("preferences", (event) => showPreferences(event.detail));
  client.addEventListener("servererror", (event) => note(event.detail.message));
  client.connect();
  window.tidings = client; // for the console
}

boot();
