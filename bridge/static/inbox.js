// The live inbox page: history over REST, then the live stream through tidings.js.
// ?user_id= picks the user in insecure mode; ?token= carries a JWT in secure mode.
import { CloseCode, TidingsClient } from "/tidings.js";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const userId = params.get("user_id");
const credentials = token
  ? { Authorization: `Bearer ${token}` }
  : userId
    ? { "X-Tidings-User": userId }
    : {};

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const list = $("list");
const template = document.getElementById("item");
const typeFilter = $("type-filter");
const unreadOnly = $("unread-only");

/** id → {notification, element}, everything shown on the page. */
const items = new Map();
const types = new Set();
let unread = 0;
/** Bumped on every local change of the unread count, to spot stale REST answers. */
let changes = 0;

async function api(path, init = {}) {
  const response = await fetch(path, {
    ...init,
    headers: { ...credentials, ...(init.headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error?.message || `HTTP ${response.status}`);
  return body;
}

function note(text) {
  $("note").textContent = text;
}

function setUnread(n) {
  unread = Math.max(0, n);
  $("unread").textContent = String(unread);
  document.title = unread > 0 ? `(${unread}) Tidings · Inbox` : "Tidings · Inbox";
}

async function refreshUnread(tries = 3) {
  const before = changes;
  try {
    const { unread: n } = await api("/api/v1/notifications/unread_count");
    // Something changed while the answer was on its way: it may be stale.
    if (changes !== before && tries > 1) return refreshUnread(tries - 1);
    setUnread(n);
  } catch (error) {
    note(`Could not read the unread count: ${error.message}`);
  }
}

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
  element.classList.toggle("unread", !n.read);
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
  element.querySelector(".mark-read").addEventListener("click", () => markRead(n.id));
  return element;
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

function add(n) {
  if (items.has(n.id)) return false;
  const element = render(n);
  items.set(n.id, { notification: n, element });
  insert(element, n.id);
  if (!types.has(n.type)) {
    types.add(n.type);
    const option = document.createElement("option");
    option.value = option.textContent = n.type;
    typeFilter.appendChild(option);
  }
  applyFilter(element);
  return true;
}

function markedRead(id) {
  const item = items.get(id);
  if (item === undefined) {
    refreshUnread(); // not on the page: only the server knows whether it was unread
    return;
  }
  if (item.notification.read) return;
  item.notification.read = true;
  item.element.classList.remove("unread");
  applyFilter(item.element);
  changes += 1;
  setUnread(unread - 1);
}

function applyFilter(element) {
  const type = typeFilter.value;
  element.hidden =
    (type !== "" && element.dataset.type !== type) ||
    (unreadOnly.checked && !element.classList.contains("unread"));
  updateEmpty();
}

function updateEmpty() {
  const anyVisible = [...list.children].some((child) => !child.hidden);
  $("empty").hidden = anyVisible;
}

function applyFilters() {
  for (const { element } of items.values()) applyFilter(element);
  updateEmpty();
}

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

let client = null;

async function markRead(id) {
  if (client !== null && client.markRead(id)) return; // answered by a "read" event
  try {
    await api(`/api/v1/notifications/${id}/read`, { method: "POST" });
    markedRead(id);
  } catch (error) {
    note(`Could not mark it read: ${error.message}`);
  }
}

async function boot() {
  typeFilter.addEventListener("change", applyFilters);
  unreadOnly.addEventListener("change", applyFilters);
  $("user").textContent = userId ? `user ${userId}` : token ? "signed in" : "user 1";

  let since = 0;
  try {
    const page = await api("/api/v1/notifications?limit=50");
    for (const n of page.notifications) {
      add(n);
      since = Math.max(since, n.id);
    }
  } catch (error) {
    note(`Could not load the inbox: ${error.message}`);
  }
  updateEmpty();
  await refreshUnread();

  client = new TidingsClient({ token, userId, since });
  client.addEventListener("state", (event) => showState(event.detail));
  client.addEventListener("connected", (event) => {
    $("user").textContent = `user ${event.detail.user_id}`;
    note("");
    refreshUnread();
  });
  client.addEventListener("notification", (event) => {
    const n = event.detail;
    if (add(n) && !n.read) {
      changes += 1;
      setUnread(unread + 1);
    }
  });
  client.addEventListener("read", (event) => markedRead(event.detail.notification_id));
  client.addEventListener("servererror", (event) => note(event.detail.message));
  client.connect();
  window.tidings = client; // for the console
}

boot();
