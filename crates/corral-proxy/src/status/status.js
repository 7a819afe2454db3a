// corral's status page: polls status.json every second and shows its numbers. Rates
// are differences between polls over the difference of the server's own clock
// (uptime_seconds); every text from the server goes in with textContent, never as HTML.
'use strict';

(() => {
  const POLL_MS = 1000;
  // The hit ratio shown large is over this window (seconds).
  const WINDOW_S = 10;
  // Polls kept: the window and the sparkline.
  const KEEP = 60;
  const samples = [];

  const $ = (id) => document.getElementById(id);
  const integer = new Intl.NumberFormat('en-US');
  const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

  const percent = (ratio) => (ratio == null ? '–' : `${(ratio * 100).toFixed(1)}%`);
  const perSecond = (value) => (value == null ? '–' : decimal.format(value));

  function bytes(n) {
    if (n == null) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    const [d, h, m] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${m}m`;
    if (m > 0) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }

  // A number in an element: shown formatted, kept raw in data-value.
  function number(element, value, text) {
    element.dataset.value = value == null ? '' : String(value);
    element.textContent = text ?? (value == null ? '–' : integer.format(value));
  }

  // A table cell: a string, or { text, value, cls }.
  function cell(content) {
    const td = document.createElement('td');
    if (content !== null && typeof content === 'object') {
      if (content.node) td.append(content.node);
      else td.textContent = content.text;
      if (content.value != null) td.dataset.value = String(content.value);
      if (content.cls) td.className = content.cls;
    } else {
      td.textContent = content;
    }
    return td;
  }

  function rows(id, list) {
    $(id).tBodies[0].replaceChildren(
      ...list.map((cells) => {
        const tr = document.createElement('tr');
        tr.append(...cells.map(cell));
        return tr;
      }),
    );
  }

  function badge(health) {
    const span = document.createElement('span');
    span.className = health === 'ok' ? 'badge' : 'badge bad';
    span.textContent = health;
    return span;
  }

  function meter(value, max) {
    if (!max) return document.createTextNode('');
    const m = document.createElement('meter');
    m.min = 0;
    m.max = max;
    m.high = max * 0.9;
    m.value = Math.min(value, max);
    m.title = `${bytes(value)} of ${bytes(max)}`;
    return m;
  }

  // The per-second rate of `pick(sample)` between the last two samples, or null.
  function rate(pick) {
    if (samples.length < 2) return null;
    const [a, b] = [samples[samples.length - 2], samples[samples.length - 1]];
    return (pick(b) - pick(a)) / (b.uptime_seconds - a.uptime_seconds);
  }

  // The sample at least WINDOW_S seconds older than the newest (or the oldest kept).
  function windowStart() {
    const newest = samples[samples.length - 1];
    let start = samples[0];
    for (const sample of samples) {
      if (newest.uptime_seconds - sample.uptime_seconds >= WINDOW_S) start = sample;
    }
    return start;
  }

  const served = (s) => s.cache.hit + s.cache.stale + s.cache.revalidated;
  const answered = (s) => served(s) + s.cache.miss + s.cache.bypass;

  function spark() {
    const svg = $('spark');
    const rates = [];
    for (let i = 1; i < samples.length; i += 1) {
      const [a, b] = [samples[i - 1], samples[i]];
      rates.push((b.requests - a.requests) / (b.uptime_seconds - a.uptime_seconds));
    }
    if (rates.length === 1) rates.push(rates[0]);
    const top = Math.max(1, ...rates);
    const step = 120 / Math.max(1, rates.length - 1);
    const points = rates
      .map((r, i) => `${(i * step).toFixed(1)},${(23 - (r / top) * 22).toFixed(1)}`)
      .join(' ');
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', points);
    svg.replaceChildren(line);
  }

  function render(s) {
    const last = samples[samples.length - 1];
    // A restarted proxy starts its counters again: so does the page.
    if (last && (s.uptime_seconds <= last.uptime_seconds || s.requests < last.requests)) {
      samples.length = 0;
    }
    samples.push(s);
    if (samples.length > KEEP) samples.shift();

    $('mode').textContent = s.mode;
    number($('rps'), rate((x) => x.requests), perSecond(rate((x) => x.requests)));
    number($('requests'), s.requests);
    $('uptime').textContent = duration(s.uptime_seconds);
    spark();

    const start = windowStart();
    const windowAnswered = answered(s) - answered(start);
    const windowRatio = windowAnswered > 0 ? (served(s) - served(start)) / windowAnswered : null;
    number($('hit-ratio'), windowRatio, percent(windowRatio));
    number($('hit-ratio-total'), s.hit_ratio, percent(s.hit_ratio));

    number($('origin-fetches'), s.origin_fetches);
    number($('fetch-rate'), rate((x) => x.origin_fetches), perSecond(rate((x) => x.origin_fetches)));
    number($('in-flight'), s.fetches_in_flight);
    number($('collapsed'), s.collapsed_requests);
    number($('stale'), s.stale_serves);

    // A row: a counter's name, its total and its rate.
    const counted = (object, key, name) => {
      const r = rate((x) => x[object]?.[key] ?? 0);
      return [name ?? key, { text: integer.format(s[object][key]), value: s[object][key], cls: 'num' },
        { text: perSecond(r), value: r, cls: 'num' }];
    };
    rows('responses', ['hit', 'stale', 'revalidated', 'miss', 'bypass'].map((k) => counted('cache', k)));
    rows('classes', Object.keys(s.responses_by_class).map((k) => counted('responses_by_class', k)));
    rows('errors', Object.keys(s.errors).map((kind) => {
      const [name, total, perS] = counted('errors', kind, kind.replaceAll('_', ' '));
      total.cls = s.errors[kind] > 0 ? 'num nonzero' : 'num zero';
      return [name, total, perS];
    }));

    const tiers = [];
    const tier = (name, t, more) => {
      if (!t) return;
      tiers.push([name, { node: badge(t.health) },
        { text: t.entries == null ? '' : integer.format(t.entries), value: t.entries, cls: 'num' },
        { text: t.bytes == null ? '' : bytes(t.bytes), value: t.bytes, cls: 'num' },
        { node: meter(t.bytes, t.max_bytes) }, more]);
    };
    tier('memory', s.tiers.memory, `of ${bytes(s.tiers.memory.max_bytes)} · ${integer.format(s.tiers.memory.evictions)} evicted`);
    tier('disk', s.tiers.disk, s.tiers.disk && `of ${bytes(s.tiers.disk.max_bytes)} · ${integer.format(s.tiers.disk.hits)} hits`);
    tier('redis', s.tiers.redis, s.tiers.redis &&
      `${integer.format(s.tiers.redis.hits)} hits · ${integer.format(s.tiers.redis.waits)} waits · ${integer.format(s.tiers.redis.errors)} errors`);
    rows('tiers', tiers);

    $('pool').hidden = !s.pool;
    $('pool-none').hidden = !!s.pool;
    rows('pool', (s.pool ?? []).map((p) => [
      { text: p.self ? `${p.url} (this one)` : p.url, cls: 'key' },
      { node: badge(p.healthy ? 'ok' : 'down') },
    ]));

    const hot = s.hot_keys;
    $('hot-note').textContent = `Requests by host and path; each count halves every ${hot.halving_seconds} s, `
      + 'so the list follows what is hot now.';
    rows('hot-keys', hot.keys.map((k) => [
      { text: k.key, cls: 'key' },
      { text: integer.format(k.count), value: k.count, cls: 'num' },
      { text: percent(hot.counted > 0 ? k.count / hot.counted : null), cls: 'num' },
    ]));
  }

  function live(state, text) {
    const element = $('live');
    element.dataset.state = state;
    element.textContent = text;
  }

  async function poll() {
    try {
      const response = await fetch('status.json', { cache: 'no-store', credentials: 'same-origin' });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      render(await response.json());
      live('ok', `live · updated ${new Date().toLocaleTimeString('en-GB')}`);
    } catch (error) {
      live('error', `not updating: ${error.message}`);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
