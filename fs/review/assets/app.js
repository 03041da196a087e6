// imgfs review: the page (plain JavaScript, served from the binary; docs/review.md).
'use strict';

const token = document.querySelector('meta[name="imgfs-token"]').content;
const st = { page: 0, tier: '', folder: '', data: null, focus: 0, keep: [] };
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function status(msg, isError) {
  const s = $('status');
  s.textContent = msg;
  s.classList.toggle('error', !!isError);
}

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-Imgfs-Token': token },
    body: JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

function size(n) {
  if (n < 1024) return n + ' B';
  const u = ['KiB', 'MiB', 'GiB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(1) + ' ' + u[i];
}

async function load(fresh) {
  document.body.dataset.state = 'loading';
  const q = new URLSearchParams({ page: st.page, tier: st.tier, folder: st.folder });
  if (fresh) q.set('fresh', '1');
  try {
    const r = await fetch('/api/groups?' + q, { credentials: 'same-origin' });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || r.statusText);
    st.data = j;
    st.page = j.page;
    st.focus = Math.min(st.focus, Math.max(0, j.groups.length - 1));
    st.keep = j.groups.map(() => 0);
    render();
  } catch (e) {
    status('Could not load the groups: ' + e.message, true);
  }
  document.body.dataset.state = 'ready';
  document.body.dataset.gen = String(Number(document.body.dataset.gen) + 1);
}

function render() {
  const d = st.data;
  const main = $('groups');
  main.replaceChildren();
  $('pageinfo').textContent = 'page ' + (d.page + 1) + ' of ' + d.pages + ' · ' + d.total + ' of ' + d.all + ' groups';
  $('prev').disabled = d.page === 0;
  $('next').disabled = d.page >= d.pages - 1;
  // The tier filter offers the tiers the index reports (fs/similar), plus the current one.
  const sel = $('tier');
  const tiers = d.tiers.includes(st.tier) || st.tier === '' ? d.tiers : d.tiers.concat([st.tier]);
  if (sel.options.length !== tiers.length + 1 || tiers.some((t, i) => sel.options[i + 1].value !== t)) {
    sel.replaceChildren(...[''].concat(tiers).map((t) => { const o = el('option', '', t || 'all'); o.value = t; return o; }));
  }
  sel.value = st.tier;
  const dl = $('folders');
  if (dl.childElementCount !== d.folders.length) {
    dl.replaceChildren(...d.folders.map((f) => { const o = el('option'); o.value = f; return o; }));
  }
  if (d.backlog > 0) status(d.backlog + ' files are still being indexed: groups may be incomplete (press r to reload).');
  if (d.groups.length === 0) {
    main.append(el('div', 'empty', d.all === 0 ? 'No near-duplicates in this vault.' : 'No group matches the filter.'));
    return;
  }
  d.groups.forEach((g, gi) => main.append(renderGroup(g, gi)));
  setFocus(st.focus, false);
}

function renderGroup(g, gi) {
  const sec = el('section', 'group');
  sec.dataset.index = gi;
  const head = el('div', 'ghead');
  const n = st.data.page * st.data.size + gi + 1;
  head.append(el('span', 'title', '#' + n + ' · ' + g.members.length + ' photos'),
    el('span', 'tier tier-' + g.tier, g.tier), el('span', 'score', 'best score ' + g.score.toFixed(4)));
  const del = el('button', 'delete-others', 'Keep the chosen photo, delete the others (d)');
  del.addEventListener('click', () => deleteOthers(gi));
  const nd = el('button', 'not-dup', 'Not duplicates (n)');
  nd.addEventListener('click', () => notDupGroup(gi));
  head.append(del, nd);
  const cards = el('div', 'cards');
  g.members.forEach((m, mi) => cards.append(renderCard(g, gi, m, mi)));
  sec.append(head, cards);
  sec.addEventListener('click', () => setFocus(gi, false));
  return sec;
}

function renderCard(g, gi, m, mi) {
  const c = el('div', 'card');
  c.dataset.path = m.path;
  const box = el('div', 'imgbox');
  const img = el('img');
  img.loading = 'lazy';
  img.decoding = 'async';
  img.alt = m.path;
  img.src = '/thumb?path=' + encodeURIComponent(m.path);
  box.append(img);
  const meta = el('div', 'meta');
  meta.append(el('div', 'badge'), el('div', 'path', m.path));
  const dims = m.width ? m.width + '×' + m.height : '?×?';
  meta.append(el('div', 'info', size(m.size) + ' · ' + dims));
  meta.append(el('div', 'taken', m.taken ? 'taken ' + m.taken : 'no date taken'));
  meta.append(el('div', 'mscore', m.score.toFixed(4) + ' · ' + m.tier));
  if (m.error) meta.append(el('div', 'err', m.error));
  const pair = el('button', 'pair-not-dup', 'Not a duplicate of the kept one');
  pair.addEventListener('click', (e) => { e.stopPropagation(); notDupPair(gi, mi); });
  meta.append(pair);
  c.append(box, meta);
  c.addEventListener('click', () => setKeep(gi, mi));
  return c;
}

function groupEl(gi) { return document.querySelector('.group[data-index="' + gi + '"]'); }

function setKeep(gi, mi) {
  const g = st.data.groups[gi];
  if (!g || mi < 0 || mi >= g.members.length) return;
  st.keep[gi] = mi;
  groupEl(gi).querySelectorAll('.card').forEach((c, i) => {
    c.classList.toggle('keep', i === mi);
    c.querySelector('.badge').textContent = i === mi ? 'KEEP' : '';
    c.querySelector('.pair-not-dup').hidden = i === mi;
  });
}

function setFocus(gi, scroll) {
  const gs = document.querySelectorAll('.group');
  if (gs.length === 0) return;
  gi = Math.max(0, Math.min(gi, gs.length - 1));
  st.focus = gi;
  gs.forEach((e, i) => e.classList.toggle('focus', i === gi));
  gs.forEach((e, i) => setKeep(i, st.keep[i] || 0));
  if (scroll) gs[gi].scrollIntoView({ block: 'nearest' });
}

async function act(fn) {
  document.body.dataset.state = 'loading';
  try {
    status(await fn());
  } catch (e) {
    status(e.message, true);
  }
  await load(true);
}

function deleteOthers(gi) {
  const g = st.data.groups[gi];
  const keep = g.members[st.keep[gi] || 0].path;
  const others = g.members.map((m) => m.path).filter((p) => p !== keep);
  return act(async () => {
    const j = await post('/api/delete', { keep: keep, delete: others });
    const to = j.moved.length ? j.moved[0].to.split('/').slice(0, 2).join('/') : '';
    return 'Kept ' + keep + '; moved ' + j.moved.length + ' to ' + to + '/ (mv back to restore).';
  });
}

function notDupGroup(gi) {
  const ps = st.data.groups[gi].members.map((m) => m.path);
  const pairs = [];
  for (let i = 0; i < ps.length; i++) for (let j = i + 1; j < ps.length; j++) pairs.push({ a: ps[i], b: ps[j] });
  return act(async () => {
    await post('/api/notdup', { pairs: pairs });
    return 'Marked ' + ps.length + ' photos as not duplicates of each other (imgfs similar --unmark undoes it).';
  });
}

function notDupPair(gi, mi) {
  const g = st.data.groups[gi];
  const a = g.members[st.keep[gi] || 0].path;
  const b = g.members[mi].path;
  if (a === b) return;
  return act(async () => {
    await post('/api/notdup', { pairs: [{ a: a, b: b }] });
    return 'Marked ' + b + ' as not a duplicate of ' + a + '.';
  });
}

function go(page) {
  st.page = page;
  st.focus = 0;
  load(false).then(() => window.scrollTo(0, 0));
}

document.addEventListener('keydown', (e) => {
  if (e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT') {
    if (e.key === 'Escape') e.target.blur();
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const d = st.data;
  const gi = st.focus;
  switch (e.key) {
    case 'j': setFocus(gi + 1, true); break;
    case 'k': setFocus(gi - 1, true); break;
    case 'h': setKeep(gi, (st.keep[gi] || 0) - 1); break;
    case 'l': setKeep(gi, (st.keep[gi] || 0) + 1); break;
    case 'd': if (d && d.groups[gi]) deleteOthers(gi); break;
    case 'n': if (d && d.groups[gi]) notDupGroup(gi); break;
    case ']': if (d && d.page < d.pages - 1) go(d.page + 1); break;
    case '[': if (d && d.page > 0) go(d.page - 1); break;
    case 't': {
      const s = $('tier');
      s.selectedIndex = (s.selectedIndex + 1) % s.options.length;
      s.dispatchEvent(new Event('change'));
      break;
    }
    case '/': $('folder').focus(); break;
    case 'r': load(true); break;
    case '?': $('help').hidden = !$('help').hidden; break;
    case 'Escape': $('help').hidden = true; break;
    default:
      if (e.key >= '1' && e.key <= '9') setKeep(gi, Number(e.key) - 1);
      else return;
  }
  e.preventDefault();
});

$('tier').addEventListener('change', (e) => { st.tier = e.target.value; go(0); });
$('folder').addEventListener('change', (e) => { st.folder = e.target.value.trim(); go(0); });
$('prev').addEventListener('click', () => go(st.page - 1));
$('next').addEventListener('click', () => go(st.page + 1));
$('helpbtn').addEventListener('click', () => { $('help').hidden = !$('help').hidden; });
load(false);
