// sticky-proxy's dashboard: reads /api/status and /api/pools every 2 s and posts the backend
// actions to the admin API. Served from the binary (src/admin/assets/); no dependencies.
// The admin token lives in this tab's sessionStorage and is only ever sent as an
// `Authorization: Bearer` header, never in a URL. Every text is set with textContent.
'use strict';

(() => {
  const REFRESH_MS = 2000;
  const MAX_RETRY_MS = 10000;
  const FETCH_TIMEOUT_MS = 5000;
  const TOKEN_KEY = 'sticky-proxy.admin-token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const SPARK_W = 96;
  const SPARK_H = 26;

  // The backend actions: button label, what they post, what the state must not already be.
  const ACTIONS = {
    drain: { label: 'Drain', state: 'draining', title: 'keep its sessions, send it no new ones' },
    disable: { label: 'Disable', state: 'disabled', title: 'send it nothing; its sessions move' },
    enable: { label: 'Enable', state: 'active', title: 'take new sessions again' },
    close: { label: 'Close WS', state: null, title: 'close its WebSocket (upgraded) connections now' },
  };
  const STATE_TEXT = { active: '● active', draining: '◐ draining', disabled: '○ disabled' };

  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat('en');

  const view = {
    token: readToken(),
    mutations: true,
    started: null,
    restartedAt: null,
    failures: 0,
    timer: null,
    layout: '',
    historyPoints: 30,
    pending: new Set(),
    rows: new Map(),
    tables: new Map(),
    stores: new Map(),
    pools: new Map(),
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

  // An element with a class and a text.
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
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
      const response = await fetch(path, init);
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

  const refused = (r) => r.status === 401 || r.status === 403;
  const reason = (r) => (r.body && typeof r.body.error === 'string' ? r.body.error : 'HTTP ' + r.status);
  function describe(e) {
    if (e && e.name === 'AbortError') return 'no answer within 5 s';
    if (e instanceof TypeError) return 'the proxy cannot be reached';
    return e && e.message ? e.message : String(e);
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
    for (const row of view.rows.values()) updateButtons(row);
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
    const row = view.rows.get(button.dataset.key);
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

  function formatRate(rate) {
    if (rate >= 100) return number.format(Math.round(rate));
    return rate.toFixed(1);
  }

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
      view.historyPoints = Math.max(2, Math.round(status.rates.history_seconds / status.rates.history_step_seconds));
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

  function layoutOf(pools) {
    return JSON.stringify(pools.map((p) => [p.name, p.backends.map((b) => b.name), Object.keys(p.tables), Object.keys(p.stores)]));
  }

  function headerRow(names) {
    const tr = el('tr');
    for (const [text, cls] of names) {
      const th = el('th', cls, text);
      th.scope = 'col';
      tr.append(th);
    }
    const thead = el('thead');
    thead.append(tr);
    return thead;
  }

  function sparkline() {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', '0 0 ' + SPARK_W + ' ' + SPARK_H);
    svg.setAttribute('width', SPARK_W);
    svg.setAttribute('height', SPARK_H);
    svg.setAttribute('role', 'img');
    const title = document.createElementNS(SVG_NS, 'title');
    const area = document.createElementNS(SVG_NS, 'polygon');
    area.setAttribute('class', 'spark-area');
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('class', 'spark-line');
    // The frame: the baseline over the whole history, so a young process shows a short line.
    const base = document.createElementNS(SVG_NS, 'line');
    base.setAttribute('class', 'spark-base');
    base.setAttribute('x1', 0);
    base.setAttribute('x2', SPARK_W);
    base.setAttribute('y1', SPARK_H - 1.5);
    base.setAttribute('y2', SPARK_H - 1.5);
    svg.append(title, base, area, line);
    return { svg, title, area, line };
  }

  function drawSparkline(spark, values) {
    const points = values.slice(-view.historyPoints);
    const max = Math.max(1, ...points);
    const step = SPARK_W / (view.historyPoints - 1);
    const xy = points.map((v, i) => {
      const x = SPARK_W - (points.length - 1 - i) * step;
      const y = SPARK_H - 2 - (SPARK_H - 4) * (v / max);
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    spark.line.setAttribute('points', xy.join(' '));
    spark.area.setAttribute('points', xy.length > 1
      ? xy[0].split(',')[0] + ',' + SPARK_H + ' ' + xy.join(' ') + ' ' + SPARK_W + ',' + SPARK_H
      : '');
    const peak = Math.max(0, ...points);
    spark.title.textContent = points.length < 2
      ? 'request rate history: not enough samples yet'
      : 'requests per second per 10 s, last ' + Math.round(points.length / 6) + ' min; peak ' + formatRate(peak);
  }

  function backendRow(pool, backend) {
    const key = pool + '/' + backend.name;
    const tr = el('tr');
    tr.dataset.pool = pool;
    tr.dataset.backend = backend.name;
    const nameCell = el('th');
    nameCell.scope = 'row';
    nameCell.append(el('span', 'name', backend.name), el('span', 'addr muted', backend.addr));
    const cell = (cls) => el('td', cls);
    const row = {
      key, pool, name: backend.name, tr, state: null,
      stateBadge: el('span', 'badge'),
      health: el('span', 'badge'),
      weight: cell('num'),
      inFlight: cell('num'),
      rate: el('span', 'rate-now'),
      spark: sparkline(),
      pinned: cell('num'),
      entries: cell('num'),
      upgraded: cell('num'),
      buttons: {},
    };
    const stateCell = cell('');
    stateCell.append(row.stateBadge);
    const healthCell = cell('');
    healthCell.append(row.health);
    const rateCell = cell('');
    const rateBox = el('div', 'rate');
    rateBox.append(row.rate, row.spark.svg);
    rateCell.append(rateBox);
    const actionsCell = cell('');
    const actions = el('div', 'actions');
    actionsCell.append(actions);
    for (const [name, action] of Object.entries(ACTIONS)) {
      const b = el('button', 'act act-' + name, action.label);
      b.type = 'button';
      b.dataset.action = name;
      b.dataset.key = key;
      row.buttons[name] = b;
      actions.append(b);
    }
    tr.append(nameCell, stateCell, healthCell, row.weight, row.inFlight, rateCell, row.pinned, row.entries, row.upgraded, actionsCell);
    view.rows.set(key, row);
    return tr;
  }

  function applyBackend(row, b) {
    row.state = b.state;
    row.tr.dataset.state = b.state;
    row.tr.dataset.healthy = String(b.healthy);
    row.stateBadge.textContent = STATE_TEXT[b.state] || b.state;
    row.stateBadge.className = 'badge state state-' + b.state;
    const checked = b.state !== 'disabled';
    row.health.textContent = !checked ? '– not checked' : b.healthy ? '✓ healthy' : '✗ down';
    row.health.className = 'badge health ' + (!checked ? 'health-off' : b.healthy ? 'health-up' : 'health-down');
    row.tr.classList.toggle('down', checked && !b.healthy);
    row.weight.textContent = b.weight;
    row.inFlight.textContent = number.format(b.in_flight);
    row.rate.textContent = formatRate(b.requests_per_second);
    row.rate.title = number.format(b.requests) + ' requests since start';
    drawSparkline(row.spark, b.requests_per_second_history || []);
    row.pinned.textContent = number.format(b.pinned_requests_last_minute);
    row.entries.textContent = number.format(b.table_entries);
    row.upgraded.textContent = number.format(b.upgraded_connections);
    updateButtons(row);
  }

  function buildPool(pool) {
    const section = el('section', 'pool');
    section.dataset.pool = pool.name;
    const heading = el('h2');
    const summary = el('span', 'summary muted');
    heading.append(el('span', null, 'Pool ' + pool.name), summary);
    section.append(heading);

    const wrap = el('div', 'scroll');
    const table = el('table', 'backends');
    table.append(headerRow([
      ['backend'], ['state'], ['health'], ['weight', 'num'], ['in flight', 'num'],
      ['req/s · 5 min'], ['pinned/min', 'num'], ['entries', 'num'], ['WebSockets', 'num'], ['actions'],
    ]));
    const tbody = el('tbody');
    for (const b of pool.backends) tbody.append(backendRow(pool.name, b));
    table.append(tbody);
    wrap.append(table);
    section.append(wrap);

    const side = el('div', 'side');
    const tables = el('div', 'card');
    tables.append(el('h3', null, 'Session tables'));
    const tableNames = Object.keys(pool.tables);
    if (tableNames.length === 0) tables.append(el('p', 'muted', 'none (cookie or hash affinity needs no table)'));
    for (const name of tableNames) {
      const line = el('div', 'fill');
      line.dataset.table = name;
      const meter = el('meter');
      const text = el('span', 'fill-text');
      line.append(el('span', 'fill-name', name), meter, text);
      tables.append(line);
      view.tables.set(pool.name + '/' + name, { meter, text });
    }
    const stores = el('div', 'card');
    stores.append(el('h3', null, 'Shared stores'));
    const storeNames = Object.keys(pool.stores);
    if (storeNames.length === 0) stores.append(el('p', 'muted', 'none (tables are local to this process)'));
    for (const name of storeNames) {
      const line = el('div', 'store');
      line.dataset.store = name;
      const badge = el('span', 'badge');
      const detail = el('span', 'muted');
      line.append(el('span', 'fill-name', name), badge, detail);
      stores.append(line);
      view.stores.set(pool.name + '/' + name, { line, badge, detail });
    }
    side.append(tables, stores);
    section.append(side);
    view.pools.set(pool.name, { summary });
    return section;
  }

  function renderPools(pools) {
    const layout = layoutOf(pools);
    if (layout !== view.layout) {
      view.layout = layout;
      view.rows.clear();
      view.tables.clear();
      view.stores.clear();
      view.pools.clear();
      const main = $('pools');
      main.replaceChildren(...pools.map(buildPool));
    }
    for (const pool of pools) {
      let total = 0;
      let usable = 0;
      for (const b of pool.backends) {
        const row = view.rows.get(pool.name + '/' + b.name);
        if (row) applyBackend(row, b);
        total += b.requests_per_second;
        if (b.healthy && b.state !== 'disabled') usable += 1;
      }
      const p = view.pools.get(pool.name);
      if (p) {
        p.summary.textContent = usable + ' of ' + pool.backends.length + ' backends serving · ' + formatRate(total) + ' req/s';
      }
      for (const [name, t] of Object.entries(pool.tables)) {
        const shown = view.tables.get(pool.name + '/' + name);
        if (!shown) continue;
        const capacity = Math.max(1, t.capacity);
        shown.meter.max = capacity;
        shown.meter.low = capacity * 0.7;
        shown.meter.high = capacity * 0.9;
        shown.meter.optimum = 0;
        shown.meter.value = t.entries;
        const percent = Math.round((100 * t.entries) / capacity);
        shown.text.textContent = number.format(t.entries) + ' / ' + number.format(t.capacity) + ' (' + percent + ' %)';
      }
      for (const [name, s] of Object.entries(pool.stores)) {
        const shown = view.stores.get(pool.name + '/' + name);
        if (!shown) continue;
        shown.line.dataset.up = String(s.up);
        shown.badge.textContent = s.up ? '▲ up' : '▼ down';
        shown.badge.className = 'badge ' + (s.up ? 'health-up' : 'health-down');
        shown.detail.textContent = s.type + ' ' + s.address + ' · ' + s.state;
      }
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
        renderPools(pools.body);
        view.failures = 0;
        const restarted = view.restartedAt ? ' · reconnected after a restart at ' + clock(view.restartedAt) : '';
        setConnection('live', 'live · updated ' + clock(Date.now()) + restarted);
      }
    } catch (e) {
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
    renderAuth();
    refresh();
  });
})();
