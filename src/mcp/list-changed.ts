/**
 * Coalescing of an upstream's `notifications/tools/list_changed` (MCP 2025-06-18 "Tools: List
 * Changed Notification"): each one means "list again", and a burst of them means the same.
 *
 * A session re-lists and re-checks the pins once per burst, not once per notification: the first
 * notification starts a refresh; any that arrive while it runs ask for exactly one more refresh
 * after it, so a burst of N costs one refresh in flight plus at most one after it, and the last
 * one sees the upstream's latest state. Every notification also moves a generation counter: a
 * listing started before the latest notification may predate the change it announces, so its
 * result is never installed as current ({@link ListChangedCoalescer.isCurrent}); the refresh
 * after it is.
 *
 * Telling the agent ({@link ListChangedDelivery}): the notification is unrelated to any call of
 * the agent, so it goes on the agent's GET stream (MCP 2025-06-18 "Transports", Streamable HTTP:
 * "Listening for Messages from the Server"), and the server may only send it on a stream that is
 * open — the SDK's transport drops it otherwise. So a session keeps one pending "list changed"
 * while no GET stream is open, and sends it, once, when the agent opens one: however many changes
 * came meanwhile, they are one "list again" (one flag per session: memory stays bounded).
 *
 * @module
 */
import type { ServerResponse } from 'node:http';

/** One refresh: lists the upstream's tools and checks them, given the generation it started in. */
export type Refresh = (generation: number) => Promise<void>;

/** Runs one refresh at a time for a stream of list-changed notifications, coalescing bursts. */
export class ListChangedCoalescer {
  readonly #refresh: Refresh;
  /** The refreshes running now (the one in flight and the one queued after it), until they settle. */
  #running: Promise<void> | undefined;
  /** Whether a notification arrived since the refresh in flight started. */
  #again = false;
  #generation = 0;

  /** `refresh` must not throw (a failure is its own to log and recover from). */
  constructor(refresh: Refresh) {
    this.#refresh = refresh;
  }

  /** Moves with every notification: a listing whose generation is no longer current may be stale. */
  get generation(): number {
    return this.#generation;
  }

  /** Whether no notification arrived since `generation` was read. */
  isCurrent(generation: number): boolean {
    return generation === this.#generation;
  }

  /**
   * A notification arrived: starts a refresh, or (one in flight) asks for one more after it.
   * Resolves when the refreshes settle.
   */
  notify(): Promise<void> {
    this.#generation += 1;
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#loop();
    return this.#running;
  }

  /** Resolves when no refresh is in flight or queued (at once when none is). */
  settled(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false;
        await this.#refresh(this.#generation);
      } while (this.#again);
    } finally {
      this.#running = undefined;
    }
  }
}

/**
 * Sends the agent `notifications/tools/list_changed` on its GET stream, or, while it has none
 * open, keeps one pending and sends it when the agent opens one (see the module comment).
 */
export class ListChangedDelivery {
  /** Sends the notification (on the GET stream; must not throw). */
  readonly #send: () => Promise<void>;
  /** The response the agent's open GET stream is written to; undefined while none is open. */
  #stream: ServerResponse | undefined;
  #pending = false;

  constructor(send: () => Promise<void>) {
    this.#send = send;
  }

  /** Whether a notification waits for the agent's GET stream. */
  get pending(): boolean {
    return this.#pending;
  }

  /**
   * Tells the agent its tool list changed: now when its GET stream is open, else when it opens one.
   * A stream that closes before or while the notification is handed to it (its socket gone, its
   * `close` event not yet run) leaves the notification pending for the next stream: the transport
   * drops a message it has no open stream for, silently. At least once, then: an agent whose
   * closing stream did get it may get it again, which only says "list again" once more.
   * When the next stream opened during that hand-over (its {@link listen} found nothing pending
   * yet), the notification goes on it now: nothing else would send it while that stream stays
   * open (red team, issue 16 seventh round).
   */
  async tell(): Promise<void> {
    for (;;) {
      const stream = this.#stream;
      if (stream === undefined || !isOpen(stream)) {
        this.#pending = true;
        return;
      }
      this.#pending = false;
      await this.#send();
      if (this.#stream === stream && isOpen(stream)) return;
    }
  }

  /** The agent learned the whole list since (a complete `tools/list`): nothing pending is news to it. */
  learned(): void {
    this.#pending = false;
  }

  /**
   * The agent's GET request is being answered on `res`. Once the transport has accepted it (a
   * `200` event stream written: the transport registered the stream before writing its head) the
   * stream counts as open until `res` closes, and a pending notification is sent on it. A GET the
   * transport refuses (`409` for a second stream, `406`, …) opens nothing.
   */
  listen(res: ServerResponse): void {
    afterHead(res, () => {
      const type = res.getHeader('content-type');
      if (res.statusCode !== 200 || typeof type !== 'string' || !type.startsWith('text/event-stream')) return;
      this.#stream = res;
      res.once('close', () => {
        if (this.#stream === res) this.#stream = undefined;
      });
      if (this.#pending) void this.tell();
    });
  }
}

/** Whether `res` can still carry an event: not ended, its socket not destroyed. */
function isOpen(res: ServerResponse): boolean {
  return !res.destroyed && !res.writableEnded;
}

/**
 * Runs `then` once, just after `res`'s head is written. Node's `ServerResponse` emits no event
 * for that and the SDK transport reports no stream opening, so this instance's `writeHead` (the
 * call every response of the SDK's Node adapter goes through) is wrapped, and restored at once.
 */
function afterHead(res: ServerResponse, then: () => void): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    res.writeHead = writeHead;
    const written = (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
    queueMicrotask(then);
    return written;
  } as ServerResponse['writeHead'];
}
