/// <reference lib="dom" />
/**
 * API tokens (made with a role and tenant, the secret shown once, revoked) and the audit log,
 * paged newest first.
 */
import type { TokenWire } from './api.ts';
import { button, byId, confirmed, table } from './dom.ts';
import { api, clear, report, whoami } from './session.ts';

const AUDIT_PAGE = 20;
/** The newest sequence shown on the audit page (null: the head). */
let auditTop: number | null = null;
let auditHead = 0;

/** Lists the tokens (tokens permission). */
export async function loadTokens(): Promise<void> {
  try {
    const page = await api.tokens();
    byId('tokens').replaceChildren(
      table<TokenWire>(page.data, [
        ['name', (t) => t.name],
        ['role', (t) => t.role],
        ['tenant', (t) => t.tenant_id ?? 'every tenant'],
        ['prefix', (t) => t.prefix],
        ['status', (t) => t.status],
        ['created', (t) => t.created_at],
        ['last used', (t) => t.last_used_at],
        [
          '',
          (t) =>
            t.status !== 'active' || t.token_id === whoami()?.token_id
              ? ''
              : button(
                  'revoke',
                  () => {
                    if (
                      confirmed(`Revoke token "${t.name}"? Whoever uses it is refused from now on.`)
                    )
                      void change(() => api.revokeToken(t.token_id));
                  },
                  'danger',
                ),
        ],
      ]),
    );
  } catch (err) {
    report('tokens-err', err);
  }
}

async function change(f: () => Promise<unknown>): Promise<void> {
  clear('tokens-err');
  try {
    await f();
  } catch (err) {
    report('tokens-err', err);
  }
  await loadTokens();
  await loadAudit();
}

async function createToken(): Promise<void> {
  const name = byId<HTMLInputElement>('t-name').value.trim();
  const tenant = byId<HTMLInputElement>('t-tenant').value.trim();
  const role = byId<HTMLSelectElement>('t-role').value;
  const out = byId('t-secret');
  out.hidden = true;
  await change(async () => {
    const made = await api.createToken({ name, role, ...(tenant ? { tenant_id: tenant } : {}) });
    out.textContent = `Token "${made.name}" (${made.role}): ${made.token}  (copy it now: it is not shown again)`;
    out.hidden = false;
    byId<HTMLInputElement>('t-name').value = '';
  });
}

/** Shows one page of the audit log, newest first. */
export async function loadAudit(): Promise<void> {
  clear('audit-err');
  try {
    auditHead = (await api.audit(1)).head.seq;
    const top = Math.min(auditTop ?? auditHead, auditHead);
    const from = Math.max(0, top - AUDIT_PAGE);
    const a = await api.audit(top - from || 1, from);
    byId('audit').replaceChildren(
      table(
        a.data.filter((r) => r.seq <= top).reverse(),
        [
          ['seq', (r) => r.seq],
          ['at', (r) => r.at],
          ['actor', (r) => r.actor],
          ['action', (r) => r.action],
          ['target', (r) => r.target_id],
        ],
        undefined,
        'the audit log is empty',
      ),
    );
    byId('audit-info').textContent = top ? `${from + 1}–${top} of ${auditHead}` : '';
    byId<HTMLButtonElement>('audit-older').disabled = from === 0;
    byId<HTMLButtonElement>('audit-newer').disabled = top >= auditHead;
    byId<HTMLButtonElement>('audit-newest').disabled = top >= auditHead;
  } catch (err) {
    report('audit-err', err);
  }
}

/** Wires the token and audit controls. */
export function initAdmin(): void {
  byId('t-create').addEventListener('click', () => void createToken());
  byId('audit-older').addEventListener('click', () => {
    auditTop = Math.max(AUDIT_PAGE, (auditTop ?? auditHead) - AUDIT_PAGE);
    void loadAudit();
  });
  byId('audit-newer').addEventListener('click', () => {
    const top = (auditTop ?? auditHead) + AUDIT_PAGE;
    // Back at the head: follow it again (new rows show as they come).
    auditTop = top >= auditHead ? null : top;
    void loadAudit();
  });
  byId('audit-newest').addEventListener('click', () => {
    auditTop = null;
    void loadAudit();
  });
}
