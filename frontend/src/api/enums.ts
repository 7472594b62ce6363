// The API's closed sets (its OpenAPI enums) as runtime lists, for selects and filters.
// The types come from the generated schema.d.ts; each list is the keys of a record over the
// generated union, so `tsc` fails when the API adds or drops a value.
import type { Schemas } from "./client";

export type DeviceStatus = Schemas["DeviceStatus"];
export type TransportKind = Schemas["TransportKind"];
export type MetricsResolution = Schemas["MetricsResolution"];
export type WorkflowRunState = Schemas["WorkflowRunState"];
export type RolloutState = Schemas["RolloutState"];
export type RolloutTargetKind = Schemas["RolloutTargetKind"];
export type RoleName = Schemas["RoleName"];

/** The keys of an exhaustive record over a union, in the record's order. */
function keys<T extends string>(all: Record<T, unknown>): T[] {
  return Object.keys(all) as T[];
}

/** `value` when it is one of `list`, else `undefined` (for values read from the URL). */
export function oneOf<T extends string>(list: readonly T[], value: string | null | undefined): T | undefined {
  return list.find((v) => v === value);
}

export const DEVICE_STATUSES = keys<DeviceStatus>({ online: 1, offline: 1, unknown: 1 });

/** Transports with their labels. */
export const TRANSPORT_LABELS: Record<TransportKind, string> = {
  plain: "plain API",
  tls_pinned: "API-SSL, pinned certificate",
  tls_verified: "API-SSL, verified",
};
export const TRANSPORTS = keys(TRANSPORT_LABELS);

/** Metrics resolutions with their labels. */
export const RESOLUTION_LABELS: Record<MetricsResolution, string> = {
  auto: "auto (raw ≤ 6 h, rollups beyond)",
  raw: "raw samples",
  rollup: "5-minute rollups",
};

/** Workflow run states; `true` for the finished ones. */
const RUN_STATES: Record<WorkflowRunState, boolean> = {
  running: false,
  waiting: false,
  retrying: false,
  succeeded: true,
  committed: true,
  rolled_back: true,
  cancelled: true,
  failed: true,
};
export const WORKFLOW_RUN_STATES = keys(RUN_STATES);

/** Whether a run in this state is finished. */
export function isTerminalRunState(state: WorkflowRunState): boolean {
  return RUN_STATES[state];
}

export const ROLLOUT_STATES = keys<RolloutState>({ running: 1, paused: 1, halted: 1, cancelled: 1, completed: 1 });

/** Rollout targets with their labels. */
export const ROLLOUT_TARGET_LABELS: Record<RolloutTargetKind, string> = {
  change_set: "a change set (two-phase push)",
  firmware: "a firmware version",
};
export const ROLLOUT_TARGET_KINDS = keys(ROLLOUT_TARGET_LABELS);

export const ROLES = keys<RoleName>({
  viewer: 1,
  operator: 1,
  approver: 1,
  auditor: 1,
  tenant_admin: 1,
  super_admin: 1,
});

export type Via = Schemas["Via"];
export type FileJob = keyof Schemas["FileAccessDto"];

/** The paths a file job can take, with their labels. */
export const VIA_LABELS: Record<Via, string> = {
  api: "API",
  ssh: "SSH",
  unavailable: "unavailable",
};

/** The file jobs of `FileAccessDto`: label, what the API cannot do, what happens without a path. */
export const FILE_JOB_LABELS: Record<FileJob, { label: string; verb: string; refused: string }> = {
  export: { label: "export", verb: "read exports of any size", refused: "large exports cannot be archived" },
  upload: { label: "upload", verb: "upload files", refused: "config pushes and restores are refused" },
  download: { label: "download", verb: "download backups", refused: "backups are not copied off the device" },
};
