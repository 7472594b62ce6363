// Live events: one Server-Sent Events connection per tab to `GET /api/v1/events/stream`,
// read with `fetch` + ReadableStream (EventSource cannot send the Authorization header) and
// parsed here. Resumes with `Last-Event-ID` after a drop, reconnects with exponential
// backoff, refreshes the access token on 401. Pages subscribe and filter by stream or type.

import { authorizedFetch, notePosition, problemFrom, type Schemas } from "./client";

export type LiveEvent = Schemas["EventDto"];
export type LiveStatus = "idle" | "connecting" | "live" | "reconnecting" | "unavailable";

/** One parsed SSE message. */
export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/**
 * Incremental SSE parser (the WHATWG algorithm): feed it decoded text chunks; it calls
 * `onMessage` for each complete message and `onRetry` for `retry:` fields.
 */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private id: string | null = null;
  private sawId = false;
  constructor(
    private readonly onMessage: (m: SseMessage) => void,
    private readonly onRetry: (ms: number) => void = () => {},
  ) {}

  feed(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A lone trailing \r may be the first half of \r\n: wait for the next chunk.
      if (m[0] === "\r" && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) {
          this.id = value;
          this.sawId = true;
        }
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.onRetry(Number(value));
        break;
      default:
        break;
    }
  }

  private dispatch(): void {
    if (this.data.length === 0) {
      this.event = "";
      return;
    }
    const message: SseMessage = {
      id: this.sawId ? this.id : null,
      event: this.event || "message",
      data: this.data.join("\n"),
    };
    this.data = [];
    this.event = "";
    this.sawId = false;
    this.onMessage(message);
  }
}

type Listener = (e: LiveEvent) => void;

const SILENCE_MS = 45_000;

/** The tab's live connection. `start()` after login, `stop()` at logout. */
export class LiveEvents {
  private listeners = new Set<Listener>();
  private statusListeners = new Set<(s: LiveStatus) => void>();
  private abort: AbortController | null = null;
  private lastId: string | null = null;
  private attempt = 0;
  private retryFloor = 1000;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  status: LiveStatus = "idle";
  lastError: string | null = null;
  /** Events received since the page loaded (shown on the live indicator; tests read it). */
  received = 0;

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  onStatus(l: (s: LiveStatus) => void): () => void {
    this.statusListeners.add(l);
    return () => this.statusListeners.delete(l);
  }

  /** The global position of the last event received (resume point). */
  get position(): number | null {
    return this.lastId === null ? null : Number(this.lastId);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    void this.connect();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    this.abort = null;
    this.lastId = null;
    this.setStatus("idle");
  }

  private setStatus(s: LiveStatus) {
    this.status = s;
    for (const l of this.statusListeners) l(s);
  }

  private async connect(): Promise<void> {
    if (!this.running) return;
    this.setStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    const abort = new AbortController();
    this.abort = abort;
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (this.lastId !== null) headers["last-event-id"] = this.lastId;
    try {
      const res = await authorizedFetch("/api/v1/events/stream", {
        headers,
        signal: abort.signal,
        cache: "no-store",
      });
      if (!res.ok || !res.body) {
        const p = await problemFrom(res);
        this.lastError = p.message;
        if (res.status === 401 || res.status === 403) {
          // No session or no events:read: nothing to retry until the user logs in again.
          this.setStatus("unavailable");
          this.running = false;
          return;
        }
        throw p;
      }
      this.setStatus("live");
      this.lastError = null;
      const parser = new SseParser(
        (m) => this.deliver(m),
        (ms) => {
          this.retryFloor = Math.max(250, ms);
        },
      );
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      // The server sends a comment at least every 15 s; silence for much longer means a dead
      // connection (a proxy or a network drop that never closed it): reconnect and resume.
      let watchdog: ReturnType<typeof setTimeout> | null = null;
      const arm = () => {
        if (watchdog) clearTimeout(watchdog);
        watchdog = setTimeout(() => abort.abort(new Error("no data on the live connection for 45 s")), SILENCE_MS);
      };
      arm();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          this.attempt = 0; // data flowed: the next drop starts the backoff afresh
          parser.feed(value);
        }
      } finally {
        if (watchdog) clearTimeout(watchdog);
      }
      throw new Error("the live event stream ended");
    } catch (e) {
      if (!this.running || this.abort !== abort) return; // stopped, or replaced
      if (abort.signal.aborted && !(abort.signal.reason instanceof Error && abort.signal.reason.message.startsWith("no data"))) return;
      this.lastError = e instanceof Error ? e.message : String(e);
      this.attempt += 1;
      const backoff = Math.min(30_000, this.retryFloor * 2 ** Math.min(this.attempt - 1, 5));
      const delay = backoff / 2 + Math.random() * (backoff / 2);
      this.setStatus("reconnecting");
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.connect();
      }, delay);
    }
  }

  private deliver(m: SseMessage) {
    if (m.id !== null) this.lastId = m.id;
    this.received += 1;
    let event: LiveEvent;
    try {
      event = JSON.parse(m.data) as LiveEvent;
    } catch {
      return; // not an event (should not happen); the id still advanced
    }
    // before the listeners: the reads they start wait for the projectors to pass it
    notePosition(event.position);
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch (err) {
        console.error("live event listener failed", err);
      }
    }
  }
}

export const live = new LiveEvents();

// A handle for looking at the connection from the browser console (and the browser tests).
(globalThis as { __netledgerLive?: LiveEvents }).__netledgerLive = live;
