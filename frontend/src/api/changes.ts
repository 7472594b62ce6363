// Change requests (issue #13): the DTOs and calls of `/api/v1/change-requests*` and
// `/api/v1/tenants/{id}/change-policy`.
//
// TODO(#13): HAND-WRITTEN STAND-INS. These types follow SPEC-13 ("API" section) because
// `openapi/openapi.json` does not have the change-request operations yet. Once it does:
// `npm run gen:api`, replace every type below with `Schemas["…"]` from `schema.d.ts`, and
// replace `changeRequest()` with the typed `api()` from `./client` (a path or field the API
// lacks then becomes a compile error, as everywhere else in the UI). Until then nothing here
// is checked against the server.

import { authorizedFetch, problemFrom, toProblem, type ApiResponse } from "./client";

// ---------------------------------------------------------------------------------------
// Closed sets (SPEC-13 "Domain")

export type RiskLevel = "low" | "medium" | "high";
export const RISK_LEVELS: RiskLevel[] = ["low", "medium", "high"];

export type ChangeState =
  | "draft"
  | "submitted"
  | "approved"
  | "rejected"
  | "scheduled"
  | "running"
  | "completed"
  | "failed"
  | "rolled_back"
  | "cancelled"
  | "withdrawn";
export const CHANGE_STATES: ChangeState[] = [
  "draft",
  "submitted",
  "approved",
  "rejected",
  "scheduled",
  "running",
  "completed",
  "failed",
  "rolled_back",
  "cancelled",
  "withdrawn",
];
/** States after which nothing happens any more. */
export const FINAL_CHANGE_STATES: ChangeState[] = ["rejected", "completed", "failed", "rolled_back", "cancelled", "withdrawn"];

// ---------------------------------------------------------------------------------------
// Content (the body of POST and PATCH)

export type ChangeTarget =
  | { kind: "devices"; device_ids: string[] }
  | { kind: "tags"; tags: string[]; match: "all" | "any" }
  | { kind: "tenant" };

export type ChangeAction =
  | { kind: "script"; script: string }
  | { kind: "firmware"; version: string; routerboard: boolean }
  | { kind: "restore"; device_id: string; commit: string };

export interface RolloutPlan {
  canaries: number;
  batch_size: number;
  parallelism: number;
  failure_threshold: number;
  rollback_on_halt: boolean;
}

export interface MaintenanceWindow {
  /** RFC 3339. */
  start: string;
  /** RFC 3339. */
  end: string;
  /** IANA name, e.g. `Europe/Vienna`. */
  time_zone: string;
}

export interface Overrides {
  allow_without_timer: boolean;
  accept_policy_violations: boolean;
}

export interface ChangeContent {
  title: string;
  reason: string;
  ticket: string | null;
  target: ChangeTarget;
  action: ChangeAction;
  plan: RolloutPlan;
  risk: RiskLevel;
  window: MaintenanceWindow | null;
  overrides: Overrides;
  emergency: boolean;
  emergency_reason: string | null;
}

// ---------------------------------------------------------------------------------------
// Read side

export interface ChangeApproval {
  /** The approver's principal id. */
  by: string;
  by_name?: string | null;
  comment: string | null;
  at: string;
  /** Given after the fact (an emergency change started before its approvals). */
  retrospective: boolean;
}

export interface ChangeRejection {
  by: string;
  by_name?: string | null;
  comment: string;
  at: string;
}

export interface ChangeRequestDto {
  change_request_id: string;
  /** The stream version (also the ETag of GET, sent back as If-Match by PATCH). */
  version: number;
  state: ChangeState;
  title: string;
  reason: string;
  ticket: string | null;
  /** The author's principal id (SPEC-13 leaves its shape open: a string id is assumed). */
  author: string;
  /** Not in SPEC-13: shown when the server sends it. */
  author_name?: string | null;
  risk: RiskLevel;
  emergency: boolean;
  emergency_reason: string | null;
  target: ChangeTarget;
  action: ChangeAction;
  plan: RolloutPlan;
  window: MaintenanceWindow | null;
  overrides: Overrides;
  /** The frozen device list (canaries first), once resolved. */
  devices: string[];
  approvals: ChangeApproval[];
  required_approvals: number;
  rejection: ChangeRejection | null;
  rollout_id: string | null;
  workflow_id: string | null;
  /** Paused by the end of the maintenance window; `continue` resumes. */
  paused: boolean;
  /** Why it ended (final states). */
  reason_final: string | null;
  /** An emergency change whose retrospective approvals are overdue. */
  review_overdue: boolean;
  created_at: string;
  updated_at: string;
  positions?: unknown;
}

export interface ChangeRequestPage {
  items: ChangeRequestDto[];
  next_cursor?: string | null;
}

export interface DevicePreview {
  device_id: string;
  device_name: string;
  /** Unified diff of the device's config, before → after. */
  diff: string;
  changed_lines: number;
  violations: string[];
  note: string | null;
  base_commit: string | null;
}

export interface ChangePreviewDto {
  devices: DevicePreview[];
}

/**
 * One entry of `GET .../timeline`. SPEC-13 names the route but not its DTO: an event-like
 * shape (as `/events` answers) is assumed and read leniently.
 */
export interface TimelineEntry {
  event_type: string;
  at?: string;
  recorded_at?: string;
  stream?: string;
  position?: number;
  actor?: { kind: string; id?: string | null; component?: string | null; name?: string | null } | null;
  payload?: unknown;
  summary?: string | null;
}

export interface ChangePolicy {
  change_control: "required" | "optional";
  approvals: { low: number; medium: number; high: number };
}

// ---------------------------------------------------------------------------------------
// Calls

type Method = "GET" | "POST" | "PATCH" | "PUT";

interface CallOptions {
  query?: Record<string, string | number | null | undefined>;
  body?: unknown;
  ifMatch?: string | number;
  idempotencyKey?: string;
  signal?: AbortSignal;
}

/** An untyped call (see the TODO at the top); same errors and headers as `api()`. */
export async function changeRequest<T>(method: Method, path: string, opts: CallOptions = {}): Promise<ApiResponse<T>> {
  let url = path;
  if (opts.query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
    const s = qs.toString();
    if (s) url += `?${s}`;
  }
  const headers: Record<string, string> = { accept: "application/json" };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (opts.ifMatch !== undefined) {
    const v = String(opts.ifMatch);
    headers["if-match"] = v.startsWith('"') || v.startsWith("W/") ? v : `"${v}"`;
  }
  if (opts.idempotencyKey) headers["idempotency-key"] = opts.idempotencyKey;
  let res: Response;
  try {
    res = await authorizedFetch(url, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw toProblem(e);
  }
  if (!res.ok) throw await problemFrom(res);
  let data: unknown = undefined;
  if (res.status !== 204) {
    const type = res.headers.get("content-type") || "";
    data = type.includes("json") ? await res.json() : await res.text();
  }
  return { data: data as T, status: res.status, etag: res.headers.get("etag"), headers: res.headers };
}

const base = "/api/v1/change-requests";
const one = (id: string) => `${base}/${encodeURIComponent(id)}`;

export interface ChangeListQuery {
  state?: ChangeState | "";
  author?: string;
  device?: string;
  tag?: string;
  limit?: number;
  cursor?: string;
}

export const changes = {
  list: (q: ChangeListQuery) => changeRequest<ChangeRequestPage>("GET", base, { query: { ...q } }),
  get: (id: string) => changeRequest<ChangeRequestDto>("GET", one(id)),
  create: (content: ChangeContent, idempotencyKey: string) =>
    changeRequest<ChangeRequestDto>("POST", base, { body: content, idempotencyKey }),
  update: (id: string, content: ChangeContent, version: number | string) =>
    changeRequest<ChangeRequestDto>("PATCH", one(id), { body: content, ifMatch: version }),
  preview: (id: string) => changeRequest<ChangePreviewDto>("GET", `${one(id)}/preview`),
  recomputePreview: (id: string) => changeRequest<ChangePreviewDto>("POST", `${one(id)}/preview`, { body: {} }),
  timeline: (id: string) => changeRequest<TimelineEntry[] | { items: TimelineEntry[] }>("GET", `${one(id)}/timeline`),
  submit: (id: string, key: string) => changeRequest<ChangeRequestDto>("POST", `${one(id)}/submit`, { body: {}, idempotencyKey: key }),
  approve: (id: string, comment: string | null, key: string) =>
    changeRequest<ChangeRequestDto>("POST", `${one(id)}/approve`, { body: { comment }, idempotencyKey: key }),
  reject: (id: string, comment: string, key: string) =>
    changeRequest<ChangeRequestDto>("POST", `${one(id)}/reject`, { body: { comment }, idempotencyKey: key }),
  withdraw: (id: string, reason: string | null, key: string) =>
    changeRequest<ChangeRequestDto>("POST", `${one(id)}/withdraw`, { body: { reason }, idempotencyKey: key }),
  start: (id: string, key: string) => changeRequest<ChangeRequestDto>("POST", `${one(id)}/start`, { body: {}, idempotencyKey: key }),
  cancel: (id: string, reason: string | null, key: string) =>
    changeRequest<ChangeRequestDto>("POST", `${one(id)}/cancel`, { body: { reason }, idempotencyKey: key }),
  continue: (id: string, key: string) =>
    changeRequest<ChangeRequestDto>("POST", `${one(id)}/continue`, { body: {}, idempotencyKey: key }),
  policy: (tenantId: string) => changeRequest<ChangePolicy>("GET", `/api/v1/tenants/${encodeURIComponent(tenantId)}/change-policy`),
};

/** The timeline's entries whichever of the two plausible shapes the server answers. */
export function timelineItems(d: TimelineEntry[] | { items: TimelineEntry[] } | null | undefined): TimelineEntry[] {
  if (!d) return [];
  return Array.isArray(d) ? d : (d.items ?? []);
}
