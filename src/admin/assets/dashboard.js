// sticky-proxy's dashboard: reads /api/status and /api/pools every 2 s, shows them
// (dashboard-pools.js draws the pools) and posts the backend actions to the admin API. Served
// from the binary (src/admin/assets/); no dependencies. The admin token lives in this tab's
// sessionStorage and is only ever sent as an `Authorization: Bearer` header, never in a URL.
// Every text is set with textContent.

import {
  ACTIONS, applyBackend, onRowUpdate, renderPools, rows, setHistoryPoints,
} from './dashboard-pools.js';

const REFRESH_MS = 2000;
const MAX_RETRY_MS = 10000;
const FETCH_TIMEOUT_MS = 5000;
const TOKEN_KEY = 'sticky-proxy.admin-token';

const $ = (id) => document.getElementById(id);

const view = {
  token: readToken(),
  mutations: true,
  started: null,
  restartedAt: null,
  failures: 0,
  timer: null,
  pending: new Set(),
};

function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch (_) {
    return null;
  }
}

function saveToken(token) {
  view.token = token;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    // Storage refused (private mode): the token lives as long as the page.
  }
}

async function api(method, path, options = {}) {
  const headers = {};
  const token = options.token === undefined ? view.token : options.token;
  if (token) headers.Authorization = 'Bearer ' + token;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  const controller = new AbortController();
  init.signal = controller.signal;
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new Unreachable(e);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, ok: response.ok, body };
  } finally {
    clearTimeout(timer);
  }
}

// No answer: the proxy is down, restarting, or too slow.
class Unreachable extends Error {
  constructor(cause) {
    super(cause && cause.name === 'AbortError' ? 'no answer within 5 s' : 'the proxy cannot be reached');
    this.name = 'Unreachable';
  }
}

// An answer other than 2xx, 401 or 403 to a read.
class HttpError extends Error {
  constructor(r) {
    super('HTTP ' + r.status);
    this.name = 'HttpError';
  }
}

const refused = (r) => r.status === 401 || r.status === 403;
const reason = (r) => (r.body && typeof r.body.error === 'string' ? r.body.error : 'HTTP ' + r.status);
function describe(e) {
  if (e instanceof Unreachable || e instanceof HttpError) return e.message;
  return 'the page failed (' + String(e) + ')';
}

// ---- messages, connection, token ----

let messageTimer = null;
function showMessage(text, kind) {
  const m = $('message');
  m.textContent = text;
  m.dataset.kind = kind;
  m.hidden = false;
  clearTimeout(messageTimer);
  if (kind === 'ok') messageTimer = setTimeout(() => { m.hidden = true; }, 10000);
}

function setConnection(kind, text) {
  const c = $('connection');
  c.dataset.connection = kind;
  c.className = 'conn conn-' + kind;
  c.textContent = text;
  document.body.classList.toggle('stale', kind === 'lost');
}

function renderAuth() {
  const stateLine = $('auth-state');
  const form = $('token-form');
  const forget = $('forget-token');
  if (!view.mutations) {
    stateLine.dataset.mode = 'off';
    stateLine.textContent = 'Read-only: this proxy has no admin token configured, so its backends cannot be changed from here (or anywhere).';
    form.hidden = true;
    forget.hidden = true;
  } else if (view.token) {
    stateLine.dataset.mode = 'token';
    stateLine.textContent = 'Actions on: the admin token is kept in this tab only and sent as an Authorization header.';
    form.hidden = true;
    forget.hidden = false;
  } else {
    stateLine.dataset.mode = 'read-only';
    stateLine.textContent = 'Read-only: enter the admin token to drain, disable or re-enable backends and close their WebSockets.';
    form.hidden = false;
    forget.hidden = true;
  }
  for (const row of rows.values()) updateButtons(row);
}

async function useToken(event) {
  event.preventDefault();
  const input = $('token');
  const candidate = input.value.trim();
  if (!candidate) return;
  let r;
  try {
    r = await api('GET', '/api/auth', { token: candidate });
  } catch (e) {
    showMessage('The token could not be checked: ' + describe(e) + '.', 'error');
    return;
  }
  input.value = '';
  if (r.ok) {
    saveToken(candidate);
    renderAuth();
    showMessage('Token accepted: the backend actions are on.', 'ok');
    refresh();
  } else if (refused(r)) {
    showMessage('The admin token was refused (' + r.status + ': ' + reason(r) + '). The dashboard stays read-only.', 'error');
  } else {
    showMessage('The token could not be checked: ' + reason(r) + '.', 'error');
  }
}

function forgetToken() {
  saveToken(null);
  renderAuth();
  showMessage('Token forgotten: the dashboard is read-only.', 'info');
}

// A token the proxy no longer takes (wrong, or changed across a restart).
function tokenRefused(r) {
  saveToken(null);
  renderAuth();
  showMessage('The admin token was refused (' + r.status + ': ' + reason(r) + '); it was forgotten and the dashboard is read-only. Enter the right token to act.', 'error');
}

// ---- actions ----

async function act(button) {
  const row = rows.get(button.dataset.key);
  const action = ACTIONS[button.dataset.action];
  if (!row || !action) return;
  if (!view.token || !view.mutations) {
    showMessage($('auth-state').textContent, 'info');
    return;
  }
  const base = '/api/pools/' + encodeURIComponent(row.pool) + '/backends/' + encodeURIComponent(row.name) + '/';
  view.pending.add(row.key);
  updateButtons(row);
  let r;
  try {
    r = action.state
      ? await api('POST', base + 'state', { body: { state: action.state } })
      : await api('POST', base + 'close-upgraded');
  } catch (e) {
    showMessage(action.label + ' ' + row.name + ': ' + describe(e) + '.', 'error');
    return;
  } finally {
    view.pending.delete(row.key);
    updateButtons(row);
  }
  if (refused(r)) {
    tokenRefused(r);
  } else if (!r.ok) {
    showMessage(action.label + ' ' + row.name + ': ' + reason(r) + '.', 'error');
  } else if (action.state) {
    showMessage(row.name + ' (pool ' + row.pool + ') is now ' + r.body.state + '.', 'ok');
    applyBackend(row, r.body);
  } else {
    showMessage('Closed ' + r.body.closed + ' WebSocket connection(s) to ' + row.name + '.', 'ok');
  }
  refresh();
}

function updateButtons(row) {
  const canAct = Boolean(view.token) && view.mutations && !view.pending.has(row.key);
  for (const [name, button] of Object.entries(row.buttons)) {
    const action = ACTIONS[name];
    const already = action.state !== null && row.state === action.state;
    button.disabled = !canAct || already;
    button.title = !view.mutations
      ? 'read-only: no admin token is configured'
      : !view.token
        ? 'read-only: enter the admin token first'
        : already
          ? 'already ' + action.state
          : action.title;
  }
}

// ---- rendering ----

function formatUptime(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d > 0) return d + ' d ' + h + ' h';
  if (h > 0) return h + ' h ' + String(m).padStart(2, '0') + ' min';
  if (m > 0) return m + ' min ' + String(s).padStart(2, '0') + ' s';
  return s + ' s';
}

const clock = (ms) => new Date(ms).toLocaleTimeString('en-GB');

function renderStatus(status) {
  $('version').textContent = 'v' + status.version;
  const ready = $('ready');
  ready.textContent = status.ready ? '● ready' : '◐ leaving (readyz 503)';
  ready.className = status.ready ? 'ok' : 'warn';
  $('uptime').textContent = formatUptime(status.uptime_seconds);
  $('uptime').title = 'started ' + new Date(status.started_unix_ms).toLocaleString('en-GB');
  const listeners = status.listeners.map((l) => {
    const target = l.pool === null ? 'routes' : l.pool;
    return l.scheme + '://' + l.addr + (l.h2c ? ' (h2c)' : '') + ' → ' + target;
  });
  $('listeners').textContent = listeners.join(', ');
  $('admin-addr').textContent = status.admin.addr + (status.admin.allow_remote ? ' (remote allowed)' : '');
  if (status.rates && status.rates.history_step_seconds > 0) {
    setHistoryPoints(Math.round(status.rates.history_seconds / status.rates.history_step_seconds));
  }
  if (view.started !== null && view.started !== status.started_unix_ms) {
    view.restartedAt = Date.now();
    showMessage('The proxy restarted (a new process since ' + clock(status.started_unix_ms) + '): the page reconnected; backend states are the new process\'s.', 'info');
  }
  view.started = status.started_unix_ms;
  if (view.mutations !== status.admin.mutations) {
    view.mutations = status.admin.mutations;
    renderAuth();
  }
}

// ---- the refresh loop ----

// One refresh at a time: a call while one runs (after an action) asks for another at once.
let refreshing = false;
let refreshAgain = false;

async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  clearTimeout(view.timer);
  let delay = REFRESH_MS;
  try {
    const [status, pools] = await Promise.all([api('GET', '/api/status'), api('GET', '/api/pools')]);
    const refusal = [status, pools].find(refused);
    if (refusal) {
      if (view.token) {
        tokenRefused(refusal);
      } else {
        showMessage('This admin listener answers callers on other machines only with the admin token: enter it above to read.', 'info');
      }
      setConnection('locked', 'connected, but the admin API wants the token (' + refusal.status + ')');
    } else if (!status.ok || !pools.ok) {
      throw new Error('HTTP ' + (status.ok ? pools.status : status.status));
    } else {
      renderStatus(status.body);
      renderPools($('pools'), pools.body);
      view.failures = 0;
      const restarted = view.restartedAt ? ' · reconnected after a restart at ' + clock(view.restartedAt) : '';
      setConnection('live', 'live · updated ' + clock(Date.now()) + restarted);
    }
  } catch (e) {
    // A fault of the page itself (not the network, not an HTTP status) goes to the console too.
    if (!(e instanceof Unreachable) && !(e instanceof HttpError)) console.error(e);
    view.failures += 1;
    delay = Math.min(REFRESH_MS * view.failures, MAX_RETRY_MS);
    setConnection('lost', 'connection lost: ' + describe(e) + '; retrying every ' + Math.round(delay / 1000) + ' s (the figures below are from before)');
  }
  refreshing = false;
  if (refreshAgain) {
    refreshAgain = false;
    delay = 0;
  }
  view.timer = setTimeout(refresh, delay);
}

document.addEventListener('DOMContentLoaded', () => {
  $('token-form').addEventListener('submit', useToken);
  $('forget-token').addEventListener('click', forgetToken);
  $('pools').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (button && !button.disabled) act(button);
  });
  onRowUpdate(updateButtons);
  renderAuth();
  refresh();
});
