// Change requests (issue #13): the list (filter by state; state chips, emergency and
// "review overdue" badges), the create/edit form (target, action with the script in
// CodeMirror, plan, risk, window, overrides, emergency), and a request's page: its content,
// the four-eyes panel (who approved, how many are missing), the actions its state and the
// caller's permissions allow, per-device preview diffs side by side, the timeline, and,
// once started, its rollout live (reusing the rollout view) with pause/resume and cancel.
//
// The calls and types come from `../api/changes`: the generated schema types and the typed
// `api()` client, like every other page.

import { lazy, Suspense, useEffect, useMemo, useRef, useState, type FormEvent, type ReactNode } from "react";

import { api, etagVersion, type Schemas } from "../api/client";
import {
  CHANGE_STATES,
  RISK_LEVELS,
  changes,
  isFinalChangeState,
  timelineActor,
  type ChangeAction,
  type ChangeDraft,
  type ChangeRequestDto,
  type ChangeRequestSummary,
  type ChangeState,
  type ChangeTarget,
  type RiskLevel,
  type TimelineEntry,
} from "../api/changes";
import { oneOf } from "../api/enums";
import { useAuth } from "../auth";
import { DevicePicker } from "../devicepicker";
import { UnifiedDiff, preloadDiffViewer } from "../diff";
import { useAction, useDeviceNames, useLiveRefresh, usePaged, useResource } from "../hooks";
import { Link, navigate, useQueryState } from "../router";
import {
  Badge,
  ConfirmButton,
  EmergencyBadge,
  Empty,
  Field,
  LoadMore,
  Loading,
  ProblemBox,
  Section,
  ShortId,
  Time,
  isoToLocal,
  localToIso,
} from "../ui";
import { actorText, streamLink } from "./Events";
import { splitTags } from "./Fleet";
import { RolloutView } from "./Rollouts";

const ScriptEditor = lazy(() => import("../editor"));

type DeviceSummary = Schemas["DeviceSummaryDto"];

function isChangeEvent(id: string | null) {
  return (e: { stream: string; category: string }) => (id ? e.stream === `change-${id}` : e.category === "change");
}


export function targetText(t: ChangeTarget, names?: Map<string, string>): string {
  switch (t.kind) {
    case "devices":
      return t.device_ids.length <= 3 && names
        ? t.device_ids.map((d) => names.get(d) ?? d.slice(-8)).join(", ")
        : `${t.device_ids.length} device${t.device_ids.length === 1 ? "" : "s"}`;
    case "tags":
      return `tags ${t.tags.join(t.match === "all" ? " & " : " | ")} (${t.match})`;
    case "tenant":
      return "every device of the tenant";
  }
}

export function actionText(a: ChangeAction): string {
  switch (a.kind) {
    case "script": {
      const n = a.script.split("\n").filter((l) => l.trim()).length;
      return `script, ${n} line${n === 1 ? "" : "s"}`;
    }
    case "firmware":
      return `firmware ${a.version}${a.routerboard ? " + RouterBOOT" : ""}`;
    case "restore":
      return `restore to ${a.commit.slice(0, 8)}`;
  }
}

function ReviewPendingBadge() {
  return (
    <span className="badge badge-warn" data-value="review_pending" title="This emergency change ran before its approvals: it waits for its retrospective review">
      review pending
    </span>
  );
}

function ReviewBadge({ c }: { c: { review_pending: boolean; review_overdue: boolean } }) {
  return c.review_overdue ? <OverdueBadge /> : c.review_pending ? <ReviewPendingBadge /> : null;
}

function OverdueBadge() {
  return (
    <span className="badge badge-bad" data-value="review_overdue" title="The retrospective review of this emergency change is overdue">
      review overdue
    </span>
  );
}

// ---------------------------------------------------------------------------------------
// List

export function ChangesPage() {
  const auth = useAuth();
  const [q, setQ] = useQueryState();
  const state = oneOf(CHANGE_STATES, q.get("state"));
  const list = usePaged<ChangeRequestSummary>(async (cursor) => (await changes.list({ state, cursor, limit: 50 })).data, [state]);
  useLiveRefresh(isChangeEvent(null), () => void list.reload(), [list.reload]);
  return (
    <div className="page">
      <div className="page-head">
        <h1>Changes</h1>
        <div className="page-actions">
          {auth.can("changes:write") ? (
            <Link to="/changes/new" className="button primary">
              New change request
            </Link>
          ) : null}
        </div>
      </div>
      <div className="toolbar">
        <Field label="State">
          <select value={state ?? ""} onChange={(e) => setQ({ state: e.target.value || null })}>
            <option value="">any</option>
            {CHANGE_STATES.map((s) => (
              <option key={s} value={s}>
                {s.replace(/_/g, " ")}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <ProblemBox error={list.error} />
      <div className="table-wrap">
        <table className="table" data-testid="change-table">
          <thead>
            <tr>
              <th>Title</th>
              <th>State</th>
              <th>Risk</th>
              <th>Devices</th>
              <th>Approvals</th>
              <th>Started</th>
              <th>Updated</th>
            </tr>
          </thead>
          <tbody>
            {list.items.map((c) => (
              <tr key={c.change_request_id} data-change={c.change_request_id} data-state={c.state} className={c.emergency ? "row-emergency" : undefined}>
                <td>
                  <Link to={`/changes/${c.change_request_id}`}>{c.title}</Link>{" "}
                  {c.emergency ? <EmergencyBadge /> : null} <ReviewBadge c={c} />
                </td>
                <td>
                  <Badge value={c.state} />
                  {c.paused ? <Badge value="paused" /> : null}
                </td>
                <td>
                  <Badge value={`risk_${c.risk}`} label={c.risk} />
                </td>
                <td>{c.devices || (c.state === "draft" ? <span className="muted" title="resolved at submission">—</span> : 0)}</td>
                <td>
                  {c.required_approvals ? (
                    <>
                      {c.approvals}/{c.required_approvals}
                    </>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
                <td>{c.started_at ? <Time at={c.started_at} /> : <span className="muted">—</span>}</td>
                <td>
                  <Time at={c.updated_at} relative />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {!list.loading && !list.items.length && !list.error ? <Empty>No change requests.</Empty> : null}
      <LoadMore hasMore={list.hasMore} loading={list.loading} onMore={() => void list.loadMore()} count={list.items.length} />
    </div>
  );
}

// ---------------------------------------------------------------------------------------
// Create / edit

const DEFAULT_CONTENT: ChangeDraft = {
  title: "",
  reason: "",
  ticket: null,
  target: { kind: "devices", device_ids: [] },
  action: { kind: "script", script: "" },
  plan: { canaries: 1, batch_size: 5, parallelism: 2, failure_threshold: 1, rollback_on_halt: false },
  risk: "low",
  window: null,
  overrides: { allow_without_timer: false, accept_policy_violations: false },
  emergency: false,
  emergency_reason: null,
};

function contentOf(c: ChangeRequestDto): ChangeDraft {
  return {
    title: c.title,
    reason: c.reason,
    ticket: c.ticket ?? null,
    target: c.target,
    action: c.action,
    plan: c.plan,
    risk: c.risk,
    window: c.window ?? null,
    overrides: {
      allow_without_timer: c.overrides.allow_without_timer ?? false,
      accept_policy_violations: c.overrides.accept_policy_violations ?? false,
    },
    emergency: c.emergency,
    emergency_reason: c.emergency_reason ?? null,
  };
}

function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** `/changes/new` and `/changes/:id/edit`. */
export function ChangeEditPage({ id }: { id?: string }) {
  const auth = useAuth();
  const existing = useResource(async () => (id ? await changes.get(id) : null), [id]);
  if (!auth.can("changes:write")) {
    return (
      <div className="page">
        <h1>Change request</h1>
        <Empty>Your role cannot write change requests (needs changes:write).</Empty>
      </div>
    );
  }
  if (id && !existing.data) {
    return (
      <div className="page">
        <h1>Edit change request</h1>
        <ProblemBox error={existing.error} />
        {!existing.error ? <Loading /> : null}
      </div>
    );
  }
  const base = existing.data;
  const version = base ? (etagVersion(base.etag) ?? base.data.version) : null;
  return (
    <div className="page">
      <div className="page-head">
        <h1>
          <Link to="/changes" className="muted">
            Changes
          </Link>{" "}
          / {base ? `Edit: ${base.data.title}` : "New change request"}
        </h1>
      </div>
      <ChangeForm
        key={`${id ?? "new"}-${version ?? 0}`}
        initial={base ? contentOf(base.data) : DEFAULT_CONTENT}
        existing={base ? { id: base.data.change_request_id, version: version ?? base.data.version, state: base.data.state } : null}
        onReload={() => void existing.reload()}
      />
    </div>
  );
}

function num(v: string, min = 0): number {
  const n = Math.floor(Number(v));
  return Number.isFinite(n) ? Math.max(min, n) : min;
}

function ChangeForm({
  initial,
  existing,
  onReload,
}: {
  initial: ChangeDraft;
  existing: { id: string; version: number; state: ChangeState } | null;
  onReload: () => void;
}) {
  const [c, setC] = useState<ChangeDraft>(initial);
  const [tagText, setTagText] = useState(initial.target.kind === "tags" ? initial.target.tags.join(", ") : "");
  const [search, setSearch] = useState("");
  const set = <K extends keyof ChangeDraft>(k: K, v: ChangeDraft[K]) => setC((o) => ({ ...o, [k]: v }));

  const fleet = usePaged<DeviceSummary>(
    async (cursor) => (await api("get", "/api/v1/devices", { query: { search: search || undefined, cursor, limit: 200 } })).data,
    [search],
  );
  const names = useDeviceNames();
  const firmware = useResource(async () => (await api("get", "/api/v1/firmware")).data, []);
  const versions = useMemo(() => [...new Set((firmware.data?.items ?? []).map((p) => p.version))], [firmware.data]);

  const restoreDevice = c.action.kind === "restore" ? c.action.device_id : "";
  const history = useResource(
    async () =>
      restoreDevice
        ? (await api("get", "/api/v1/devices/{device_id}/configs", { path: { device_id: restoreDevice }, query: { limit: 100, changed_only: true } }))
            .data.items
        : [],
    [restoreDevice],
  );

  // The change-request writes take no Idempotency-Key (create answers a new draft each
  // time); `useAction` keeps the button disabled while one is in flight.
  const save = useAction(async (_key: string, body: ChangeDraft) => {
    const r = existing ? await changes.update(existing.id, body, existing.version) : await changes.create(body);
    return r.data;
  });

  const selected = c.target.kind === "devices" ? c.target.device_ids : [];
  const toggle = (id: string) =>
    set("target", { kind: "devices", device_ids: selected.includes(id) ? selected.filter((x) => x !== id) : [...selected, id] });

  const setActionKind = (kind: ChangeAction["kind"]) => {
    if (kind === c.action.kind) return;
    if (kind === "script") set("action", { kind, script: "" });
    else if (kind === "firmware") set("action", { kind, version: versions[0] ?? "", routerboard: false });
    else set("action", { kind, device_id: "", commit: "" });
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    let body: ChangeDraft = {
      ...c,
      title: c.title.trim(),
      reason: c.reason.trim(),
      ticket: c.ticket?.trim() || null,
      emergency_reason: c.emergency ? c.emergency_reason?.trim() || null : null,
    };
    if (body.target.kind === "tags") body.target = { ...body.target, tags: splitTags(tagText) };
    // A restore targets exactly the restored device.
    if (body.action.kind === "restore") body = { ...body, target: { kind: "devices", device_ids: [body.action.device_id] } };
    const r = await save.run(body);
    if (r) navigate(`/changes/${r.change_request_id}`);
  };

  const windowOn = c.window !== null;
  const restore = c.action.kind === "restore";

  return (
    <form className="card form-card change-form" onSubmit={submit} aria-label={existing ? "Edit change request" : "New change request"}>
      {existing && existing.state !== "draft" ? (
        <div className="notice">
          This request is <Badge value={existing.state} />: saving an edit withdraws the approvals it has (they were given for the old
          content).
        </div>
      ) : null}
      <div className="grid-3">
        <Field label="Title">
          <input required value={c.title} onChange={(e) => set("title", e.target.value)} />
        </Field>
        <Field label="Ticket" hint="optional reference, e.g. CHG-1234">
          <input value={c.ticket ?? ""} onChange={(e) => set("ticket", e.target.value)} />
        </Field>
        <Field label="Risk">
          <select value={c.risk} onChange={(e) => set("risk", e.target.value as RiskLevel)}>
            {RISK_LEVELS.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <Field label="Reason" hint="why this change is needed">
        <textarea required rows={2} value={c.reason} onChange={(e) => set("reason", e.target.value)} />
      </Field>

      <fieldset className="emergency-box" data-on={c.emergency}>
        <label className="check">
          <input type="checkbox" checked={c.emergency} onChange={(e) => set("emergency", e.target.checked)} />
          <strong>Emergency change</strong> — may start before its approvals; they are given retrospectively
        </label>
        {c.emergency ? (
          <Field label="Emergency reason">
            <input required value={c.emergency_reason ?? ""} onChange={(e) => set("emergency_reason", e.target.value)} />
          </Field>
        ) : null}
      </fieldset>

      <h3>Action</h3>
      <div className="radio-row" role="radiogroup" aria-label="Action">
        {(
          [
            ["script", "RouterOS script"],
            ["firmware", "Firmware upgrade"],
            ["restore", "Restore an archived config"],
          ] as const
        ).map(([k, label]) => (
          <label key={k} className="check">
            <input type="radio" name="action-kind" checked={c.action.kind === k} onChange={() => setActionKind(k)} />
            {label}
          </label>
        ))}
      </div>
      {c.action.kind === "script" ? (
        <div className="field">
          <span className="field-label">Script</span>
          <Suspense fallback={<Loading what="the editor" />}>
            <ScriptEditor
              label="Script"
              value={c.action.script}
              placeholder="/ip pool add name=... ranges=..."
              onChange={(script) => set("action", { kind: "script", script })}
            />
          </Suspense>
        </div>
      ) : null}
      {c.action.kind === "firmware" ? (
        <div className="grid-3">
          <Field label="Version" hint={firmware.data && !versions.length ? "the firmware cache is empty: upload a package first" : "from the firmware cache"}>
            <input
              list="firmware-versions"
              required
              value={c.action.version}
              onChange={(e) => set("action", { ...(c.action as Extract<ChangeAction, { kind: "firmware" }>), version: e.target.value })}
            />
            <datalist id="firmware-versions">
              {versions.map((v) => (
                <option key={v} value={v} />
              ))}
            </datalist>
          </Field>
          <label className="check">
            <input
              type="checkbox"
              checked={!!c.action.routerboard}
              onChange={(e) => set("action", { ...(c.action as Extract<ChangeAction, { kind: "firmware" }>), routerboard: e.target.checked })}
            />
            also upgrade the RouterBOOT firmware
          </label>
        </div>
      ) : null}
      {c.action.kind === "restore" ? (
        <div className="grid-3">
          <Field label="Device to restore">
            <select
              required
              value={c.action.device_id}
              onChange={(e) => set("action", { kind: "restore", device_id: e.target.value, commit: "" })}
            >
              <option value="">choose…</option>
              {fleet.items.map((d) => (
                <option key={d.id} value={d.id}>
                  {d.name}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Archived version" hint="the device's config history (versions that changed it)">
            <select
              required
              value={c.action.commit}
              disabled={!restoreDevice}
              onChange={(e) => set("action", { kind: "restore", device_id: restoreDevice, commit: e.target.value })}
            >
              <option value="">choose…</option>
              {(history.data ?? []).map((v) => (
                <option key={v.commit} value={v.commit}>
                  {v.commit.slice(0, 10)} · {v.reason.replace(/_/g, " ")} · {new Date(v.recorded_at).toLocaleString()}
                </option>
              ))}
            </select>
          </Field>
          <ProblemBox error={history.error} />
        </div>
      ) : null}

      <h3>Target</h3>
      {restore ? (
        <p className="small muted">A restore targets exactly the restored device.</p>
      ) : (
        <>
          <div className="radio-row" role="radiogroup" aria-label="Target">
            <label className="check">
              <input
                type="radio"
                name="target-kind"
                checked={c.target.kind === "devices"}
                onChange={() => set("target", { kind: "devices", device_ids: [] })}
              />
              picked devices
            </label>
            <label className="check">
              <input
                type="radio"
                name="target-kind"
                checked={c.target.kind === "tags"}
                onChange={() => set("target", { kind: "tags", tags: splitTags(tagText), match: "any" })}
              />
              devices with tags
            </label>
            <label className="check">
              <input type="radio" name="target-kind" checked={c.target.kind === "tenant"} onChange={() => set("target", { kind: "tenant" })} />
              the whole tenant
            </label>
          </div>
          {c.target.kind === "tags" ? (
            <div className="grid-3">
              <Field label="Tags" hint="comma separated; resolved to devices at submission">
                <input value={tagText} placeholder="core, site-a" onChange={(e) => setTagText(e.target.value)} />
              </Field>
              <Field label="Match">
                <select
                  value={c.target.match}
                  onChange={(e) => set("target", { kind: "tags", tags: splitTags(tagText), match: e.target.value === "all" ? "all" : "any" })}
                >
                  <option value="any">any of the tags</option>
                  <option value="all">all of the tags</option>
                </select>
              </Field>
            </div>
          ) : null}
          {c.target.kind === "devices" ? (
            <>
              <div className="toolbar">
                <Field label="Filter devices">
                  <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
                </Field>
                <span className="small">
                  <strong>{selected.length}</strong> picked
                  {selected.length ? `: ${selected.map((d) => names.get(d) ?? d.slice(-8)).join(", ")}` : ""} (the first{" "}
                  {c.plan.canaries} {c.plan.canaries === 1 ? "is the canary" : "are canaries"})
                </span>
              </div>
              <DevicePicker fleet={fleet} selected={selected} onToggle={toggle} />
            </>
          ) : null}
        </>
      )}

      <h3>Plan</h3>
      <div className="grid-3">
        <Field label="Canaries" hint="the first N devices go alone first">
          <input type="number" min={0} value={c.plan.canaries} onChange={(e) => set("plan", { ...c.plan, canaries: num(e.target.value) })} />
        </Field>
        <Field label="Batch size" hint="devices per batch after the canaries">
          <input type="number" min={1} value={c.plan.batch_size} onChange={(e) => set("plan", { ...c.plan, batch_size: num(e.target.value, 1) })} />
        </Field>
        <Field label="Parallelism" hint="devices at once within a batch">
          <input type="number" min={1} value={c.plan.parallelism} onChange={(e) => set("plan", { ...c.plan, parallelism: num(e.target.value, 1) })} />
        </Field>
        <Field label="Failure threshold" hint="failures at which it halts">
          <input
            type="number"
            min={1}
            value={c.plan.failure_threshold}
            onChange={(e) => set("plan", { ...c.plan, failure_threshold: num(e.target.value, 1) })}
          />
        </Field>
      </div>
      <label className="check">
        <input type="checkbox" checked={c.plan.rollback_on_halt} onChange={(e) => set("plan", { ...c.plan, rollback_on_halt: e.target.checked })} />
        when it halts, restore the devices it already changed
      </label>

      <h3>Maintenance window</h3>
      <label className="check">
        <input
          type="checkbox"
          checked={windowOn}
          onChange={(e) => set("window", e.target.checked ? { start: "", end: "", time_zone: browserTimeZone() } : null)}
        />
        only inside a maintenance window (otherwise it starts when started)
      </label>
      {c.window ? (
        <div className="grid-3">
          <Field label="Window start" hint="in this browser's local time">
            <input
              type="datetime-local"
              required
              value={isoToLocal(c.window.start)}
              onChange={(e) => set("window", { ...c.window!, start: localToIso(e.target.value) ?? "" })}
            />
          </Field>
          <Field label="Window end">
            <input
              type="datetime-local"
              required
              value={isoToLocal(c.window.end)}
              onChange={(e) => set("window", { ...c.window!, end: localToIso(e.target.value) ?? "" })}
            />
          </Field>
          <Field label="Time zone" hint="the zone the window is announced in (IANA name)">
            <input required value={c.window.time_zone} onChange={(e) => set("window", { ...c.window!, time_zone: e.target.value })} />
          </Field>
        </div>
      ) : null}

      <h3>Overrides</h3>
      <label className="check">
        <input
          type="checkbox"
          checked={c.overrides.allow_without_timer}
          onChange={(e) => set("overrides", { ...c.overrides, allow_without_timer: e.target.checked })}
        />
        allow devices without a rollback timer (safe mode / scheduler)
      </label>
      <label className="check">
        <input
          type="checkbox"
          checked={c.overrides.accept_policy_violations}
          onChange={(e) => set("overrides", { ...c.overrides, accept_policy_violations: e.target.checked })}
        />
        accept policy violations the preview reports
      </label>

      <ProblemBox error={save.error} onDismiss={save.clear} />
      {save.error?.status === 412 ? (
        <div className="notice">
          Someone changed this request since you opened it; nothing was saved.{" "}
          <button type="button" onClick={onReload}>
            Reload it
          </button>
        </div>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={save.pending}>
          {save.pending ? "Saving…" : existing ? "Save changes" : "Create draft"}
        </button>
        <Link to={existing ? `/changes/${existing.id}` : "/changes"} className="button">
          Cancel
        </Link>
      </div>
    </form>
  );
}

// ---------------------------------------------------------------------------------------
// A request

type Act = "submit" | "approve" | "reject" | "withdraw" | "start" | "cancel" | "continue";

export function ChangePage({ id }: { id: string }) {
  const auth = useAuth();
  const req = useResource(async () => (await changes.get(id)).data, [id]);
  const preview = useResource(async () => (await changes.preview(id)).data, [id]);
  const timeline = usePaged<TimelineEntry>(async (cursor) => (await changes.timeline(id, cursor)).data, [id]);
  const names = useDeviceNames();
  useEffect(() => preloadDiffViewer(), []);
  const c = req.data;
  const rolloutId = c?.rollout_id ?? null;
  useLiveRefresh(
    (e) => e.stream === `change-${id}` || (!!rolloutId && e.stream === `rollout-${rolloutId}`),
    () => {
      void req.reload();
      void timeline.reload();
    },
    [id, rolloutId, req.reload, timeline.reload],
  );
  // The preview resolves the target now until submission, then shows the frozen devices:
  // load it again when the state moves on.
  const stateNow = c?.state;
  const reloadPreview = preview.reload;
  const previewFor = useRef(stateNow);
  useEffect(() => {
    if (!stateNow || previewFor.current === stateNow) return;
    if (previewFor.current !== undefined) void reloadPreview();
    previewFor.current = stateNow;
  }, [stateNow, reloadPreview]);
  // A slow safety refresh while something is happening (live events do the real work).
  const activeNow = c?.state === "running" || c?.state === "scheduled";
  useEffect(() => {
    if (!activeNow) return;
    const t = setInterval(() => void req.reload(), 20_000);
    return () => clearInterval(t);
  }, [activeNow, req.reload]);

  const [comment, setComment] = useState("");
  const [why, setWhy] = useState("");
  // The change-request commands take no Idempotency-Key: a repeated command is refused by
  // the aggregate (409 naming the state), and a repeated start answers 200 `existed`.
  const act = useAction(async (_key: string, what: Act): Promise<{ what: Act; note: string }> => {
    let note: string;
    try {
      note = await command(what);
    } finally {
      // Success or refusal (a 409 means the state moved on): show the request as it is now.
      void req.reload();
      void timeline.reload();
    }
    return { what, note };
  });
  const command = async (what: Act): Promise<string> => {
    let note: string;
    switch (what) {
      case "submit":
        await changes.submit(id);
        note = "Submitted for approval.";
        break;
      case "approve": {
        const r = (await changes.approve(id, comment.trim() || null)).data;
        const left = r.change_request.missing_approvals;
        note = r.run
          ? "Approved: its run is started and waits for the maintenance window."
          : left > 0
            ? `Approved; ${left} more approval${left === 1 ? "" : "s"} needed.`
            : "Approved.";
        setComment("");
        break;
      }
      case "reject":
        await changes.reject(id, comment.trim());
        note = "Rejected.";
        setComment("");
        break;
      case "withdraw":
        await changes.withdraw(id, why.trim() || null);
        note = "Withdrawn.";
        break;
      case "start": {
        const r = await changes.start(id);
        note = r.data.existed ? "It had been started already." : "Started: the run schedules the rollout.";
        break;
      }
      case "cancel": {
        const r = (await changes.cancel(id, why.trim() || null)).data;
        note = r.change_request.cancel_requested ? "Cancel requested: the rollout stops at its next step." : "Cancelled.";
        break;
      }
      case "continue":
        await changes.continue(id);
        note = "Continued after the window pause.";
        break;
    }
    return note;
  };
  const recompute = useAction(async () => {
    const r = await changes.recomputePreview(id);
    void preview.reload();
    return r.data;
  });

  if (!c) {
    return (
      <div className="page">
        <h1>Change request</h1>
        <ProblemBox error={req.error} />
        {!req.error ? <Loading /> : null}
      </div>
    );
  }

  const me = auth.me;
  const mine = !!me && (c.author === me.id || (!!me.user && c.author === me.user.id));
  const canWrite = auth.can("changes:write");
  const canApprove = auth.can("changes:approve");
  const final = isFinalChangeState(c.state);
  // `missing_approvals` counts before approval (while submitted); an emergency request that
  // ran needs its risk's approvals again, given retrospectively.
  const missing = c.review_pending
    ? Math.max(0, c.required_approvals - c.approvals.filter((a) => a.retrospective).length)
    : c.missing_approvals;
  const approvedByMe = !!me && c.approvals.some((a) => a.by === me.id || (!!me.user && a.by === me.user.id));
  const selfApprovalNote = mine ? "The author cannot approve their own request (four eyes)" : approvedByMe ? "You approved it already" : undefined;

  // What each state allows, and who (docs/change-control.md "States"; the server decides:
  // a 409 names the state and the allowed ones, a 403 the four-eyes rule).
  const editable = ["draft", "submitted", "approved", "rejected"].includes(c.state);
  const show = {
    edit: mine && canWrite && editable,
    submit: mine && canWrite && c.state === "draft",
    approve: canApprove && (c.state === "submitted" || c.review_pending),
    reject: canApprove && (c.state === "submitted" || c.state === "approved"),
    withdraw: mine && canWrite && editable,
    start:
      (c.state === "approved" && ((mine && canWrite) || canApprove)) || (c.emergency && c.state === "submitted" && mine && canWrite),
    cancel: (canWrite || canApprove) && ["approved", "scheduled", "running"].includes(c.state) && !c.cancel_requested,
    continue: canApprove && c.state === "running" && c.paused,
  };

  const pending = act.pending;
  return (
    <div className={c.emergency ? "page change-page emergency" : "page change-page"} data-testid="change-page" data-state={c.state}>
      {c.emergency ? (
        <div className="emergency-banner" role="alert" data-testid="emergency-banner">
          <strong>EMERGENCY CHANGE</strong> — {c.emergency_reason ?? "no reason given"}
          {c.review_pending ? (
            <span>
              {" "}
              · ran before its approvals: {missing > 0 ? `${missing} retrospective approval${missing === 1 ? "" : "s"} still missing` : "review pending"}
            </span>
          ) : null}
          {c.review_overdue ? <span> · the review is OVERDUE</span> : null}
        </div>
      ) : null}
      <div className="page-head">
        <h1>
          <Link to="/changes" className="muted">
            Changes
          </Link>{" "}
          / <span data-testid="change-title">{c.title}</span> <Badge value={c.state} />
          {c.paused ? <Badge value="paused" label="paused (window ended)" /> : null} <Badge value={`risk_${c.risk}`} label={`${c.risk} risk`} />
          <ReviewBadge c={c} />
          {c.cancel_requested && !final ? <Badge value="cancelling" label="cancel requested" /> : null}
        </h1>
        <div className="page-actions">
          {show.edit ? (
            <Link to={`/changes/${id}/edit`} className="button">
              Edit
            </Link>
          ) : null}
          {show.submit ? (
            <button type="button" className="primary" disabled={pending} onClick={() => void act.run("submit")}>
              Submit for approval
            </button>
          ) : null}
          {show.start ? (
            <button
              type="button"
              className={c.emergency && c.state === "submitted" ? "danger" : "primary"}
              disabled={pending}
              title={c.emergency && c.state === "submitted" ? "Emergency: starts before its approvals" : undefined}
              onClick={() => void act.run("start")}
            >
              {c.window ? "Schedule" : "Start"}
            </button>
          ) : null}
          {show.continue ? (
            <button type="button" className="primary" disabled={pending} onClick={() => void act.run("continue")}>
              Continue after the window pause
            </button>
          ) : null}
          {show.withdraw || show.cancel ? (
            <span className="inline-form">
              <input placeholder="reason" aria-label="reason" value={why} onChange={(e) => setWhy(e.target.value)} />
              {show.withdraw ? (
                <ConfirmButton disabled={pending} onConfirm={() => void act.run("withdraw")} question="Withdraw it?">
                  Withdraw
                </ConfirmButton>
              ) : null}
              {show.cancel ? (
                <ConfirmButton danger disabled={pending} onConfirm={() => void act.run("cancel")} question="Cancel the change?">
                  Cancel change
                </ConfirmButton>
              ) : null}
            </span>
          ) : null}
        </div>
      </div>
      <ProblemBox error={act.error} onDismiss={act.clear} />
      {act.error?.problem.violations?.length ? (
        <div className="problem" data-testid="policy-violations">
          <strong>Policy violations</strong> (submit them only as a high-risk request that accepts them):
          <ul className="violations">
            {act.error.problem.violations.map((v) => (
              <li key={v.device_id}>
                <Link to={`/devices/${v.device_id}`}>{names.get(v.device_id) ?? <ShortId id={v.device_id} />}</Link>: {v.violations.join("; ")}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      {act.result ? (
        <div className="notice" data-testid="action-result" data-action={act.result.what}>
          {act.result.note}
        </div>
      ) : null}
      {c.reason_final ? <div className="notice">{c.reason_final}</div> : null}

      <div className="grid-2">
        <Section title="Request">
          <dl className="facts" data-testid="change-facts">
            <dt>Reason</dt>
            <dd>{c.reason}</dd>
            <dt>Ticket</dt>
            <dd>{c.ticket ?? <span className="muted">—</span>}</dd>
            <dt>Author</dt>
            <dd>
              {c.author_name ?? <ShortId id={c.author} />}
              {mine ? <span className="muted"> (you)</span> : null}
            </dd>
            <dt>Target</dt>
            <dd>{targetText(c.target, names)}</dd>
            <dt>Devices</dt>
            <dd>
              {c.devices.length ? (
                c.devices.map((d, i) => (
                  <span key={d}>
                    {i ? ", " : ""}
                    <Link to={`/devices/${d}`}>{names.get(d) ?? <ShortId id={d} />}</Link>
                    {i < c.plan.canaries ? <span className="small muted"> (canary)</span> : null}
                  </span>
                ))
              ) : (
                <span className="muted">resolved at submission</span>
              )}
            </dd>
            <dt>Action</dt>
            <dd>{actionText(c.action)}</dd>
            <dt>Plan</dt>
            <dd>
              {c.plan.canaries} canar{c.plan.canaries === 1 ? "y" : "ies"}, batches of {c.plan.batch_size}, {c.plan.parallelism} at once,
              halts at {c.plan.failure_threshold} failure{c.plan.failure_threshold === 1 ? "" : "s"}
              {c.plan.rollback_on_halt ? ", restores changed devices on halt" : ""}
            </dd>
            <dt>Window</dt>
            <dd>
              {c.window ? (
                <>
                  <Time at={c.window.start} /> – <Time at={c.window.end} /> ({c.window.time_zone})
                </>
              ) : (
                <span className="muted">none: starts when started</span>
              )}
            </dd>
            <dt>Overrides</dt>
            <dd>
              {[
                c.overrides.allow_without_timer ? "devices without a rollback timer allowed" : null,
                c.overrides.accept_policy_violations ? "policy violations accepted" : null,
              ]
                .filter(Boolean)
                .join("; ") || <span className="muted">none</span>}
            </dd>
            {c.started_at ? (
              <>
                <dt>Started</dt>
                <dd>
                  <Time at={c.started_at} />
                </dd>
              </>
            ) : null}
            <dt>Created</dt>
            <dd>
              <Time at={c.created_at} />
            </dd>
            <dt>Updated</dt>
            <dd>
              <Time at={c.updated_at} relative />
            </dd>
            {c.workflow_id ? (
              <>
                <dt>Workflow</dt>
                <dd>
                  <Link to={`/workflows/${c.workflow_id}`}>
                    <ShortId id={c.workflow_id} />
                  </Link>
                </dd>
              </>
            ) : null}
          </dl>
          {c.action.kind === "script" ? (
            <div className="field">
              <span className="field-label">Script</span>
              <Suspense fallback={<pre className="code">{c.action.script}</pre>}>
                <ScriptEditor label="Script (read only)" value={c.action.script} onChange={() => undefined} readOnly minHeight="4em" />
              </Suspense>
            </div>
          ) : null}
        </Section>

        <FourEyes
          c={c}
          missing={missing}
          canApprove={show.approve}
          canReject={show.reject}
          blocked={selfApprovalNote}
          comment={comment}
          setComment={setComment}
          pending={pending}
          onApprove={() => void act.run("approve")}
          onReject={() => void act.run("reject")}
        />
      </div>

      {rolloutId ? (
        <section className="card" id="rollout" aria-label="Rollout (live)">
          <div className="card-body">
            <RolloutView id={rolloutId} embedded />
          </div>
        </section>
      ) : c.state === "scheduled" ? (
        <Section title="Rollout">
          <Empty>
            Scheduled{c.window ? (
              <>
                {" "}
                for the window from <Time at={c.window.start} />
              </>
            ) : null}
            : the rollout starts then.
          </Empty>
        </Section>
      ) : null}

      <Section
        title="Preview"
        id="preview"
        actions={
          canWrite && !final ? (
            <button type="button" disabled={recompute.pending} onClick={() => void recompute.run()}>
              {recompute.pending ? "Computing…" : "Compute again"}
            </button>
          ) : null
        }
      >
        <ProblemBox error={recompute.error ?? preview.error} />
        {preview.loading && !preview.data ? <Loading what="the preview" /> : null}
        {preview.data ? (
          <p className="small muted" data-testid="preview-frozen" data-frozen={preview.data.frozen}>
            {preview.data.frozen
              ? "The devices frozen at submission, in rollout order; each diff is from its latest archived configuration."
              : "The target resolved now (it is frozen at submission); each diff is from the device's latest archived configuration."}
          </p>
        ) : null}
        {preview.data && !preview.data.devices.length ? <Empty>No device to preview (the target matches none yet).</Empty> : null}
        {(preview.data?.devices ?? []).map((d) => (
          <div key={d.device_id} className="preview-device" data-testid="preview-device" data-device-id={d.device_id}>
            <h3>
              <Link to={`/devices/${d.device_id}`}>{d.device_name ?? names.get(d.device_id) ?? <ShortId id={d.device_id} />}</Link>{" "}
              <span className="small muted">
                {d.changed_lines} changed line{d.changed_lines === 1 ? "" : "s"}
                {d.base_commit ? (
                  <>
                    {" "}
                    from <ShortId id={d.base_commit} />
                  </>
                ) : null}
              </span>
            </h3>
            {d.violations.length ? (
              <ul className="violations">
                {d.violations.map((v) => (
                  <li key={v} className="bad">
                    {v}
                  </li>
                ))}
              </ul>
            ) : null}
            {d.note ? <div className="notice">{d.note}</div> : null}
            {d.diff ? <UnifiedDiff text={d.diff} testId="preview-diff" /> : <Empty>No config change on this device.</Empty>}
          </div>
        ))}
      </Section>

      <Section title="Timeline" id="timeline">
        <ProblemBox error={timeline.error} />
        {timeline.loading && !timeline.items.length ? <Loading what="the timeline" /> : <Timeline entries={timeline.items} />}
        <LoadMore hasMore={timeline.hasMore} loading={timeline.loading} onMore={() => void timeline.loadMore()} count={timeline.items.length} />
      </Section>
    </div>
  );
}

function FourEyes({
  c,
  missing,
  canApprove,
  canReject,
  blocked,
  comment,
  setComment,
  pending,
  onApprove,
  onReject,
}: {
  c: ChangeRequestDto;
  missing: number;
  canApprove: boolean;
  canReject: boolean;
  blocked: string | undefined;
  comment: string;
  setComment: (s: string) => void;
  pending: boolean;
  onApprove: () => void;
  onReject: () => void;
}) {
  const status: ReactNode =
    c.rejection !== null && c.rejection !== undefined ? (
      <span className="bad">rejected</span>
    ) : c.required_approvals === 0 ? (
      <span className="muted">the approvals it needs are fixed at submission, by its risk and the tenant's policy</span>
    ) : missing === 0 ? (
      <span className="ok">
        {c.approvals.length}/{c.required_approvals} approvals: complete
      </span>
    ) : (
      <span className={c.emergency ? "bad" : "warn"}>
        {c.approvals.length}/{c.required_approvals} approvals: {missing} missing
      </span>
    );
  return (
    <Section title="Four eyes" id="approvals">
      <div data-testid="four-eyes" data-missing={missing} data-approvals={c.approvals.length}>
        <p>
          {status} <span className="small muted">({c.risk} risk)</span>
        </p>
        {c.approvals.length ? (
          <table className="table">
            <thead>
              <tr>
                <th>Approved by</th>
                <th>When</th>
                <th>Comment</th>
              </tr>
            </thead>
            <tbody>
              {c.approvals.map((a) => (
                <tr key={`${a.by}-${a.at}`} data-approval={a.by}>
                  <td>
                    {a.by_name ?? <ShortId id={a.by} />}
                    {a.retrospective ? <span className="badge badge-warn">retrospective</span> : null}
                  </td>
                  <td>
                    <Time at={a.at} />
                  </td>
                  <td>{a.comment ?? <span className="muted">—</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <Empty>No approval yet.</Empty>
        )}
        {c.rejection ? (
          <div className="problem" data-testid="rejection">
            <strong>Rejected</strong> by {c.rejection.by_name ?? <ShortId id={c.rejection.by} />} <Time at={c.rejection.at} />:{" "}
            {c.rejection.comment}
          </div>
        ) : null}
        {canApprove || canReject ? (
          <div className="approve-form">
            <Field label="Comment" hint="required to reject">
              <textarea rows={2} value={comment} onChange={(e) => setComment(e.target.value)} />
            </Field>
            <div className="form-actions">
              {canApprove ? (
                <button type="button" className="primary" disabled={pending || !!blocked} title={blocked} onClick={onApprove}>
                  {c.review_pending ? "Approve retrospectively" : "Approve"}
                </button>
              ) : null}
              {canReject ? (
                <button type="button" className="danger" disabled={pending || !!blocked || !comment.trim()} title={blocked} onClick={onReject}>
                  Reject
                </button>
              ) : null}
              {blocked ? <span className="small muted">{blocked}</span> : null}
            </div>
          </div>
        ) : null}
      </div>
    </Section>
  );
}

function actorLabel(e: TimelineEntry): string {
  if (e.actor_name) return e.actor_name;
  const a = timelineActor(e.actor);
  return a ? actorText(a) : "—";
}

function Timeline({ entries }: { entries: TimelineEntry[] }) {
  const [open, setOpen] = useState<number | null>(null);
  if (!entries.length) return <Empty>Nothing yet.</Empty>;
  return (
    <ol className="timeline" data-testid="change-timeline">
      {entries.map((e) => {
        const link = e.stream.startsWith("change-") ? null : streamLink(e.stream);
        return (
          <li key={e.position} data-event={e.event_type} data-position={e.position}>
            <Time at={e.recorded_at} /> <strong>{e.event_type}</strong> <span className="muted">by {actorLabel(e)}</span>
            {e.stream.startsWith("change-") ? null : (
              <span className="small muted"> · {link ? <Link to={link}>{e.stream}</Link> : e.stream}</span>
            )}
            <button type="button" className="link timeline-details" onClick={() => setOpen(open === e.position ? null : e.position)}>
              {open === e.position ? "hide" : "details"}
            </button>
            {open === e.position ? <pre className="json">{JSON.stringify(e.payload, null, 2)}</pre> : null}
          </li>
        );
      })}
    </ol>
  );
}
