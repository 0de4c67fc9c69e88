/**
 * The coalescing of `notifications/tools/list_changed` (src/mcp/list-changed.ts): a burst costs one
 * refresh in flight and at most one after it, the last one sees the last notification, and a
 * listing a later notification overtook is never current; and its delivery to the agent's GET
 * stream, kept pending across a stream that closes as it is sent.
 */
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ListChangedCoalescer, ListChangedDelivery } from '../../src/mcp/list-changed.js';

/** A refresh the test finishes by hand; records the generation each run started in. */
function heldRefreshes() {
  const started: number[] = [];
  const finish: Array<() => void> = [];
  const refresh = (generation: number) => {
    started.push(generation);
    return new Promise<void>((resolve) => finish.push(resolve));
  };
  const finishNext = async () => {
    finish.shift()!();
    // Lets the coalescer's loop observe the end of the run (and start the next one).
    for (let i = 0; i < 5; i += 1) await Promise.resolve();
  };
  return { started, refresh, finishNext, pending: () => finish.length };
}

describe('ListChangedCoalescer', () => {
  it('runs a burst of fifty as one refresh in flight plus one after it, the last in the last generation', async () => {
    const h = heldRefreshes();
    const c = new ListChangedCoalescer(h.refresh);
    const done = Array.from({ length: 50 }, () => c.notify());
    expect(h.started).toEqual([1]);
    expect(c.isCurrent(1)).toBe(false);
    await h.finishNext();
    expect(h.started).toEqual([1, 50]);
    expect(c.isCurrent(50)).toBe(true);
    await h.finishNext();
    await Promise.all(done);
    await c.settled();
    expect(h.started).toEqual([1, 50]);
    expect(h.pending()).toBe(0);
  });

  it('a notification after the runs settled starts a new one; settled() waits for the runs, then answers at once', async () => {
    const h = heldRefreshes();
    const c = new ListChangedCoalescer(h.refresh);
    void c.notify();
    let settled = false;
    void c.settled().then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    await h.finishNext();
    expect(settled).toBe(true);
    void c.notify();
    expect(h.started).toEqual([1, 2]);
    await h.finishNext();
    await c.settled();
  });

  it('never runs more than one refresh at a time, and the last run starts after the last notification (any interleaving)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom('notify', 'finish'), { maxLength: 60 }), async (events) => {
        let running = 0;
        let most = 0;
        const h = heldRefreshes();
        const c = new ListChangedCoalescer(async (g) => {
          running += 1;
          most = Math.max(most, running);
          await h.refresh(g);
          running -= 1;
        });
        for (const e of events) {
          if (e === 'notify') void c.notify();
          else if (h.pending() > 0) await h.finishNext();
        }
        while (h.pending() > 0) await h.finishNext();
        await c.settled();
        expect(most).toBeLessThanOrEqual(1);
        if (c.generation > 0) expect(h.started.at(-1)).toBe(c.generation);
      }),
      { seed: 16, numRuns: 200 },
    );
  });
});

/** A stand-in for the agent's GET response: a head written by the transport, then a stream that can close. */
class FakeStream extends EventEmitter {
  statusCode = 0;
  destroyed = false;
  writableEnded = false;
  #headers: Record<string, string> = {};
  writeHead(status: number, headers: Record<string, string>): this {
    this.statusCode = status;
    this.#headers = headers;
    return this;
  }
  getHeader(name: string): string | undefined {
    return this.#headers[name];
  }
  /** The socket goes away; Node runs the `close` listeners later (a tick, or more under load). */
  drop(): void {
    this.destroyed = true;
  }
  close(): void {
    this.drop();
    this.emit('close');
  }
}

/** Opens `stream` as the agent's GET stream of `delivery` (the transport's 200 event-stream head). */
async function open(delivery: ListChangedDelivery, stream: FakeStream): Promise<void> {
  delivery.listen(stream as unknown as ServerResponse);
  stream.writeHead(200, { 'content-type': 'text/event-stream' });
  await new Promise((r) => setImmediate(r));
}

describe('ListChangedDelivery', () => {
  it('sends on the open stream, once', async () => {
    let sent = 0;
    const delivery = new ListChangedDelivery(async () => void sent++);
    await open(delivery, new FakeStream());
    await delivery.tell();
    expect({ sent, pending: delivery.pending }).toEqual({ sent: 1, pending: false });
    await open(delivery, new FakeStream());
    expect(sent).toBe(1);
  });

  it('a stream that closes while the notification is handed to it keeps it pending; the next stream gets it', async () => {
    const first = new FakeStream();
    let sent = 0;
    const delivery = new ListChangedDelivery(async () => {
      sent++;
      if (sent === 1) first.close(); // the transport finds no stream: the SDK drops it silently
    });
    await open(delivery, first);
    await delivery.tell();
    expect(delivery.pending).toBe(true);
    await open(delivery, new FakeStream());
    expect({ sent, pending: delivery.pending }).toEqual({ sent: 2, pending: false });
  });

  it('the next stream opening while the notification is handed to a closing one gets it (not left pending behind an open stream)', async () => {
    // Red team (issue 16, seventh round): the first hand-over is lost with its stream, and the
    // agent's reconnect lands before the hand-over returns: nothing else would ever send it.
    const first = new FakeStream();
    const second = new FakeStream();
    const sentOn: FakeStream[] = [];
    let current = first;
    const delivery = new ListChangedDelivery(async () => {
      sentOn.push(current);
      if (sentOn.length === 1) {
        first.close(); // the transport finds no stream: dropped
        current = second;
        await open(delivery, second); // the agent reconnects meanwhile
      }
    });
    await open(delivery, first);
    await delivery.tell();
    expect({ sentOn: sentOn.map((s) => (s === first ? 'first' : 'second')), pending: delivery.pending }).toEqual({ sentOn: ['first', 'second'], pending: false });
  });

  it('a stream whose socket is gone but whose close has not run yet is not sent on: pending for the next one', async () => {
    const first = new FakeStream();
    let sent = 0;
    const delivery = new ListChangedDelivery(async () => void sent++);
    await open(delivery, first);
    first.drop();
    await delivery.tell();
    expect({ sent, pending: delivery.pending }).toEqual({ sent: 0, pending: true });
    first.emit('close');
    await open(delivery, new FakeStream());
    expect({ sent, pending: delivery.pending }).toEqual({ sent: 1, pending: false });
  });
});
