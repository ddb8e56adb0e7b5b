// sticky-proxy's dashboard, the pools: a section per pool with its backends (state and health
// in words and colour, load, request rate with a sparkline, action buttons), session tables
// and shared stores. The DOM is built once per set of names, then only texts and attributes
// change, so a click is never lost to a redraw. Every text is set with textContent.

const SVG_NS = 'http://www.w3.org/2000/svg';
const SPARK_W = 84;
const SPARK_H = 26;

// The backend actions: button label, what they post, what the state must not already be.
export const ACTIONS = {
  drain: { label: 'Drain', state: 'draining', title: 'keep its sessions, send it no new ones' },
  disable: { label: 'Disable', state: 'disabled', title: 'send it nothing; its sessions move' },
  enable: { label: 'Enable', state: 'active', title: 'take new sessions again' },
  close: { label: 'Close WS', state: null, title: 'close its WebSocket (upgraded) connections now' },
};
const STATE_TEXT = { active: '● active', draining: '◐ draining', disabled: '○ disabled' };
const number = new Intl.NumberFormat('en');

// What is shown, by "pool/name": backend rows (read by the actions), table fills, stores,
// pool summaries; the names they were built for.
export const rows = new Map();
const tables = new Map();
const stores = new Map();
const summaries = new Map();
let layout = '';
let historyPoints = 30;
let onRow = () => {};

// The number of points a full history has (its length over its step).
export function setHistoryPoints(points) {
  historyPoints = Math.max(2, points);
}

// Called after each row is updated (the page sets its buttons' state there).
export function onRowUpdate(callback) {
  onRow = callback;
}

// An element with a class and a text.
export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

export function formatRate(rate) {
  if (rate >= 100) return number.format(Math.round(rate));
  return rate.toFixed(1);
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
  const points = values.slice(-historyPoints);
  const max = Math.max(1, ...points);
  const step = SPARK_W / (historyPoints - 1);
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
  rows.set(key, row);
  return tr;
}

export function applyBackend(row, b) {
  row.state = b.state;
  row.tr.dataset.state = b.state;
  row.tr.dataset.healthy = String(b.healthy);
  row.stateBadge.textContent = STATE_TEXT[b.state] || b.state;
  row.stateBadge.className = 'badge state state-' + b.state;
  const checked = b.state !== 'disabled';
  row.health.textContent = !checked ? '– not checked' : b.healthy ? '✓ healthy' : '✗ down';
  row.health.className = 'badge health ' + (!checked ? 'health-off' : b.healthy ? 'health-up' : 'health-down');
  row.tr.classList.toggle('down', checked && !b.healthy);
  // In its slow start a backend takes part of its share of new sessions.
  const ramping = typeof b.slow_start_share === 'number' && b.slow_start_share < 1;
  row.weight.textContent = ramping ? b.weight + ' · ' + Math.round(b.slow_start_share * 100) + '%' : b.weight;
  row.weight.title = ramping ? 'slow start: ' + Math.round(b.slow_start_share * 100) + '% of its share of new sessions' : '';
  row.inFlight.textContent = number.format(b.in_flight);
  row.rate.textContent = formatRate(b.requests_per_second);
  row.rate.title = number.format(b.requests) + ' requests since start';
  drawSparkline(row.spark, b.requests_per_second_history || []);
  row.pinned.textContent = number.format(b.pinned_requests_last_minute);
  row.entries.textContent = number.format(b.table_entries);
  row.upgraded.textContent = number.format(b.upgraded_connections);
  onRow(row);
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
  const tablesCard = el('div', 'card');
  tablesCard.append(el('h3', null, 'Session tables'));
  const tableNames = Object.keys(pool.tables);
  if (tableNames.length === 0) tablesCard.append(el('p', 'muted', 'none (cookie or hash affinity needs no table)'));
  for (const name of tableNames) {
    const line = el('div', 'fill');
    line.dataset.table = name;
    const meter = el('meter');
    const text = el('span', 'fill-text');
    line.append(el('span', 'fill-name', name), meter, text);
    tablesCard.append(line);
    tables.set(pool.name + '/' + name, { meter, text });
  }
  const storesCard = el('div', 'card');
  storesCard.append(el('h3', null, 'Shared stores'));
  const storeNames = Object.keys(pool.stores);
  if (storeNames.length === 0) storesCard.append(el('p', 'muted', 'none (tables are local to this process)'));
  for (const name of storeNames) {
    const line = el('div', 'store');
    line.dataset.store = name;
    const badge = el('span', 'badge');
    const detail = el('span', 'muted');
    line.append(el('span', 'fill-name', name), badge, detail);
    storesCard.append(line);
    stores.set(pool.name + '/' + name, { line, badge, detail });
  }
  side.append(tablesCard, storesCard);
  section.append(side);
  summaries.set(pool.name, { summary });
  return section;
}

export function renderPools(main, pools) {
  const names = layoutOf(pools);
  if (names !== layout) {
    rows.clear();
    tables.clear();
    stores.clear();
    summaries.clear();
    main.replaceChildren(...pools.map(buildPool));
    layout = names;
  }
  for (const pool of pools) {
    let total = 0;
    let usable = 0;
    for (const b of pool.backends) {
      const row = rows.get(pool.name + '/' + b.name);
      if (row) applyBackend(row, b);
      total += b.requests_per_second;
      if (b.healthy && b.state !== 'disabled') usable += 1;
    }
    const p = summaries.get(pool.name);
    if (p) {
      p.summary.textContent = usable + ' of ' + pool.backends.length + ' backends serving · ' + formatRate(total) + ' req/s';
    }
    for (const [name, t] of Object.entries(pool.tables)) {
      const shown = tables.get(pool.name + '/' + name);
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
      const shown = stores.get(pool.name + '/' + name);
      if (!shown) continue;
      shown.line.dataset.up = String(s.up);
      shown.badge.textContent = s.up ? '▲ up' : '▼ down';
      shown.badge.className = 'badge ' + (s.up ? 'health-up' : 'health-down');
      shown.detail.textContent = s.type + ' ' + s.address + ' · ' + s.state;
    }
  }
}
