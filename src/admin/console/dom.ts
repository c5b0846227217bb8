/// <reference lib="dom" />
/**
 * DOM helpers of the admin console. Every value is set with textContent, never as HTML: the page's
 * content security policy allows no other script, and data never becomes markup.
 */

/** The element with this id; the page (src/admin/page.tsx) has every id the console uses. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the admin page has no #${id}`);
  return e as T;
}

/** A new element with its text (any value, as text) and class. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: unknown,
  cls?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

/** A status as a coloured badge (the page's `.status.<name>` styles). */
export const badge = (status: string): HTMLElement => el('span', status, `status ${status}`);

/** A column: its heading and what a row shows (a node, or a value as text, `–` for none). */
export type Column<R> = [heading: string, cell: (row: R) => unknown];

/**
 * A table of `rows`; with `onPick`, a click on a row (or Enter on it: rows take the focus) calls
 * it. `empty` (default "none") when there are no rows.
 */
export function table<R>(
  rows: R[],
  cols: Column<R>[],
  onPick?: (row: R) => void,
  empty = 'none',
): HTMLElement {
  const t = el('table');
  const head = el('tr');
  for (const c of cols) head.append(el('th', c[0]));
  t.append(head);
  if (!rows.length) {
    const tr = el('tr');
    const td = el('td', empty, 'muted');
    td.colSpan = cols.length;
    tr.append(td);
    t.append(tr);
  }
  for (const r of rows) {
    const tr = el('tr', undefined, onPick ? 'pick' : undefined);
    for (const c of cols) {
      const v = c[1](r);
      const td = el('td');
      if (v instanceof Node) td.append(v);
      else td.textContent = v === null || v === undefined ? '–' : String(v);
      tr.append(td);
    }
    if (onPick) {
      tr.tabIndex = 0;
      tr.addEventListener('click', () => onPick(r));
      tr.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') onPick(r);
      });
    }
    t.append(tr);
  }
  return t;
}

/** A button that runs `onClick` (not passing the click on to the row under it). */
export function button(text: string, onClick: () => void, cls?: string): HTMLButtonElement {
  const b = el('button', text, cls);
  b.addEventListener('click', (ev) => {
    ev.stopPropagation();
    onClick();
  });
  return b;
}

/**
 * Asks the admin to confirm a change that cannot be undone (or stops a service); false: do
 * nothing. The browser's own dialog: it needs no script or markup of ours.
 */
export function confirmed(question: string): boolean {
  return window.confirm(question);
}
