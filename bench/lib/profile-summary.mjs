// Summarises a V8 .cpuprofile: self time by function (and by source module of the bundle).
//   node bench/lib/profile-summary.mjs FILE.cpuprofile [top=30] [bundle=dist/cli.cjs]
// Lines of dist/cli.cjs are mapped back to the source file by esbuild's "// src/…" region comments.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function summarize(file, { top = 30, bundle } = {}) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const regions = [];
  if (bundle) {
    const lines = readFileSync(bundle, 'utf8').split('\n');
    lines.forEach((l, i) => {
      const m = /^\/\/ ((?:src|node_modules)\/\S+)$/.exec(l);
      if (m) regions.push([i, m[1]]);
    });
  }
  const moduleOf = (url, line) => {
    if (!url) return '(native/vm)';
    if (bundle && url.endsWith(bundle.split('/').pop())) {
      let lo = 0;
      let hi = regions.length - 1;
      let best = '(bundle)';
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (regions[mid][0] <= line) {
          best = regions[mid][1];
          lo = mid + 1;
        } else hi = mid - 1;
      }
      return best
        .replace(/^node_modules\/(\.pnpm\/)?/, 'npm:')
        .replace(/^(npm:(@[^/]+\/)?[^/]+).*/, '$1');
    }
    if (url.startsWith('node:')) return url;
    return url.replace(/^file:\/\//, '');
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const dt = new Map();
  for (let i = 0; i < prof.samples.length; i++)
    dt.set(prof.samples[i], (dt.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
  const total = [...dt.values()].reduce((a, b) => a + b, 0);
  const fn = new Map();
  const mod = new Map();
  for (const [id, t] of dt) {
    const n = byId.get(id);
    const cf = n.callFrame;
    const m = moduleOf(cf.url, cf.lineNumber);
    const key = `${cf.functionName || '(anonymous)'}  [${m}${cf.url && !cf.url.startsWith('node:') && !m.startsWith('(') ? '' : `:${cf.lineNumber + 1}`}]`;
    fn.set(key, (fn.get(key) ?? 0) + t);
    const mk = cf.url ? m : cf.functionName;
    mod.set(mk, (mod.get(mk) ?? 0) + t);
  }
  const pct = (t) => ((t / total) * 100).toFixed(1).padStart(5);
  const out = [`total ${(total / 1e6).toFixed(2)} s sampled`, '', 'self time by function:'];
  for (const [k, t] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top))
    out.push(`${pct(t)} %  ${(t / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  out.push('', 'self time by module:');
  for (const [k, t] of [...mod].sort((a, b) => b[1] - a[1]).slice(0, top))
    out.push(`${pct(t)} %  ${(t / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top, bundle] = process.argv.slice(2);
  console.log(
    summarize(file, {
      top: Number(top ?? 30),
      bundle: bundle ?? fileURLToPath(new URL('../../dist/cli.cjs', import.meta.url)),
    }),
  );
}
