import { describe, expect, it } from 'vitest';
import { NODE_MAJOR, runtimeRefusal } from './runtime.ts';

describe('runtimeRefusal', () => {
  it('lets the project Node run, and refuses another major with what to run instead, never as internal', () => {
    expect(runtimeRefusal(`v${NODE_MAJOR}.3.1`, '/x/node')).toBeUndefined();
    const r = runtimeRefusal('v20.20.2', '/usr/bin/node');
    expect(r).toBe(
      `error: bp-license-server runs on Node ${NODE_MAJOR}; /usr/bin/node is Node v20.20.2\n` +
        `hint: from a checkout run bin/bp-license-server (it uses the project's Node ${NODE_MAJOR} from node_modules; make install brings it), or the single executable (make binary)\n`,
    );
    // 2.4 is not 24: the major is matched whole.
    expect(runtimeRefusal('v2.4.0', '/x/node')).toMatch(/^error: /);
    expect(runtimeRefusal('v240.0.0', '/x/node')).toMatch(/^error: /);
  });
});
