import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Config } from '../config.js';
import type { CatalogCache } from '../catalog/catalog-cache.js';
import type { BackupEntry } from '../catalog/local-store.js';
import { LOG_FILE } from '../catalog/log.js';
import { lagFromRecord } from '../catalog/replication.js';
import { type ReplicationRecord, readStatus } from '../catalog/status.js';
import { formatAge, formatBytes, formatDuration } from '../human.js';
import { freeSpace } from '../fsutil.js';
import type { Job } from './jobs.js';
import { allows, type Scope } from './tokens.js';

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

const STYLE = `body{font:16px/1.4 system-ui,sans-serif;margin:0 auto;padding:12px;max-width:46rem;color:#222;background:#fafafa}
h1{font-size:1.3rem}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:4px 6px;border-bottom:1px solid #ddd;font-size:.95rem}.ok{color:#17702a}.bad{color:#b00020;font-weight:600}
.muted{color:#666;font-size:.85rem}button{font-size:1rem;padding:.6rem 1rem;border-radius:6px;border:1px solid #345;background:#2a5db0;color:#fff}
svg{width:100%;height:auto;background:#fff;border:1px solid #ddd}input{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}`;

function shell(title: string, body: string, script = ''): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}${script ? `<script>${script}</script>` : ''}</body></html>`;
}

/** The last `max` lines of backup.log that recorded an error (only its tail is read). */
async function recentFailures(backupDir: string, max = 5): Promise<{ time: string; command: string; error: string }[]> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(path.join(backupDir, LOG_FILE), 'r');
    const { size } = await fh.stat();
    const len = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const out: { time: string; command: string; error: string }[] = [];
    for (const line of buf.toString('utf8').split('\n').reverse()) {
      try {
        const r = JSON.parse(line) as { time?: string; command?: string; result?: string; error?: string };
        if (r.result === 'error') out.push({ time: String(r.time), command: String(r.command), error: String(r.error ?? '') });
      } catch {}
      if (out.length >= max) break;
    }
    return out;
  } catch {
    return [];
  } finally {
    await fh?.close();
  }
}

/** Sizes over time, one line per type, as an inline SVG (no script, no external asset). */
function sizeChart(points: { type: string; t: number; size: number }[]): string {
  if (points.length < 1) return '<p class="muted">no backups yet</p>';
  const W = 600;
  const H = 160;
  const t0 = Math.min(...points.map((p) => p.t));
  const t1 = Math.max(...points.map((p) => p.t), t0 + 1);
  const max = Math.max(...points.map((p) => p.size), 1);
  const colors: Record<string, string> = { database: '#2a5db0', storage: '#c77c02' };
  const lines = Object.entries(colors).map(([type, color]) => {
    const pts = points
      .filter((p) => p.type === type)
      .sort((a, b) => a.t - b.t)
      .map((p) => `${(10 + ((p.t - t0) / (t1 - t0)) * (W - 20)).toFixed(1)},${(H - 10 - (p.size / max) * (H - 30)).toFixed(1)}`);
    // a dot per backup: one backup is a point, not an invisible line (past a few dozen the line shows them)
    const dots = (pts.length > 60 ? [] : pts).map((xy) => `<circle cx="${xy.split(',')[0]}" cy="${xy.split(',')[1]}" r="3" fill="${color}"/>`).join('');
    return pts.length ? `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/>${dots}` : '';
  });
  return `<svg id="sizes" viewBox="0 0 ${W} ${H}" role="img" aria-label="backup sizes over time"><text x="10" y="14" font-size="11" fill="#666">max ${esc(formatBytes(max))}</text>
<text x="${W - 170}" y="14" font-size="11" fill="#2a5db0">database</text><text x="${W - 100}" y="14" font-size="11" fill="#c77c02">storage</text>${lines.join('')}</svg>`;
}

/** How far behind a remote is, from what its last sync recorded (no connection from the page). */
function replicationCell(entries: BackupEntry[], record: ReplicationRecord | undefined): string {
  if (!record) return '<span class="muted">not synced yet</span>';
  const lag = lagFromRecord(entries, record);
  if (!lag.lagSeconds && !lag.missing.length) return '<span class="ok">up to date</span>';
  return `<span class="${lag.lagSeconds ? 'bad' : 'muted'}">${esc(formatAge(lag.lagSeconds * 1000))} behind, ${lag.missing.length} missing</span>`;
}

/** The page minus what depends on the request (the button, the running jobs): shared by every request. */
async function sections(cfg: Config, maxAgeMs: number, entries: BackupEntry[]): Promise<string> {
  const now = Date.now();
  const { status } = await readStatus(cfg.backupDir);
  const free = await freeSpace(cfg.backupDir).catch(() => undefined);
  const rows = (['full', 'database', 'storage'] as const).map((type) => {
    const e = entries.find((x) => x.type === type && x.status === 'ok');
    if (!e) return `<tr data-type="${type}"><td>${type}</td><td class="bad">none</td><td></td><td></td></tr>`;
    const age = now - e.createdAt.getTime();
    const fresh = age <= maxAgeMs;
    return `<tr data-type="${type}"><td>${type}</td><td>${esc(e.id)}</td><td class="${fresh ? 'ok' : 'bad'}">${esc(formatAge(age))}${fresh ? '' : ` (over ${esc(formatAge(maxAgeMs))})`}</td><td>${type === 'full' ? '' : esc(formatBytes(e.size))}</td></tr>`;
  });
  const drill = status?.drill;
  const drillHtml = drill
    ? `<p>${esc(drill.finished_at)}: <b class="${drill.result === 'passed' ? 'ok' : 'bad'}">${esc(drill.result)}</b> — RTO ${drill.rto_ms === undefined ? 'not measured' : esc(formatDuration(drill.rto_ms))} (target ${esc(formatDuration(drill.rto_target_ms))}), RPO ${drill.rpo_ms === undefined ? '?' : esc(formatAge(drill.rpo_ms))} (target ${esc(formatDuration(drill.rpo_target_ms))})</p>`
    : '<p class="muted">no drill recorded yet (vertex-backup drill)</p>';
  let remotesHtml = '<p class="muted">no remotes configured</p>';
  try {
    const { loadConfiguredRemotes } = await import('../remote/config.js');
    const rc = await loadConfiguredRemotes({ env: cfg.env, fileRemotes: cfg.file.remotes, configFile: cfg.configFile });
    if (rc.remotes.length)
      remotesHtml = `<table>${rc.remotes.map((r) => `<tr data-remote="${esc(r.name)}"><td>${esc(r.name)}</td><td>${r.enabled ? 'enabled' : 'disabled'}</td><td>${esc(new URL(r.url).protocol.replace(':', ''))}</td><td>${replicationCell(entries, status?.replication?.[r.name])}</td></tr>`).join('')}</table>`;
  } catch {}
  const failures = await recentFailures(cfg.backupDir);
  const failuresHtml = failures.length
    ? `<table>${failures.map((f) => `<tr><td class="muted">${esc(f.time)}</td><td>${esc(f.command)}</td><td class="bad">${esc(f.error)}</td></tr>`).join('')}</table>`
    : '<p class="ok">none</p>';
  const chart = sizeChart(entries.filter((e) => e.type !== 'full' && e.status === 'ok').map((e) => ({ type: e.type, t: e.createdAt.getTime(), size: e.size })));
  return `<h2>Newest backups (max age ${esc(formatAge(maxAgeMs))})</h2><table id="newest"><tr><th>type</th><th>id</th><th>age</th><th>size</th></tr>${rows.join('')}</table>
<h2>Sizes over time</h2>${chart}
<h2>Last restore drill</h2>${drillHtml}
<h2>Remotes</h2>${remotesHtml}
<h2>Disk</h2><p id="disk">${free === undefined ? '?' : `${esc(formatBytes(free))} free`} at ${esc(cfg.backupDir)}</p>
<h2>Recent failures</h2>${failuresHtml}
<p class="muted">updated ${esc(new Date(now).toISOString())}; live through the event stream</p>`;
}

// no inline handler attributes: one script, the only one, that a page with no external assets needs
const SCRIPT = `
const b=document.getElementById('backup-now'),j=document.getElementById('job');
if(b)b.onclick=async()=>{b.disabled=true;j.textContent='starting…';
const r=await fetch('/backups/create',{method:'POST',headers:{'content-type':'application/json'},body:JSON.stringify({type:'full'}),credentials:'same-origin'});
const d=await r.json();j.textContent=r.ok?'job '+d.job_id+' running':(d.error&&d.error.message)||('error '+r.status);if(!r.ok)b.disabled=false;};
const es=new EventSource('/events');
es.addEventListener('progress',(e)=>{const d=JSON.parse(e.data);if(j&&d.progress)j.textContent=d.kind+': '+d.progress.phase+(d.progress.subject?' '+d.progress.subject:'');});
es.addEventListener('done',()=>{es.close();location.reload();});`;

/**
 * The status page of one backup directory. Its sections are made once from a catalog snapshot and
 * shared by every request until the catalog changes, `ttlMs` passes (ages, disk free, backup.log,
 * status.json move on their own) or `invalidate()`: 200 phones opening the page at once cost one
 * listing and one rendering, not 200 (bench/serve.mjs).
 */
export class StatusPage {
  private cached?: { generation: number; epoch: number; at: number; html: Promise<string>; pages: Map<string, Uint8Array<ArrayBuffer>> };
  private epoch = 0;

  constructor(
    private readonly cfg: Config,
    private readonly maxAgeMs: number,
    private readonly catalog: CatalogCache,
    private readonly ttlMs = 1_000,
  ) {}

  invalidate(): void {
    this.epoch++;
  }

  /** The page's bytes: the same array for every request in the same state (no copy per request). */
  async render(scope: Scope, running: Job[]): Promise<Uint8Array<ArrayBuffer>> {
    const snap = await this.catalog.get();
    let c = this.cached;
    if (!c || c.generation !== snap.generation || c.epoch !== this.epoch || Date.now() - c.at >= this.ttlMs) {
      // the promise is what is shared: requests that come while it is made wait for the same one
      const entry = { generation: snap.generation, epoch: this.epoch, at: Date.now(), html: sections(this.cfg, this.maxAgeMs, snap.entries), pages: new Map() };
      this.cached = c = entry;
      entry.html.catch(() => {
        if (this.cached === entry) this.cached = undefined;
      });
    }
    const trigger = allows(scope, 'trigger');
    const key = `${trigger}|${running.map((j) => j.kind).join(',')}`;
    const html = await c.html;
    let page = c.pages.get(key);
    if (!page) {
      const button = trigger
        ? `<p><button id="backup-now" ${running.length ? 'disabled' : ''}>Back up now</button> <span id="job" class="muted">${running.length ? `running: ${esc(running.map((j) => j.kind).join(', '))}` : ''}</span></p>`
        : '';
      page = new TextEncoder().encode(shell('vertex-backup status', `<h1>vertex-backup</h1>${button}\n${html}`, SCRIPT));
      c.pages.set(key, page);
    }
    return page;
  }
}

function login(message?: string): string {
  return shell(
    'vertex-backup: sign in',
    `<h1>vertex-backup</h1>${message ? `<p class="bad">${esc(message)}</p>` : ''}<form method="post" action="/login"><p><label>Token<br><input name="token" type="password" autocomplete="current-password"></label></p><p><button type="submit">Sign in</button></p></form>
<p class="muted">create one with: vertex-backup token create --scope read</p>`,
  );
}

export const loginPage = login;
