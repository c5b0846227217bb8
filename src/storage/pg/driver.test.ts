import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPg, redactUrl, translate, UNAVAILABLE } from './driver.ts';

describe('translate', () => {
  it('numbers ? and @name parameters, leaves quoted text alone, and names temp tables', () => {
    expect(translate("SELECT ? AS a, '?' AS q, @x, @y, @x FROM temp.t WHERE b = ?")).toEqual({
      text: "SELECT $1 AS a, '?' AS q, $1, $2, $1 FROM pg_temp.t WHERE b = $2",
      names: ['x', 'y'],
    });
  });
});

describe('redactUrl', () => {
  it('hides a password in the user part and in the query string', () => {
    const shown = redactUrl(
      'postgres://u:pw1@h:5432/db?password=pw2&sslpassword=pw3&sslmode=require',
    );
    expect(shown).not.toMatch(/pw[123]/);
    expect(shown).toContain('sslmode=require');
  });
});

describe('a PostgreSQL that accepts connections and never answers', () => {
  let server: Server;
  let port = 0;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    server = createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });

  it('costs one bounded wait, then answers UNAVAILABLE at once; a ROLLBACK never waits', () => {
    const pg = openPg(`postgres://bpls@127.0.0.1:${port}/db`, {
      callTimeoutMs: 600,
      connectTimeoutMs: 400,
    });
    try {
      const stmt = pg.prepare('SELECT 1 AS one');
      let t = performance.now();
      expect(() => stmt.get()).toThrow(expect.objectContaining({ code: UNAVAILABLE }));
      expect(performance.now() - t).toBeLessThan(2000);
      // From now on nothing blocks the thread: refused at once, a ROLLBACK sent and not waited for.
      t = performance.now();
      for (let i = 0; i < 20; i++) {
        expect(() => pg.exec('BEGIN')).toThrow(expect.objectContaining({ code: UNAVAILABLE }));
        expect(pg.inTransaction).toBe(false);
        pg.exec('ROLLBACK');
        expect(() => stmt.get()).toThrow(expect.objectContaining({ code: UNAVAILABLE }));
      }
      expect(performance.now() - t).toBeLessThan(100);
    } finally {
      pg.close();
    }
  });
});
