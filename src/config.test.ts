import { describe, expect, it } from 'vitest';
import { AppError } from './errors.ts';
import { resolveServe } from './config.ts';

describe('serve options', () => {
  it('takes decimal whole numbers, from flags over the environment', () => {
    expect(resolveServe({ port: '8081' }, { BPLS_PORT: '9000' }).port).toBe(8081);
    expect(resolveServe({}, { BPLS_PORT: '9000' }).port).toBe(9000);
    expect(resolveServe({}, {}).port).toBe(8080);
    expect(resolveServe({ port: '0' }, {}).port).toBe(0);
  });

  it.each(['', ' 8080', '0x50', '1e3', '80.0', '-1', '65536', '8080 '])(
    'refuses the port %j with invalid_request',
    (port) => {
      let err: unknown;
      try {
        resolveServe({ port }, {});
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('invalid_request');
      expect((err as AppError).message).toMatch(/port must be/);
    },
  );

  it('refuses a lease TTL or sweep interval that is not decimal digits, naming the flag or the variable', () => {
    expect(() => resolveServe({ leaseTtl: '1e4' }, {})).toThrow(
      '--lease-ttl must be a whole number of seconds, 10 to 2592000',
    );
    expect(() => resolveServe({ sweepInterval: '0x10' }, {})).toThrow(
      '--sweep-interval must be a whole number of seconds, 1 to 86400',
    );
    expect(() => resolveServe({}, { BPLS_SWEEP_INTERVAL: '0' })).toThrow(
      'BPLS_SWEEP_INTERVAL must be a whole number of seconds, 1 to 86400',
    );
    expect(() => resolveServe({}, { BPLS_PORT: '80a' })).toThrow(
      'BPLS_PORT must be a whole number, 0 to 65535',
    );
  });
});
