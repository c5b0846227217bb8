// A small stand-in for the vendor's cloud on 127.0.0.1, for the outbound sync tests.
import { createServer, type Server } from 'node:http';

/** The vendor's side: serves the newest bundle above `after`, stores pushed exports. */
export async function standIn() {
  const bundles = new Map<number, Buffer>();
  const exports: Array<{ seq: string | undefined; body: Buffer }> = [];
  const requests: string[] = [];
  let failPushes = 0;
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url!, 'http://x');
      const m = /^\/v1\/servers\/([^/]+)\/(bundles|exports)$/.exec(url.pathname);
      if (!m) return void res.writeHead(404).end();
      if (m[2] === 'bundles' && req.method === 'GET') {
        const after = Number(url.searchParams.get('after'));
        const seq = Math.max(...[...bundles.keys()].filter((s) => s > after), -1);
        if (seq < 0) return void res.writeHead(204).end();
        const body = bundles.get(seq)!;
        return void res
          .writeHead(200, {
            'content-type': 'application/octet-stream',
            'content-length': body.length,
          })
          .end(body);
      }
      if (m[2] === 'exports' && req.method === 'POST') {
        if (failPushes > 0) {
          failPushes--;
          return void res.writeHead(503).end();
        }
        exports.push({
          seq: req.headers['x-bpsync-seq'] as string | undefined,
          body: Buffer.concat(chunks),
        });
        return void res.writeHead(201).end();
      }
      res.writeHead(405).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    bundles,
    exports,
    requests,
    failNextPushes(n: number) {
      failPushes = n;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
