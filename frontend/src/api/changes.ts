// Change requests (issue #13): the calls of `/api/v1/change-requests*` and
// `/api/v1/tenants/{id}/change-policy`, typed by the generated `schema.d.ts` through `api()`
// (a path, parameter or field the API lacks is a compile error), and the closed sets of
// their enums as runtime lists.

import { api, type Schemas } from "./client";

// ---------------------------------------------------------------------------------------
// Types (all generated from openapi/openapi.json)

export type RiskLevel = Schemas["RiskLevel"];
export type ChangeState = Schemas["ChangeState"];
export type ChangeControl = Schemas["ChangeControl"];
export type ChangeTarget = Schemas["ChangeTarget"];
export type ChangeAction = Schemas["ChangeAction"];
export type RolloutPlan = Schemas["RolloutPlan"];
export type MaintenanceWindow = Schemas["MaintenanceWindow"];
export type Overrides = Schemas["Overrides"];
/** The body of create and edit (PATCH): the whole content. */
export type ChangeContent = Schemas["ChangeContent"];
/** A request folded from its stream (`GET /change-requests/{id}`, and most writes). */
export type ChangeRequestDto = Schemas["ChangeRequestDto"];
/** A list item (the `change_requests` read model): counts, not the content. */
export type ChangeRequestSummary = Schemas["ChangeRequestSummaryDto"];
export type ChangeApproval = Schemas["ApprovalDto"];
export type ChangePreview = Schemas["ChangePreviewDto"];
export type DevicePreview = Schemas["DevicePreviewDto"];
export type TimelineEntry = Schemas["TimelineEntryDto"];
export type ChangeRunStarted = Schemas["ChangeRunStartedDto"];
export type ChangePolicy = Schemas["ChangePolicyDto"];

/**
 * The content the form edits: every optional member of `ChangeContent` present (the API's
 * defaults written out, so the form shows what will be sent).
 */
export type ChangeDraft = Required<ChangeContent> & { overrides: Required<Overrides> };

// ---------------------------------------------------------------------------------------
// Closed sets (exhaustive records over the generated unions: `tsc` fails when the API adds
// or drops a value)

function keys<T extends string>(all: Record<T, unknown>): T[] {
  return Object.keys(all) as T[];
}

export const RISK_LEVELS = keys<RiskLevel>({ low: 1, medium: 1, high: 1 });

/** Change states; `true` for the final ones (after which nothing happens any more). */
const STATES: Record<ChangeState, boolean> = {
  draft: false,
  submitted: false,
  approved: false,
  rejected: false,
  scheduled: false,
  running: false,
  completed: true,
  failed: true,
  rolled_back: true,
  cancelled: true,
  withdrawn: true,
};
export const CHANGE_STATES = keys(STATES);

/** Whether a request in this state is finished. A rejected one is not: its author may edit it. */
export function isFinalChangeState(s: ChangeState): boolean {
  return STATES[s];
}

// ---------------------------------------------------------------------------------------
// Calls

const one = (id: string) => ({ change_request_id: id });

export interface ChangeListQuery {
  state?: ChangeState;
  cursor?: string;
  limit?: number;
}

export const changes = {
  list: (q: ChangeListQuery) => api("get", "/api/v1/change-requests", { query: q }),
  get: (id: string) => api("get", "/api/v1/change-requests/{change_request_id}", { path: one(id) }),
  create: (content: ChangeContent) => api("post", "/api/v1/change-requests", { body: content }),
  /** PATCH with `If-Match` (the version the edit is based on): 412 when it is stale. */
  update: (id: string, content: ChangeContent, version: number | string) =>
    api("patch", "/api/v1/change-requests/{change_request_id}", { path: one(id), body: content, ifMatch: version }),
  preview: (id: string) => api("get", "/api/v1/change-requests/{change_request_id}/preview", { path: one(id) }),
  /** Computes the preview again (of the stored content). */
  recomputePreview: (id: string) => api("post", "/api/v1/change-requests/{change_request_id}/preview", { path: one(id), body: {} }),
  timeline: (id: string, cursor?: string) =>
    api("get", "/api/v1/change-requests/{change_request_id}/timeline", { path: one(id), query: { cursor, limit: 200 } }),
  submit: (id: string) => api("post", "/api/v1/change-requests/{change_request_id}/submit", { path: one(id) }),
  /** Answers the request after the approval and the run it started (a request with a window). */
  approve: (id: string, comment: string | null) =>
    api("post", "/api/v1/change-requests/{change_request_id}/approve", { path: one(id), body: { comment } }),
  reject: (id: string, comment: string) =>
    api("post", "/api/v1/change-requests/{change_request_id}/reject", { path: one(id), body: { comment } }),
  withdraw: (id: string, reason: string | null) =>
    api("post", "/api/v1/change-requests/{change_request_id}/withdraw", { path: one(id), body: { reason } }),
  /** 202 with the run started; 200 with `existed: true` when it had been started before. */
  start: (id: string) => api("post", "/api/v1/change-requests/{change_request_id}/start", { path: one(id) }),
  cancel: (id: string, reason: string | null) =>
    api("post", "/api/v1/change-requests/{change_request_id}/cancel", { path: one(id), body: { reason } }),
  continue: (id: string) => api("post", "/api/v1/change-requests/{change_request_id}/continue", { path: one(id) }),
  policy: (tenantId: string) => api("get", "/api/v1/tenants/{tenant_id}/change-policy", { path: { tenant_id: tenantId } }),
};

// ---------------------------------------------------------------------------------------
// Reading a timeline entry's actor

/**
 * A timeline entry's `actor` as the API sends it (`netledger_domain::Actor`, tagged by
 * `kind`). The OpenAPI document types it as a bare object, so it is checked here.
 */
export function timelineActor(a: unknown): Schemas["ActorDto"] | null {
  if (!a || typeof a !== "object") return null;
  const o = a as Record<string, unknown>;
  if (o.kind !== "user" && o.kind !== "api_key" && o.kind !== "system") return null;
  return {
    kind: o.kind,
    id: typeof o.id === "string" ? o.id : null,
    component: typeof o.component === "string" ? o.component : null,
  };
}
