// Data hooks shared by the pages: loading a resource (with reload and error), running a user
// action (pending, error, one Idempotency-Key per action reused on retry), reacting to live
// events, and cursor-paginated lists.

import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";

import { api, ApiProblem, newIdempotencyKey, toProblem } from "./api/client";
import { live, type LiveEvent, type LiveStatus } from "./api/live";

export interface Resource<T> {
  data: T | null;
  error: ApiProblem | null;
  loading: boolean;
  /** Loads again; resolves when done. Keeps the old data visible meanwhile. */
  reload: () => Promise<void>;
}

/** Loads `fetcher()` when `deps` change; the latest call wins. */
export function useResource<T>(fetcher: () => Promise<T>, deps: unknown[]): Resource<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiProblem | null>(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const fetchRef = useRef(fetcher);
  fetchRef.current = fetcher;

  const reload = useCallback(async () => {
    const mine = ++seq.current;
    setLoading(true);
    try {
      const d = await fetchRef.current();
      if (mine === seq.current) {
        setData(d);
        setError(null);
      }
    } catch (e) {
      if (mine === seq.current) setError(toProblem(e));
    } finally {
      if (mine === seq.current) setLoading(false);
    }
  }, []);

  useEffect(() => {
    setData(null);
    void reload();
  }, deps);

  return { data, error, loading, reload };
}

export interface Action<A extends unknown[], R> {
  run: (...args: A) => Promise<R | undefined>;
  pending: boolean;
  error: ApiProblem | null;
  result: R | null;
  clear: () => void;
}

/**
 * A user action. `fn` gets an Idempotency-Key: the same key while the user retries the same
 * input after a failure, a new one after a success or when the input changes.
 */
export function useAction<A extends unknown[], R>(
  fn: (key: string, ...args: A) => Promise<R>,
): Action<A, R> {
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<ApiProblem | null>(null);
  const [result, setResult] = useState<R | null>(null);
  const keyRef = useRef<{ key: string; input: string } | null>(null);
  const fnRef = useRef(fn);
  fnRef.current = fn;

  const run = useCallback(async (...args: A): Promise<R | undefined> => {
    const input = JSON.stringify(args);
    if (!keyRef.current || keyRef.current.input !== input) {
      keyRef.current = { key: newIdempotencyKey(), input };
    }
    setPending(true);
    setError(null);
    try {
      const r = await fnRef.current(keyRef.current.key, ...args);
      keyRef.current = null;
      setResult(r);
      return r;
    } catch (e) {
      const p = toProblem(e);
      // A rejected input will not succeed by retrying with the same key; a fresh key lets
      // the user fix and resend.
      if (p.status >= 400 && p.status < 500 && p.code !== "idempotency-in-progress") {
        keyRef.current = null;
      }
      setError(p);
      return undefined;
    } finally {
      setPending(false);
    }
  }, []);

  const clear = useCallback(() => {
    setError(null);
    setResult(null);
  }, []);

  return { run, pending, error, result, clear };
}

/**
 * Calls `onEvent` when live events matching `filter` arrive: once shortly after a burst
 * (at most every `minIntervalMs`, so a busy fleet does not turn into a reload storm). The
 * refetch sees the event: the client sends the last position it has seen as `min_position`
 * and the API answers once its projectors have passed it (`api()` in ./api/client).
 */
export function useLiveRefresh(
  filter: (e: LiveEvent) => boolean,
  onEvent: () => void,
  deps: unknown[],
  minIntervalMs = 1000,
) {
  const filterRef = useRef(filter);
  filterRef.current = filter;
  const cbRef = useRef(onEvent);
  cbRef.current = onEvent;
  useEffect(() => {
    let scheduled: ReturnType<typeof setTimeout> | null = null;
    let last = 0;
    const fire = () => {
      scheduled = null;
      last = Date.now();
      cbRef.current();
    };
    const off = live.subscribe((e) => {
      if (scheduled || !filterRef.current(e)) return;
      scheduled = setTimeout(fire, Math.max(150, last + minIntervalMs - Date.now()));
    });
    return () => {
      off();
      if (scheduled) clearTimeout(scheduled);
    };
  }, deps);
}

/** Live events matching `filter`, newest last, at most `max`. */
export function useLiveEvents(filter: (e: LiveEvent) => boolean, deps: unknown[], max = 200): LiveEvent[] {
  const [events, setEvents] = useState<LiveEvent[]>([]);
  const filterRef = useRef(filter);
  filterRef.current = filter;
  useEffect(() => {
    setEvents([]);
    return live.subscribe((e) => {
      if (filterRef.current(e)) setEvents((old) => [...old, e].slice(-max));
    });
  }, deps);
  return events;
}

export function useLiveStatus(): LiveStatus {
  return useSyncExternalStore(
    (cb) => live.onStatus(cb),
    () => live.status,
  );
}

export interface Paged<T> {
  items: T[];
  error: ApiProblem | null;
  loading: boolean;
  hasMore: boolean;
  loadMore: () => Promise<void>;
  /** Reloads the pages loaded so far (first page again, then as many as were shown). */
  reload: () => Promise<void>;
}

/** A cursor-paginated list: `fetchPage(cursor)` returns `{items, next_cursor}`. */
export function usePaged<T>(
  fetchPage: (cursor: string | undefined) => Promise<{ items: T[]; next_cursor?: string | null }>,
  deps: unknown[],
): Paged<T> {
  const [items, setItems] = useState<T[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<ApiProblem | null>(null);
  const [loading, setLoading] = useState(true);
  const pagesRef = useRef(1);
  const seq = useRef(0);
  const fetchRef = useRef(fetchPage);
  fetchRef.current = fetchPage;

  const loadPages = useCallback(async (pages: number) => {
    const mine = ++seq.current;
    setLoading(true);
    try {
      let all: T[] = [];
      let cursor: string | undefined;
      let n = 0;
      let nextCursor: string | null = null;
      do {
        const page = await fetchRef.current(cursor);
        all = all.concat(page.items);
        nextCursor = page.next_cursor ?? null;
        cursor = nextCursor ?? undefined;
        n++;
      } while (cursor && n < pages);
      if (mine !== seq.current) return;
      pagesRef.current = n;
      setItems(all);
      setNext(nextCursor);
      setError(null);
    } catch (e) {
      if (mine === seq.current) setError(toProblem(e));
    } finally {
      if (mine === seq.current) setLoading(false);
    }
  }, []);

  useEffect(() => {
    setItems([]);
    setNext(null);
    pagesRef.current = 1;
    void loadPages(1);
  }, deps);

  const loadMore = useCallback(async () => {
    if (!next) return;
    const mine = ++seq.current;
    setLoading(true);
    try {
      const page = await fetchRef.current(next);
      if (mine !== seq.current) return;
      pagesRef.current += 1;
      setItems((old) => old.concat(page.items));
      setNext(page.next_cursor ?? null);
      setError(null);
    } catch (e) {
      if (mine === seq.current) setError(toProblem(e));
    } finally {
      if (mine === seq.current) setLoading(false);
    }
  }, [next]);

  const reload = useCallback(() => loadPages(pagesRef.current), [loadPages]);

  return { items, error, loading, hasMore: !!next, loadMore, reload };
}

let namesCache: { at: number; names: Promise<Map<string, string>> } | null = null;

/**
 * Device names by id, for showing names where the API gives ids (workflow runs, rollout
 * devices). One shared load of the first 500 devices per minute; ids outside it stay ids.
 */
export function useDeviceNames(): Map<string, string> {
  const [names, setNames] = useState<Map<string, string>>(new Map());
  useEffect(() => {
    if (!namesCache || Date.now() - namesCache.at > 60_000) {
      namesCache = {
        at: Date.now(),
        names: api("get", "/api/v1/devices", { query: { limit: 500, include_removed: true } })
          .then((r) => new Map(r.data.items.map((d) => [d.id, d.name])))
          .catch(() => new Map()),
      };
    }
    let live = true;
    void namesCache.names.then((m) => {
      if (live) setNames(m);
    });
    return () => {
      live = false;
    };
  }, []);
  return names;
}
