/**
 * A pool's start: a worker loads only its own entry (a fraction of the
 * package) and still takes shared objects of every kind, in `initargs` and
 * in a task's arguments.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as plain from './fixtures/pool-plain-targets.js';
import { METHODS } from './helpers.js';

const module = plain.PLAIN_TARGETS;

for (const method of METHODS) {
  describe(`a pool's start (${method})`, () => {
    it('a worker whose task module does not import the package has not loaded it, and takes an Event in a task\'s arguments (loading it then)', async (t) => {
      const pool = new mp.Pool(1, { context: method, module });
      t.after(() => pool.terminate());
      // The worker's entry registers the kinds of its own config (queues, arrays), not the rest of the package's.
      assert.equal(await pool.apply(plain.revivable, ['SimpleQueue']), true);
      assert.equal(await pool.apply(plain.revivable, ['Event']), false);
      const event = new mp.Event();
      assert.equal(await pool.apply(plain.setEvent, [event]), 'set');
      assert.equal(event.isSet(), true);
      assert.equal(await pool.apply(plain.revivable, ['Event']), true);
      pool.terminate();
      await pool.join();
    });

    it('a worker handed an Event in initargs revives it before its initializer runs', async (t) => {
      const event = new mp.Event();
      const pool = new mp.Pool(1, { context: method, module, initializer: plain.setEvent, initargs: [event] });
      t.after(() => pool.terminate());
      assert.equal(await pool.apply(plain.revivable, ['Event']), true);
      assert.equal(event.isSet(), true);
      pool.terminate();
      await pool.join();
    });
  });
}
