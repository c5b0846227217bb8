/** Process-wide request counters for /metrics (Prometheus text format). */
export interface Metrics {
  observe(method: string, status: number, ms: number): void;
  render(gauges: Record<string, { help: string; value: number }>): string;
}

const BUCKETS_MS = [1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280];

export function createMetrics(): Metrics {
  const requests = new Map<string, number>();
  const buckets = new Array<number>(BUCKETS_MS.length + 1).fill(0);
  let sum = 0;
  let count = 0;
  return {
    observe(method, status, ms) {
      const key = `method="${method}",status="${status}"`;
      requests.set(key, (requests.get(key) ?? 0) + 1);
      let i = BUCKETS_MS.findIndex((b) => ms <= b);
      if (i === -1) i = BUCKETS_MS.length;
      buckets[i]!++;
      sum += ms / 1000;
      count++;
    },
    render(gauges) {
      const out: string[] = [];
      out.push(
        '# HELP bpls_http_requests_total HTTP requests answered, by method and status.',
        '# TYPE bpls_http_requests_total counter',
      );
      for (const [k, v] of [...requests].sort()) out.push(`bpls_http_requests_total{${k}} ${v}`);
      out.push(
        '# HELP bpls_http_request_duration_seconds Time to answer a request.',
        '# TYPE bpls_http_request_duration_seconds histogram',
      );
      let cumulative = 0;
      BUCKETS_MS.forEach((b, i) => {
        cumulative += buckets[i]!;
        out.push(`bpls_http_request_duration_seconds_bucket{le="${b / 1000}"} ${cumulative}`);
      });
      out.push(
        `bpls_http_request_duration_seconds_bucket{le="+Inf"} ${count}`,
        `bpls_http_request_duration_seconds_sum ${sum}`,
        `bpls_http_request_duration_seconds_count ${count}`,
      );
      for (const [name, g] of Object.entries(gauges))
        out.push(`# HELP ${name} ${g.help}`, `# TYPE ${name} gauge`, `${name} ${g.value}`);
      return `${out.join('\n')}\n`;
    },
  };
}
