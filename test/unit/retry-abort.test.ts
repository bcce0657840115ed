import { describe, expect, it } from 'vitest';
import type { Remote } from '../../src/remote/remote.js';
import { retrying } from '../../src/remote/retry.js';

describe('a retried remote call and SIGTERM (issue 30 item 11)', () => {
  it('a call that never settles ends with the abort reason as soon as the signal fires', async () => {
    const hanging = { stat: () => new Promise(() => {}) } as unknown as Remote;
    const ac = new AbortController();
    const call = retrying(hanging, { signal: ac.signal }).stat('x');
    const reason = new Error('interrupted by SIGTERM');
    setTimeout(() => ac.abort(reason), 20);
    await expect(call).rejects.toBe(reason);
  });

  it('a call made after the abort does not start waiting', async () => {
    let started = 0;
    const hanging = {
      stat: () => {
        started++;
        return new Promise(() => {});
      },
    } as unknown as Remote;
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(retrying(hanging, { signal: ac.signal }).stat('x')).rejects.toThrow(/stop|abort/i);
    expect(started).toBeLessThanOrEqual(1);
  });
});
