// The one way the UI talks to the REST API: typed against the generated `paths` (from
// openapi/openapi.json), bearer token kept in memory only, refreshes serialised (one
// in-flight refresh per tab, and across tabs through the Web Locks API when available),
// problem+json errors turned into `ApiProblem`, ETags and Idempotency-Keys passed through.

import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"] & { errors?: unknown };

type Method = "get" | "post" | "put" | "patch" | "delete";

type Op<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;

/** Paths that have an operation for method `M`. */
export type PathsFor<M extends Method> = {
  [P in keyof paths]: paths[P][M] extends undefined ? never : P;
}[keyof paths];

type Params<O> = O extends { parameters: infer X } ? X : never;
type PathParams<O> = Params<O> extends { path?: infer A } ? A : never;
type QueryParams<O> = Params<O> extends { query?: infer Q } ? Q : never;
type JsonBody<O> = O extends { requestBody: { content: { "application/json": infer B } } }
  ? B
  : O extends { requestBody?: { content: { "application/json": infer B } } }
    ? B
    : never;
type JsonOf<R> = R extends { content: { "application/json": infer J } } ? J : undefined;
type Success<O> = O extends { responses: infer R }
  ? { [K in keyof R]: K extends 200 | 201 | 202 | 204 ? JsonOf<R[K]> : never }[keyof R]
  : never;

export interface RequestOptions<O> {
  path?: PathParams<O>;
  query?: QueryParams<O>;
  body?: JsonBody<O>;
  /** A raw body (file upload); sent as `application/octet-stream`. */
  rawBody?: Blob | ArrayBuffer;
  /** The ETag the change is based on (`If-Match`). */
  ifMatch?: string | number;
  /** One key per user action, reused on retry. */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export interface ApiResponse<T> {
  data: T;
  status: number;
  etag: string | null;
  headers: Headers;
}

/** An error from the API (problem+json) or from the network, ready to show. */
export class ApiProblem extends Error {
  readonly problem: Problem;
  readonly requestId: string | null;
  constructor(problem: Problem, requestId: string | null = null) {
    super(problem.detail || problem.title);
    this.name = "ApiProblem";
    this.problem = problem;
    this.requestId = requestId;
  }
  get status(): number {
    return this.problem.status;
  }
  /** The stable code, e.g. `precondition-failed`. */
  get code(): string {
    const t = this.problem.type || "";
    return t.startsWith("urn:netledger:problem:") ? t.slice("urn:netledger:problem:".length) : t;
  }
}

export function toProblem(e: unknown): ApiProblem {
  if (e instanceof ApiProblem) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ApiProblem({
    type: "about:network",
    title: "The server could not be reached",
    status: 0,
    detail: message,
  });
}

// ---------------------------------------------------------------------------------------
// Session state (in memory only)

export type TokenInfo = Schemas["TokenResponse"];

let accessToken: string | null = null;
let refreshTimer: ReturnType<typeof setTimeout> | null = null;
let inflightRefresh: Promise<TokenInfo | null> | null = null;
const sessionListeners = new Set<(t: TokenInfo | null) => void>();

/** Called with the new token after a login or refresh, with null when the session ended. */
export function onSession(listener: (t: TokenInfo | null) => void): () => void {
  sessionListeners.add(listener);
  return () => sessionListeners.delete(listener);
}

function setSession(t: TokenInfo | null) {
  accessToken = t ? t.access_token : null;
  if (refreshTimer) clearTimeout(refreshTimer);
  refreshTimer = null;
  if (t) {
    // Refresh a little before expiry so requests rarely meet a 401.
    const ms = Math.max(5_000, (t.expires_in * 1000 * 4) / 5);
    refreshTimer = setTimeout(() => {
      void refreshSession();
    }, ms);
  }
  for (const l of sessionListeners) l(t);
}

export function currentToken(): string | null {
  return accessToken;
}

async function problemFrom(res: Response): Promise<ApiProblem> {
  const requestId = res.headers.get("x-request-id");
  const type = res.headers.get("content-type") || "";
  let problem: Problem | null = null;
  try {
    if (type.includes("json")) {
      const body = (await res.json()) as Partial<Problem>;
      if (body && typeof body === "object" && "title" in body) {
        problem = {
          type: body.type ?? "about:blank",
          title: body.title ?? res.statusText,
          status: body.status ?? res.status,
          detail: body.detail ?? "",
          ...body,
        } as Problem;
      }
    } else {
      const text = await res.text();
      problem = {
        type: "about:blank",
        title: `${res.status} ${res.statusText}`,
        status: res.status,
        detail: text.slice(0, 500),
      };
    }
  } catch {
    // fall through
  }
  return new ApiProblem(
    problem ?? {
      type: "about:blank",
      title: `${res.status} ${res.statusText}`,
      status: res.status,
      detail: "",
    },
    requestId,
  );
}

async function postAuth(path: "/api/v1/auth/refresh" | "/api/v1/auth/logout"): Promise<Response> {
  return fetch(path, { method: "POST", credentials: "same-origin" });
}

/**
 * Rotates the refresh cookie and gets a new access token. Only one refresh runs at a time in
 * this tab (concurrent callers share the promise) and, through `navigator.locks`, across
 * tabs: two refreshes with the same cookie would trip the server's reuse detection and
 * revoke the session. Returns null (and ends the session) when the cookie is not valid.
 */
export function refreshSession(): Promise<TokenInfo | null> {
  if (inflightRefresh) return inflightRefresh;
  const run = async (): Promise<TokenInfo | null> => {
    const res = await postAuth("/api/v1/auth/refresh");
    if (res.ok) {
      const t = (await res.json()) as TokenInfo;
      setSession(t);
      return t;
    }
    if (res.status === 401) {
      setSession(null);
      return null;
    }
    throw await problemFrom(res);
  };
  const locked = (): Promise<TokenInfo | null> => {
    const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
    return locks ? (locks.request("netledger-refresh", run) as unknown as Promise<TokenInfo | null>) : run();
  };
  inflightRefresh = locked().finally(() => {
    inflightRefresh = null;
  });
  return inflightRefresh;
}

export async function login(email: string, password: string): Promise<TokenInfo> {
  const res = await fetch("/api/v1/auth/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ email, password }),
  }).catch((e: unknown) => {
    throw toProblem(e);
  });
  if (!res.ok) throw await problemFrom(res);
  const t = (await res.json()) as TokenInfo;
  setSession(t);
  return t;
}

export async function logout(): Promise<void> {
  try {
    const res = await postAuth("/api/v1/auth/logout");
    if (!res.ok && res.status !== 401) throw await problemFrom(res);
  } finally {
    setSession(null);
  }
}

// ---------------------------------------------------------------------------------------
// Requests

/** `/api/v1/x/{id}` with its path parameters filled in and the query string appended. */
export function buildUrl(template: string, path?: object, query?: object): string {
  let url = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const v = path ? (path as Record<string, unknown>)[name] : undefined;
    if (v === undefined || v === null) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(String(v));
  });
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      qs.set(k, String(v));
    }
    const s = qs.toString();
    if (s) url += `?${s}`;
  }
  return url;
}

function quoteEtag(v: string | number): string {
  const s = String(v);
  return s === "*" || s.startsWith('"') || s.startsWith("W/") ? s : `"${s}"`;
}

/** Parses an ETag header (`"7"`) into the stream version it names. */
export function etagVersion(etag: string | null): number | null {
  if (!etag) return null;
  const m = /"(\d+)"/.exec(etag);
  return m ? Number(m[1]) : null;
}

async function send(
  method: Method,
  url: string,
  opts: RequestOptions<unknown>,
  retried: boolean,
): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (accessToken) headers.authorization = `Bearer ${accessToken}`;
  let body: BodyInit | undefined;
  if (opts.rawBody !== undefined) {
    headers["content-type"] = "application/octet-stream";
    body = opts.rawBody;
  } else if (opts.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  if (opts.ifMatch !== undefined) headers["if-match"] = quoteEtag(opts.ifMatch);
  if (opts.idempotencyKey) headers["idempotency-key"] = opts.idempotencyKey;
  let res: Response;
  try {
    res = await fetch(url, {
      method: method.toUpperCase(),
      headers,
      body,
      credentials: "same-origin",
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw toProblem(e);
  }
  if (res.status === 401 && !retried) {
    // The access token expired (or the page was just loaded): refresh once, then retry.
    const t = await refreshSession().catch(() => null);
    if (t) return send(method, url, opts, true);
  }
  return res;
}

// Read-your-writes (docs/api.md): the highest global position this tab has seen, from the
// positions its writes returned and from the live events it received. Reads of the read
// models that take `min_position` send it, so the server answers once its projectors have
// passed it: a read right after a write or an event sees what it caused.
let seenPosition = 0;

/** Notes a global position this tab has seen (a write's, a live event's). */
export function notePosition(position: number | null | undefined) {
  if (typeof position === "number" && position > seenPosition) seenPosition = position;
}

/** The read-model reads, which take `min_position` (the API's OpenAPI document lists them). */
const WAITING_READS = new RegExp(
  [
    "^/api/v1/(devices|workflows|rollouts)(/\\{[a-z_]+\\})?$",
    "^/api/v1/change-requests$",
    "^/api/v1/workflows/\\{workflow_id\\}/steps$",
    "^/api/v1/rollouts/\\{rollout_id\\}/devices$",
    "^/api/v1/devices/\\{device_id\\}/configs$",
    "^/api/v1/audit/feed$",
  ].join("|"),
);

/** The largest `last_position` in a write's answer (its `events`, `positions`, ...). */
function lastPosition(v: unknown, depth = 0): number {
  if (depth > 4 || v === null || typeof v !== "object") return 0;
  let max = 0;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (k === "last_position" && typeof x === "number") max = Math.max(max, x);
    else if (typeof x === "object") max = Math.max(max, lastPosition(x, depth + 1));
  }
  return max;
}

/**
 * Sends one typed request; throws `ApiProblem` for any non-2xx answer. Reads that take
 * `min_position` carry the highest position seen; a write's positions are noted.
 */
export async function api<M extends Method, P extends PathsFor<M>>(
  method: M,
  path: P,
  opts: RequestOptions<Op<P, M>> = {},
): Promise<ApiResponse<Success<Op<P, M>>>> {
  let query = opts.query as Record<string, unknown> | undefined;
  if (method === "get" && seenPosition > 0 && WAITING_READS.test(path as string) && query?.min_position === undefined) {
    query = { ...(query ?? {}), min_position: seenPosition };
  }
  const url = buildUrl(path as string, opts.path as object | undefined, query);
  const res = await send(method, url, opts as RequestOptions<unknown>, false);
  if (!res.ok) throw await problemFrom(res);
  let data: unknown = undefined;
  if (res.status !== 204) {
    const type = res.headers.get("content-type") || "";
    data = type.includes("json") ? await res.json() : await res.text();
  }
  if (method !== "get") notePosition(lastPosition(data));
  return {
    data: data as Success<Op<P, M>>,
    status: res.status,
    etag: res.headers.get("etag"),
    headers: res.headers,
  };
}

/** `fetch` with the session's bearer token and one refresh on 401 (for the SSE reader). */
export async function authorizedFetch(url: string, init: RequestInit): Promise<Response> {
  const run = () => {
    const headers = new Headers(init.headers);
    if (accessToken) headers.set("authorization", `Bearer ${accessToken}`);
    return fetch(url, { ...init, headers, credentials: "same-origin" });
  };
  const res = await run();
  if (res.status === 401) {
    const t = await refreshSession().catch(() => null);
    if (t) return run();
  }
  return res;
}

export { problemFrom };

/** A fresh Idempotency-Key. */
export function newIdempotencyKey(): string {
  // crypto.randomUUID exists only in secure contexts; getRandomValues everywhere.
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return `ui-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
