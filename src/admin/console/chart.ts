/// <reference lib="dom" />
/**
 * The usage chart: per day over the last 30, the most leases in force at once (blue bars) and
 * the denials (red bars), drawn as inline SVG (no library, no external asset). Each bar carries
 * its numbers as a tooltip, the axis its scale, and a line under the chart says the totals, so
 * the figures are readable without hovering.
 */
import type { UsageDay } from './api.ts';
import { el } from './dom.ts';

const NS = 'http://www.w3.org/2000/svg';
const DAY_MS = 86_400_000;
const DAYS = 30;
const W = 720;
const H = 200;
const LEFT = 34;
const BOTTOM = 22;
const TOP = 8;

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>,
  text?: string,
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * The 30 days ending on `todayIso`'s UTC day, each with its figures (days without a row in
 * `rows` are zero: the CSV has a row only for days with activity).
 */
export function lastDays(rows: UsageDay[], todayIso: string): UsageDay[] {
  const byDate = new Map(rows.map((r) => [r.date, r]));
  const today = Math.floor(Date.parse(todayIso) / DAY_MS) * DAY_MS;
  const out: UsageDay[] = [];
  for (let i = DAYS - 1; i >= 0; i--) {
    const date = new Date(today - i * DAY_MS).toISOString().slice(0, 10);
    out.push(byDate.get(date) ?? { date, grants: 0, denials: 0, peak: 0 });
  }
  return out;
}

/** The chart and its legend, for the days `lastDays` gives. */
export function usageChart(days: UsageDay[]): HTMLElement {
  const box = el('div');
  const max = Math.max(1, ...days.map((d) => Math.max(d.peak, d.denials)));
  const plotW = W - LEFT - 4;
  const plotH = H - TOP - BOTTOM;
  const slot = plotW / days.length;
  const y = (v: number) => TOP + plotH - (v / max) * plotH;
  const chart = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    role: 'img',
    'aria-label': 'leases in force and denials per day, last 30 days',
  });
  // Axis: 0, half and the maximum, with light grid lines.
  for (const v of [0, Math.round(max / 2), max]) {
    chart.append(
      svg('line', { x1: LEFT, x2: W - 4, y1: y(v), y2: y(v), stroke: '#e3e6ea' }),
      svg('text', { x: LEFT - 4, y: y(v) + 3, 'text-anchor': 'end' }, String(v)),
    );
  }
  days.forEach((d, i) => {
    const x = LEFT + i * slot;
    const bw = Math.max(1, slot / 2 - 1);
    const g = svg('g', { 'data-date': d.date, 'data-peak': d.peak, 'data-denials': d.denials });
    g.append(svg('title', {}, `${d.date}: ${d.peak} in force at most, ${d.denials} denied`));
    g.append(
      svg('rect', { x: x + 1, y: y(d.peak), width: bw, height: y(0) - y(d.peak), fill: '#3867d6' }),
      svg('rect', {
        x: x + 1 + bw,
        y: y(d.denials),
        width: bw,
        height: y(0) - y(d.denials),
        fill: '#d63838',
      }),
    );
    chart.append(g);
    // A date every week and the last day's, unless it would overlap the week's label.
    if (i % 7 === 0 || (i === days.length - 1 && i % 7 >= 3))
      chart.append(
        svg('text', { x: x + slot / 2, y: H - 6, 'text-anchor': 'middle' }, d.date.slice(5)),
      );
  });
  const peak = Math.max(...days.map((d) => d.peak));
  const denied = days.reduce((s, d) => s + d.denials, 0);
  const legend = el('p', undefined, 'muted');
  legend.append(
    el('span', undefined, 'swatch leg-peak'),
    el('span', `most leases in force at once (peak ${peak}) `),
    el('span', undefined, 'swatch leg-denials'),
    el('span', `denials (${denied} in 30 days)`),
  );
  box.append(chart, legend);
  return box;
}
