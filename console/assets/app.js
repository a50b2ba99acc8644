// watershed console: plain JavaScript, no dependency. Everything shown that
// comes from the server is set as text (textContent), never as HTML.
'use strict';
(function () {
  const KEY = 'watershed.console.key';
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);
  let poll = null;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
  function fmt(v, digits) {
    if (v === null || v === undefined) return '—';
    if (typeof v !== 'number') return String(v);
    return v.toLocaleString('en', { maximumFractionDigits: digits === undefined ? 1 : digits });
  }
  function time(ms) { return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'); }

  // api calls the console's JSON endpoints with the kept key. A 401 logs
  // out; other errors carry the server's message.
  async function api(path, opts) {
    const key = sessionStorage.getItem(KEY);
    const init = Object.assign({ headers: {} }, opts || {});
    init.headers = Object.assign({ 'Authorization': 'Bearer ' + key }, init.headers);
    const resp = await fetch('api/' + path, init);
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (resp.status === 401) { logout('The key was refused; log in again.'); throw new Error('unauthorized'); }
    if (!resp.ok && !(body && body.counts)) throw new Error((body && body.error) || ('HTTP ' + resp.status));
    return body;
  }

  function logout(msg) {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(KEY + '.replay');
    stopPoll();
    $('nav').hidden = true;
    for (const p of document.querySelectorAll('.page')) p.hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = msg || '';
  }

  async function login(ev) {
    ev.preventDefault();
    const key = $('key').value;
    $('login-error').textContent = '';
    const resp = await fetch('api/session', { headers: { 'Authorization': 'Bearer ' + key } });
    if (!resp.ok) {
      let msg = 'HTTP ' + resp.status;
      try { msg = (await resp.json()).error || msg; } catch (e) { /* keep the status */ }
      $('login-error').textContent = 'Log in failed: ' + msg;
      return;
    }
    const info = await resp.json();
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(KEY + '.replay', info.replay ? '1' : '');
    $('key').value = '';
    start();
  }

  function start() {
    $('login').hidden = true;
    $('nav').hidden = false;
    route();
  }

  function stopPoll() { if (poll) { clearInterval(poll); poll = null; } }

  function route() {
    if (!sessionStorage.getItem(KEY)) { logout(); return; }
    stopPoll();
    const h = location.hash || '#/topology';
    const [, page, arg] = h.split('/');
    for (const p of document.querySelectorAll('.page')) p.hidden = true;
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === 'nav-' + page);
    if (page === 'deadletters') { $('page-deadletters').hidden = false; loadDeadLetters(); }
    else if (page === 'device') {
      $('page-device').hidden = false;
      if (arg) { $('device-id').value = decodeURIComponent(arg); loadDevice(); }
    } else {
      $('page-topology').hidden = false;
      loadTopology();
      poll = setInterval(loadTopology, 3000);
    }
  }

  // ---- topology ----
  async function loadTopology() {
    let t;
    try { t = await api('topology'); } catch (e) { $('metrics-error').textContent = e.message; return; }
    $('topology-name').textContent = t.name;
    $('metrics-source').textContent = t.metrics_source;
    $('metrics-error').textContent = t.metrics_error || '';
    $('topology-at').textContent = t.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
    drawGraph(t);
    const tb = clear($('groups-table').tBodies[0]);
    for (const g of t.graph.nodes.filter((n) => n.kind === 'group')) {
      const m = t.groups[g.label];
      tb.append(el('tr', { 'data-group': g.label },
        el('td', {}, g.label), el('td', { class: 'health-' + m.health }, m.health + (m.why ? ' (' + m.why + ')' : '')),
        el('td', { class: 'num' }, m.recovered + '/' + m.replicas),
        el('td', { class: 'num' }, fmt(m.partitions_owned, 0) + '/' + m.partitions),
        el('td', { class: 'num' }, fmt(m.in_per_s)), el('td', { class: 'num' }, fmt(m.out_per_s)),
        el('td', { class: 'num' }, fmt(m.dead_letters_per_s, 2)), el('td', { class: 'num' }, fmt(m.lag, 0)),
        el('td', { class: 'num' }, fmt(m.restarts, 0))));
    }
  }

  function drawGraph(t) {
    const g = t.graph;
    const s = clear($('graph'));
    s.setAttribute('viewBox', '0 0 ' + g.width + ' ' + g.height);
    s.setAttribute('width', g.width);
    s.setAttribute('height', g.height);
    const defs = svg('defs');
    const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
    marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#8c959f' }));
    defs.append(marker);
    s.append(defs);
    const at = {};
    for (const n of g.nodes) at[n.id] = n;
    const edges = svg('g');
    for (const e of g.edges) {
      const a = at[e.from], b = at[e.to];
      if (!a || !b) continue;
      let d;
      const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
      if (x2 > x1) {
        const c = (x2 - x1) / 2;
        d = `M${x1},${y1} C${x1 + c},${y1} ${x2 - c},${y2} ${x2},${y2}`;
      } else { // back edge: around below
        const low = Math.max(a.y + a.h, b.y + b.h) + 14;
        d = `M${a.x + a.w / 2},${a.y + a.h} C${a.x + a.w / 2},${low} ${b.x + b.w / 2},${low} ${b.x + b.w / 2},${b.y + b.h}`;
      }
      const p = svg('path', { d, class: 'edge' + (e.dashed ? ' dashed' : ''), 'marker-end': 'url(#arrow)' });
      p.append(svg('title', {}, e.label));
      edges.append(p);
    }
    s.append(edges);
    for (const n of g.nodes) {
      const grp = svg('g', { class: 'node ' + n.kind, transform: `translate(${n.x},${n.y})` });
      if (n.kind === 'group') {
        const m = t.groups[n.label];
        grp.setAttribute('class', 'node group health-' + m.health);
        grp.setAttribute('data-group', n.label);
        grp.setAttribute('data-health', m.health);
        grp.append(svg('rect', { width: n.w, height: n.h, rx: 6 }));
        grp.append(svg('text', { x: 8, y: 16, 'font-weight': 600 }, n.label));
        grp.append(svg('text', { x: 8, y: 32, class: 'small' }, `replicas ${m.recovered}/${m.replicas} · parts ${fmt(m.partitions_owned, 0)}/${m.partitions}`));
        grp.append(svg('text', { x: 8, y: 46, class: 'small' }, `in ${fmt(m.in_per_s)}/s · out ${fmt(m.out_per_s)}/s`));
        grp.append(svg('text', { x: 8, y: 59, class: 'small' }, `lag ${fmt(m.lag, 0)} · restarts ${fmt(m.restarts, 0)}`));
        grp.append(svg('title', {}, n.label + ': ' + m.health + (m.why ? ' (' + m.why + ')' : '')));
      } else if (n.kind === 'table') {
        grp.setAttribute('data-topic', n.label);
        grp.append(svg('path', { d: `M0,6 v${n.h - 12} a${n.w / 2},6 0 0 0 ${n.w},0 v-${n.h - 12}` }));
        grp.append(svg('ellipse', { cx: n.w / 2, cy: 6, rx: n.w / 2, ry: 6 }));
        grp.append(svg('text', { x: 8, y: n.h / 2 + 8 }, n.label));
      } else if (n.kind === 'external') {
        grp.append(svg('ellipse', { cx: n.w / 2, cy: n.h / 2, rx: n.w / 2, ry: n.h / 2 }));
        grp.append(svg('text', { x: n.w / 2, y: n.h / 2 + 4, 'text-anchor': 'middle' }, n.label));
      } else {
        grp.setAttribute('data-topic', n.label);
        grp.append(svg('rect', { width: n.w, height: n.h, rx: 2 }));
        grp.append(svg('text', { x: 8, y: n.h / 2 + 4 }, n.label));
      }
      s.append(grp);
    }
  }

  // ---- dead letters ----
  function filterQuery() {
    const q = new URLSearchParams();
    for (const [id, name] of [['f-reason', 'reason'], ['f-stage', 'stage'], ['f-device', 'device'], ['f-since', 'since'], ['f-until', 'until']]) {
      const v = $(id).value.trim();
      if (v) q.set(name, v);
    }
    return q;
  }
  let lastStats = null;
  let dryRunFor = null;

  async function loadDeadLetters() {
    $('dlq-error').textContent = '';
    const q = filterQuery();
    let st, ls;
    try {
      st = await api('deadletters/stats?' + q.toString());
      ls = await api('deadletters?' + q.toString());
    } catch (e) { $('dlq-error').textContent = e.message; return; }
    lastStats = st;
    $('dlq-summary').textContent = `${st.total} dead letters in ${st.topic}` + (st.total ? `, failures from ${st.oldest_failure} to ${st.newest_failure}` : '');
    fillOptions($('f-reason'), Object.keys(st.by_reason));
    fillOptions($('f-stage'), Object.keys(st.by_stage));
    counts($('by-reason'), st.by_reason, 'data-reason');
    counts($('by-stage'), st.by_stage, 'data-stage');
    drawSeries();
    const tb = clear($('letters').tBodies[0]);
    for (const l of ls.items) {
      const dev = el('a', { href: '#/device/' + encodeURIComponent(l.key) }, l.key);
      tb.append(el('tr', {}, el('td', {}, l.last_failure), el('td', {}, l.stage), el('td', {}, l.reason), el('td', {}, dev),
        el('td', {}, l.partition < 0 ? l.topic + ' (edge)' : `${l.topic}/${l.partition}/${l.offset}`), el('td', { class: 'num' }, l.attempts),
        el('td', {}, `${l.dlq_partition}/${l.dlq_offset}`), el('td', {}, l.error)));
    }
  }

  function fillOptions(sel, names) {
    const cur = sel.value;
    const have = new Set(Array.from(sel.options).map((o) => o.value));
    for (const n of names.sort()) if (!have.has(n)) sel.append(el('option', { value: n }, n));
    sel.value = cur;
  }

  function counts(table, byName, attr) {
    const tb = clear(table.tBodies[0]);
    const names = Object.keys(byName).sort((a, b) => byName[b] - byName[a] || (a < b ? -1 : 1));
    for (const n of names) tb.append(el('tr', { [attr]: n }, el('td', {}, n), el('td', { class: 'num' }, byName[n])));
  }

  const palette = ['#1f6feb', '#d23b3b', '#2e9d4f', '#e0a106', '#8250df', '#0a8f8f', '#bf5b04', '#6e7781', '#cf2f8f', '#4b8b00', '#0550ae', '#953800'];

  function drawSeries() {
    const s = clear($('dlq-chart'));
    const st = lastStats;
    if (!st || !st.series.length) return;
    const by = $('series-by').value === 'stage' ? 'by_stage' : 'by_reason';
    const names = Object.keys(by === 'by_stage' ? st.by_stage : st.by_reason).sort();
    s.setAttribute('height', Math.max(220, names.length * 16 + 20));
    const W = +s.getAttribute('width'), H = +s.getAttribute('height'), L = 40, B = 40, T = 10, R = 130;
    const maxN = Math.max(1, ...st.series.map((b) => Object.values(b[by]).reduce((x, y) => x + y, 0)));
    const bw = (W - L - R) / st.series.length;
    const y = (v) => H - B - (v / maxN) * (H - B - T);
    axes(s, L, T, W - R, H - B, [0, maxN], (v) => fmt(v, 0));
    st.series.forEach((b, i) => {
      let acc = 0;
      names.forEach((n, j) => {
        const v = b[by][n] || 0;
        if (!v) return;
        const r = svg('rect', { x: L + i * bw + 0.5, y: y(acc + v), width: Math.max(1, bw - 1), height: y(acc) - y(acc + v), fill: palette[j % palette.length] });
        r.append(svg('title', {}, `${b.start}: ${n} ${v}`));
        s.append(r);
        acc += v;
      });
    });
    s.append(svg('text', { x: L, y: H - 22, class: 'small' }, st.series[0].start.replace('T', ' ')));
    s.append(svg('text', { x: W - R, y: H - 22, class: 'small', 'text-anchor': 'end' }, 'bucket ' + fmt(st.bucket_seconds, 0) + ' s'));
    names.forEach((n, j) => {
      s.append(svg('rect', { x: W - R + 10, y: T + j * 16, width: 10, height: 10, fill: palette[j % palette.length] }));
      s.append(svg('text', { x: W - R + 24, y: T + j * 16 + 9, class: 'small' }, n));
    });
  }

  function filterBody(dry) {
    const body = { dry_run: dry };
    for (const [k, v] of filterQuery()) body[k] = v;
    return body;
  }

  async function replay(dry) {
    const body = filterBody(dry);
    $('replay-go').disabled = true;
    let r;
    try {
      r = await api('deadletters/replay', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    } catch (e) { $('replay-summary').textContent = 'Replay: ' + e.message; return; }
    const parts = Object.entries(r.counts).map(([a, n]) => `${n} ${a}`);
    $('replay-summary').textContent = (r.dry_run ? 'Dry run: ' : 'Replayed: ') + (parts.join(', ') || 'nothing selected') + (r.error ? ' — ' + r.error : '');
    const tb = clear($('replay-items').tBodies[0]);
    for (const it of r.items.slice(0, 50)) {
      tb.append(el('tr', { 'data-action': it.action }, el('td', {}, it.action), el('td', {}, `${it.dlq_partition}/${it.dlq_offset}`), el('td', {}, it.stage),
        el('td', {}, it.reason), el('td', {}, it.key), el('td', {}, it.topic), el('td', {}, it.detail || '')));
    }
    dryRunFor = dry ? JSON.stringify(filterBody(false)) : null;
    const allowed = sessionStorage.getItem(KEY + '.replay') === '1';
    $('replay-go').disabled = !(allowed && dry && (r.counts['would-replay'] || 0) > 0);
    if (dry && !allowed) $('replay-summary').textContent += ' (replay is turned off on this server)';
    if (dry) $('replay-go').textContent = `Replay ${r.counts['would-replay'] || 0} dead letters`;
    if (!dry) loadDeadLetters();
  }

  // ---- device ----
  async function loadDevice() {
    const id = $('device-id').value.trim();
    $('device-error').textContent = '';
    if (!id) return;
    if (location.hash !== '#/device/' + encodeURIComponent(id)) history.replaceState(null, '', '#/device/' + encodeURIComponent(id));
    let d;
    try { d = await api('devices/' + encodeURIComponent(id) + '?window=' + encodeURIComponent($('device-window').value)); }
    catch (e) { $('device-error').textContent = e.message; $('device-body').hidden = true; return; }
    $('device-body').hidden = false;
    $('state-error').textContent = d.state_error || '';
    const tb = clear($('device-state').tBodies[0]);
    const st = d.state || {};
    const rows = [['device', d.device_id], ['last seen', st.last_seen], ['messages', st.messages], ['duplicates', st.duplicates], ['invalid', st.invalid],
      ['packages rejected', st.packages_rejected], ['protocol', st.protocol_version], ['firmware', st.firmware]];
    if (st.gps) rows.push(['position', `${fmt(st.gps.lat_deg, 5)}, ${fmt(st.gps.lon_deg, 5)} at ${fmt(st.gps.speed_kmh)} km/h`]);
    if (st.battery) rows.push(['battery', fmt(st.battery.battery_v, 2) + ' V']);
    if (st.engine) rows.push(['engine', `${fmt(st.engine.rpm, 0)} rpm, ${fmt(st.engine.coolant_c)} °C, fuel ${fmt(st.engine.fuel_pct)} %`]);
    if (st.event) rows.push(['last event', `${st.event.name} (severity ${st.event.severity}) at ${st.event.time}`]);
    for (const [k, v] of rows) if (v !== undefined && v !== null) tb.append(el('tr', {}, el('th', {}, k), el('td', {}, v)));
    $('history-meta').textContent = `${d.readings} readings from ${d.from} to ${d.to}: ${d.track.length} GPS fixes, ${d.battery.length} battery readings`;
    $('history-error').textContent = d.history_error || '';
    drawMap($('device-map'), d.track);
    drawLine($('speed-chart'), d.speed);
    drawLine($('battery-chart'), d.battery);
    $('alerts-error').textContent = d.alerts_error || '';
    const at = clear($('device-alerts').tBodies[0]);
    for (const a of d.alerts) {
      const detail = a.kind === 'event' ? `${a.event} (severity ${a.severity})` : a.kind === 'coolant' ? `coolant ${fmt(a.coolant_c)} °C` : '';
      at.append(el('tr', {}, el('td', {}, time(a.t)), el('td', {}, a.kind), el('td', {}, detail)));
    }
    if (!d.alerts.length) at.append(el('tr', {}, el('td', { colspan: 3 }, 'no alerts')));
  }

  // ticks returns about n round values spanning [lo, hi].
  function ticks(lo, hi, n) {
    if (hi <= lo) hi = lo + 1;
    const raw = (hi - lo) / n, p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }

  // axes draws a value axis on the left with grid lines and returns nothing.
  function axes(s, x0, y0, x1, y1, [lo, hi], label) {
    const g = svg('g', { class: 'axis' });
    for (const v of ticks(lo, hi, 4)) {
      const y = y1 - ((v - lo) / ((hi - lo) || 1)) * (y1 - y0);
      g.append(svg('line', { x1: x0, x2: x1, y1: y, y2: y, class: 'grid' }));
      g.append(svg('text', { x: x0 - 4, y: y + 4, 'text-anchor': 'end', class: 'small' }, label(v)));
    }
    g.append(svg('line', { x1: x0, x2: x0, y1: y0, y2: y1 }));
    g.append(svg('line', { x1: x0, x2: x1, y1: y1, y2: y1 }));
    s.append(g);
  }

  function drawLine(s, pts) {
    clear(s);
    const W = +s.getAttribute('width'), H = +s.getAttribute('height'), L = 48, B = 34, T = 8, R = 12;
    if (!pts.length) { s.append(svg('text', { x: L, y: H / 2, class: 'small' }, 'no readings in the window')); return; }
    const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
    let lo = Math.min(...pts.map((p) => p.v)), hi = Math.max(...pts.map((p) => p.v));
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    axes(s, L, T, W - R, H - B, [lo, hi], (v) => fmt(v, 2));
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R), y = (v) => H - B - ((v - lo) / (hi - lo)) * (H - B - T);
    s.append(svg('polyline', { class: 'series', points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ') }));
    s.append(svg('text', { x: L, y: H - 16, class: 'small' }, time(t0)));
    s.append(svg('text', { x: W - R, y: H - 16, class: 'small', 'text-anchor': 'end' }, time(t1)));
  }

  // drawMap plots the track on an equirectangular projection scaled by
  // the cosine of the mean latitude, with lat/lon axes and a scale bar.
  function drawMap(s, track) {
    clear(s);
    const W = +s.getAttribute('width'), H = +s.getAttribute('height'), L = 64, B = 40, T = 10, R = 14;
    s.append(svg('rect', { x: L, y: T, width: W - L - R, height: H - T - B, class: 'map-bg' }));
    if (!track.length) { s.append(svg('text', { x: L + 10, y: H / 2, class: 'small' }, 'no GPS fixes in the window')); return; }
    let la0 = Math.min(...track.map((p) => p.lat)), la1 = Math.max(...track.map((p) => p.lat));
    let lo0 = Math.min(...track.map((p) => p.lon)), lo1 = Math.max(...track.map((p) => p.lon));
    const pad = Math.max(la1 - la0, lo1 - lo0, 0.002) * 0.08;
    la0 -= pad; la1 += pad; lo0 -= pad; lo1 += pad;
    const k = Math.cos(((la0 + la1) / 2) * Math.PI / 180) || 1e-6;
    const pw = W - L - R, ph = H - T - B;
    const scale = Math.min(pw / ((lo1 - lo0) * k), ph / (la1 - la0)); // px per degree of latitude
    const cx = (lo0 + lo1) / 2, cy = (la0 + la1) / 2;
    const x = (lon) => L + pw / 2 + (lon - cx) * k * scale, y = (lat) => T + ph / 2 - (lat - cy) * scale;
    const latLo = cy - ph / 2 / scale, latHi = cy + ph / 2 / scale, lonLo = cx - pw / 2 / (k * scale), lonHi = cx + pw / 2 / (k * scale);
    const g = svg('g', { class: 'axis' });
    for (const v of ticks(latLo, latHi, 5)) {
      g.append(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
      g.append(svg('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end', class: 'small' }, fmt(v, 4) + '°'));
    }
    for (const v of ticks(lonLo, lonHi, 4)) {
      g.append(svg('line', { x1: x(v), x2: x(v), y1: T, y2: H - B, class: 'grid' }));
      g.append(svg('text', { x: x(v), y: H - B + 14, 'text-anchor': 'middle', class: 'small' }, fmt(v, 4) + '°'));
    }
    g.append(svg('text', { x: 4, y: T + 10, class: 'small' }, 'lat'));
    g.append(svg('text', { x: W - R, y: H - 4, 'text-anchor': 'end', class: 'small' }, 'lon'));
    s.append(g);
    s.append(svg('polyline', { class: 'track', points: track.map((p) => `${x(p.lon).toFixed(1)},${y(p.lat).toFixed(1)}`).join(' ') }));
    const first = track[0], last = track[track.length - 1];
    s.append(svg('circle', { cx: x(first.lon), cy: y(first.lat), r: 4, fill: '#2e9d4f' }));
    s.append(svg('circle', { cx: x(last.lon), cy: y(last.lat), r: 5, fill: '#d23b3b', id: 'map-last' }));
    // Scale bar: a round distance near a quarter of the width.
    const kmPerPx = 111.32 / scale, target = kmPerPx * pw / 4;
    const p10 = Math.pow(10, Math.floor(Math.log10(target)));
    const km = [1, 2, 5, 10].map((m) => m * p10).filter((v) => v <= target).pop() || p10;
    const len = km / kmPerPx, sx = W - R - len - 10, sy = H - B - 12;
    s.append(svg('line', { x1: sx, x2: sx + len, y1: sy, y2: sy, stroke: '#1d2329', 'stroke-width': 3, id: 'map-scale' }));
    s.append(svg('text', { x: sx + len / 2, y: sy - 5, 'text-anchor': 'middle', class: 'small' }, km >= 1 ? fmt(km, 0) + ' km' : fmt(km * 1000, 0) + ' m'));
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', () => logout());
    $('dlq-filter').addEventListener('submit', (ev) => { ev.preventDefault(); $('replay-go').disabled = true; loadDeadLetters(); });
    $('series-by').addEventListener('change', drawSeries);
    $('replay-dry').addEventListener('click', () => replay(true));
    $('replay-go').addEventListener('click', () => {
      // The replay goes ahead only for the filter its dry run showed.
      if (dryRunFor !== JSON.stringify(filterBody(false))) { $('replay-summary').textContent = 'The filter changed: run the dry run again.'; $('replay-go').disabled = true; return; }
      replay(false);
    });
    $('device-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadDevice(); });
    window.addEventListener('hashchange', route);
    if (sessionStorage.getItem(KEY)) start(); else logout();
  });
})();
