// Rollouts: the list (filter by state, live), creating one over chosen devices or tags
// (canaries first, batches, parallelism, failure threshold), and a rollout's progress with
// pause (rollouts:stop), resume (rollouts:approve) and cancel (rollouts:stop).

import { useEffect, useMemo, useState, type FormEvent } from "react";

import { api, type Schemas } from "../api/client";
import { ROLLOUT_STATES, ROLLOUT_TARGET_KINDS, ROLLOUT_TARGET_LABELS, oneOf, type RolloutTargetKind } from "../api/enums";
import { useAuth } from "../auth";
import { DevicePicker } from "../devicepicker";
import { useAction, useDeviceNames, useLiveRefresh, usePaged, useResource } from "../hooks";
import { Link, navigate, useQueryState } from "../router";
import { Badge, Empty, Field, LoadMore, Loading, ProblemBox, Section, ShortId, Time } from "../ui";
import { splitTags } from "./Fleet";
import { RunCard } from "./Workflows";

type Rollout = Schemas["RolloutDto"];
type DeviceSummary = Schemas["DeviceSummaryDto"];

export function RolloutsPage() {
  const auth = useAuth();
  const [q, setQ] = useQueryState();
  const state = q.get("state") ?? "";
  const [creating, setCreating] = useState(false);
  const rollouts = usePaged<Rollout>(
    async (cursor) =>
      (await api("get", "/api/v1/rollouts", { query: { state: oneOf(ROLLOUT_STATES, state), cursor, limit: 50 } })).data,
    [state],
  );
  useLiveRefresh(
    (e) => e.category === "rollout" || (e.category === "workflow" && e.event_type !== "WorkflowStepStarted"),
    () => void rollouts.reload(),
    [rollouts.reload],
  );
  return (
    <div className="page">
      <div className="page-head">
        <h1>Rollouts</h1>
        <div className="page-actions">
          {auth.can("rollouts:write") ? (
            <button type="button" className="primary" onClick={() => setCreating((c) => !c)}>
              {creating ? "Close" : "New rollout"}
            </button>
          ) : null}
        </div>
      </div>
      {creating ? <NewRollout onCreated={(id) => navigate(`/rollouts/${id}`)} /> : null}
      <form className="filters" onSubmit={(e) => e.preventDefault()}>
        <Field label="State">
          <select value={state} onChange={(e) => setQ({ state: e.target.value || null })}>
            <option value="">any</option>
            {ROLLOUT_STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </Field>
      </form>
      <ProblemBox error={rollouts.error} />
      <div className="table-wrap">
        <table className="table" data-testid="rollout-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Target</th>
              <th>State</th>
              <th>Progress</th>
              <th>Batch size / parallel / threshold</th>
              <th>Created</th>
              <th>Finished</th>
            </tr>
          </thead>
          <tbody>
            {rollouts.items.map((r) => (
              <tr key={r.id}>
                <td>
                  <Link to={`/rollouts/${r.id}`} className="strong">
                    {r.name}
                  </Link>
                </td>
                <td>{r.target_kind === "firmware" ? `firmware ${r.target_version ?? ""}` : "change set"}</td>
                <td>
                  <Badge value={r.state} />
                </td>
                <td>
                  <Progress p={r.progress} />
                </td>
                <td>
                  {r.batch_size} / {r.parallelism} / {r.failure_threshold}
                </td>
                <td>
                  <Time at={r.created_at} relative />
                </td>
                <td>
                  <Time at={r.finished_at} relative />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {!rollouts.loading && !rollouts.items.length && !rollouts.error ? <Empty>No rollouts.</Empty> : null}
      <LoadMore
        hasMore={rollouts.hasMore}
        loading={rollouts.loading}
        onMore={() => void rollouts.loadMore()}
        count={rollouts.items.length}
      />
    </div>
  );
}

function Progress({ p }: { p: Schemas["RolloutProgressDto"] }) {
  const total = Math.max(1, p.total);
  const pct = (n: number) => `${(100 * n) / total}%`;
  return (
    <div className="progress-wrap" title={`${p.finished}/${p.total} finished`}>
      <div className="progress">
        <span className="p-ok" style={{ width: pct(p.succeeded) }} />
        <span className="p-bad" style={{ width: pct(p.failed) }} />
        <span className="p-warn" style={{ width: pct(p.rolled_back) }} />
        <span className="p-muted" style={{ width: pct(p.cancelled) }} />
      </div>
      <span className="small">
        {p.finished}/{p.total}
        {p.failed ? <span className="bad"> · {p.failed} failed</span> : null}
        {p.current_batch !== null && p.current_batch !== undefined ? (
          <span className="muted"> · batch {p.current_batch === 0 ? "canaries" : p.current_batch}</span>
        ) : null}
      </span>
    </div>
  );
}

/** Loads every device page matching a tag (for rollouts over tags). */
async function devicesWithTag(tag: string): Promise<DeviceSummary[]> {
  const out: DeviceSummary[] = [];
  let cursor: string | undefined;
  do {
    const r = await api("get", "/api/v1/devices", { query: { tag, cursor, limit: 500 } });
    out.push(...r.data.items);
    cursor = r.data.next_cursor ?? undefined;
  } while (cursor);
  return out;
}

function NewRollout({ onCreated }: { onCreated: (id: string) => void }) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState<RolloutTargetKind>("change_set");
  const [script, setScript] = useState("");
  const [version, setVersion] = useState("");
  const [tagText, setTagText] = useState("");
  const [selected, setSelected] = useState<string[]>([]);
  const [canaries, setCanaries] = useState<string[]>([]);
  const [batchSize, setBatchSize] = useState("10");
  const [parallelism, setParallelism] = useState("1");
  const [threshold, setThreshold] = useState("1");
  const [rollback, setRollback] = useState(false);
  const [search, setSearch] = useState("");

  const fleet = usePaged<DeviceSummary>(
    async (cursor) => (await api("get", "/api/v1/devices", { query: { search: search || undefined, cursor, limit: 200 } })).data,
    [search],
  );
  const firmware = useResource(async () => (await api("get", "/api/v1/firmware")).data, []);
  const versions = useMemo(() => [...new Set((firmware.data?.items ?? []).map((p) => p.version))], [firmware.data]);
  const names = useMemo(() => new Map(fleet.items.map((d) => [d.id, d.name])), [fleet.items]);

  const addTags = useAction(async (_key: string, tags: string[]) => {
    const found: DeviceSummary[] = [];
    for (const t of tags) found.push(...(await devicesWithTag(t)));
    setSelected((s) => [...new Set([...s, ...found.map((d) => d.id)])]);
    return found.length;
  });

  const create = useAction(async (key: string, body: Schemas["NewRollout"]) => {
    const r = await api("post", "/api/v1/rollouts", { body, idempotencyKey: key });
    return r.data;
  });

  const toggle = (id: string) =>
    setSelected((s) => (s.includes(id) ? s.filter((x) => x !== id) : [...s, id]));
  const toggleCanary = (id: string) =>
    setCanaries((c) => (c.includes(id) ? c.filter((x) => x !== id) : [...c, id]));

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const body: Schemas["NewRollout"] = {
      name: name.trim(),
      target:
        kind === "change_set"
          ? { kind, script }
          : { kind, version: version || versions[0] || "" },
      canaries,
      devices: selected.filter((d) => !canaries.includes(d)),
      batch_size: Number(batchSize) || null,
      parallelism: Number(parallelism) || null,
      failure_threshold: Number(threshold) || null,
      rollback_on_halt: rollback && kind === "change_set",
    };
    const r = await create.run(body);
    if (r) onCreated(r.rollout_id);
  };

  const others = selected.filter((d) => !canaries.includes(d));
  const batches = Math.ceil(others.length / Math.max(1, Number(batchSize) || 10));

  return (
    <form className="card form-card" onSubmit={submit} aria-label="New rollout">
      <h2>New rollout</h2>
      <div className="grid-3">
        <Field label="Name">
          <input required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Deploys">
          <select value={kind} onChange={(e) => setKind(oneOf(ROLLOUT_TARGET_KINDS, e.target.value) ?? "change_set")}>
            {ROLLOUT_TARGET_KINDS.map((k) => (
              <option key={k} value={k}>
                {ROLLOUT_TARGET_LABELS[k]}
              </option>
            ))}
          </select>
        </Field>
        {kind === "firmware" ? (
          <Field label="Version">
            <select value={version || versions[0] || ""} onChange={(e) => setVersion(e.target.value)}>
              {versions.map((v) => (
                <option key={v} value={v}>
                  {v}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
      </div>
      {kind === "change_set" ? (
        <Field label="Change (RouterOS script)">
          <textarea className="mono" rows={5} required value={script} spellCheck={false} onChange={(e) => setScript(e.target.value)} />
        </Field>
      ) : null}
      {kind === "firmware" && firmware.data && !versions.length ? (
        <div className="notice">The firmware cache is empty: upload a package first.</div>
      ) : null}
      <div className="grid-3">
        <Field label="Batch size" hint="devices per batch after the canaries">
          <input type="number" min={1} value={batchSize} onChange={(e) => setBatchSize(e.target.value)} />
        </Field>
        <Field label="Parallelism" hint="devices at once within a batch">
          <input type="number" min={1} value={parallelism} onChange={(e) => setParallelism(e.target.value)} />
        </Field>
        <Field label="Failure threshold" hint="failures at which it halts">
          <input type="number" min={1} value={threshold} onChange={(e) => setThreshold(e.target.value)} />
        </Field>
      </div>
      <label className="check" title={kind === "firmware" ? "Firmware rollouts cannot roll back (the server refuses it)" : undefined}>
        <input
          type="checkbox"
          checked={rollback && kind === "change_set"}
          disabled={kind === "firmware"}
          onChange={(e) => setRollback(e.target.checked)}
        />
        when it halts, restore the devices it already changed (change sets only)
      </label>

      <h3>Devices</h3>
      <div className="toolbar">
        <Field label="Add every device with tags">
          <input value={tagText} placeholder="core, site-a" onChange={(e) => setTagText(e.target.value)} />
        </Field>
        <button type="button" disabled={!tagText.trim() || addTags.pending} onClick={() => void addTags.run(splitTags(tagText))}>
          {addTags.pending ? "Adding…" : "Add"}
        </button>
        {addTags.result !== null ? <span className="small muted">{addTags.result} devices matched</span> : null}
        <span className="spacer" />
        <Field label="Filter list">
          <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
        </Field>
      </div>
      <ProblemBox error={addTags.error} />
      <DevicePicker
        fleet={fleet}
        selected={selected}
        onToggle={toggle}
        canaries={{
          ids: canaries,
          onToggle: (d) => {
            toggleCanary(d);
            if (!selected.includes(d)) toggle(d);
          },
        }}
      />
      <p className="small">
        <strong>{selected.length}</strong> devices: {canaries.length} canaries (
        {canaries.map((c) => names.get(c) ?? c.slice(0, 8)).join(", ") || "none"}), then {others.length} in {batches}{" "}
        batch{batches === 1 ? "" : "es"}.
      </p>
      <ProblemBox error={create.error} />
      <div className="form-actions">
        <button type="submit" className="primary" disabled={create.pending || !selected.length || !name.trim()}>
          {create.pending ? "Creating…" : "Create and start"}
        </button>
      </div>
    </form>
  );
}

export function RolloutPage({ id }: { id: string }) {
  return <RolloutView id={id} />;
}

/**
 * A rollout live: facts, progress, the driving workflow, per-device outcomes by batch, and
 * pause / resume / cancel. `embedded` (a change request's page) shows it as a section under
 * the request's own heading and leaves cancelling to the request (its cancel stops the
 * rollout through the change run).
 */
export function RolloutView({ id, embedded = false }: { id: string; embedded?: boolean }) {
  const auth = useAuth();
  const rollout = useResource(async () => (await api("get", "/api/v1/rollouts/{rollout_id}", { path: { rollout_id: id } })).data, [id]);
  const devices = usePaged(
    async (cursor) =>
      (await api("get", "/api/v1/rollouts/{rollout_id}/devices", { path: { rollout_id: id }, query: { cursor, limit: 200 } })).data,
    [id],
  );
  const names = useDeviceNames();
  const wf = rollout.data?.workflow_id;
  useLiveRefresh(
    (e) => e.stream === `rollout-${id}` || (e.category === "workflow" && (e.stream === `workflow-${wf}` || e.event_type === "WorkflowFinished" || e.event_type === "WorkflowStarted")),
    () => {
      void rollout.reload();
      void devices.reload();
    },
    [id, wf, rollout.reload, devices.reload],
  );
  // A slow safety refresh while the rollout is active (live events do the real work).
  const activeNow = rollout.data?.state === "running" || rollout.data?.state === "paused";
  useEffect(() => {
    if (!activeNow) return;
    const t = setInterval(() => {
      void rollout.reload();
      void devices.reload();
    }, 20_000);
    return () => clearInterval(t);
  }, [activeNow, rollout.reload, devices.reload]);
  const [reason, setReason] = useState("");
  const signal = useAction(async (_key: string, what: "pause" | "resume" | "cancel") => {
    const path = { rollout_id: id };
    const r =
      what === "pause"
        ? await api("post", "/api/v1/rollouts/{rollout_id}/pause", { path })
        : what === "resume"
          ? await api("post", "/api/v1/rollouts/{rollout_id}/resume", { path })
          : await api("post", "/api/v1/rollouts/{rollout_id}/cancel", { path, body: { reason: reason || null } });
    void rollout.reload();
    return { what, data: r.data };
  });

  if (!rollout.data) {
    return (
      <div className={embedded ? "rollout-embedded" : "page"}>
        {embedded ? <h2>Rollout</h2> : <h1>Rollout</h1>}
        <ProblemBox error={rollout.error} />
        {!rollout.error ? <Loading /> : null}
      </div>
    );
  }
  const r = rollout.data;
  const active = r.state === "running" || r.state === "paused";
  return (
    <div className={embedded ? "rollout-embedded" : "page"} data-testid="rollout-view" data-state={r.state}>
      <div className="page-head">
        {embedded ? (
          <h2>
            Rollout <Link to={`/rollouts/${r.id}`}>{r.name}</Link> <Badge value={r.state} />
          </h2>
        ) : (
          <h1>
            <Link to="/rollouts" className="muted">
              Rollouts
            </Link>{" "}
            / {r.name} <Badge value={r.state} />
          </h1>
        )}
        <div className="page-actions">
          {active && auth.can("rollouts:stop") && r.state === "running" ? (
            <button type="button" disabled={signal.pending} onClick={() => void signal.run("pause")}>
              Pause
            </button>
          ) : null}
          {active && r.state === "paused" ? (
            <button
              type="button"
              className="primary"
              disabled={signal.pending || !auth.can("rollouts:approve")}
              title={auth.can("rollouts:approve") ? undefined : "Resuming needs an approver (rollouts:approve)"}
              onClick={() => void signal.run("resume")}
            >
              Resume
            </button>
          ) : null}
          {active && !embedded && auth.can("rollouts:stop") ? (
            <span className="inline-form">
              <input placeholder="cancel reason" value={reason} onChange={(e) => setReason(e.target.value)} />
              <button type="button" className="danger" disabled={signal.pending} onClick={() => void signal.run("cancel")}>
                Cancel rollout
              </button>
            </span>
          ) : null}
        </div>
      </div>
      <ProblemBox error={signal.error} onDismiss={signal.clear} />
      {signal.result ? <div className="notice">{signal.result.what} signal delivered to the rollout's workflow.</div> : null}
      <div className="grid-2">
        <Section title="Rollout">
          <dl className="facts">
            <dt>Target</dt>
            <dd>{r.target_kind === "firmware" ? `firmware ${r.target_version ?? ""}` : "change set"}</dd>
            <dt>State</dt>
            <dd>
              <Badge value={r.state} /> {r.reason ?? ""}
            </dd>
            <dt>Progress</dt>
            <dd>
              <Progress p={r.progress} />
            </dd>
            <dt>Counts</dt>
            <dd>
              {r.progress.succeeded} succeeded · {r.progress.failed} failed · {r.progress.rolled_back} rolled back ·{" "}
              {r.progress.cancelled} cancelled · {r.progress.pending} pending ({r.progress.canaries} canaries)
            </dd>
            <dt>Batches</dt>
            <dd>
              size {r.batch_size}, {r.parallelism} at once, halts at {r.failure_threshold} failure
              {r.failure_threshold === 1 ? "" : "s"}
              {r.rollback_on_halt ? ", restores changed devices on halt" : ""}
            </dd>
            <dt>Workflow</dt>
            <dd>
              <Link to={`/workflows/${r.workflow_id}`}>
                <ShortId id={r.workflow_id} />
              </Link>
            </dd>
            <dt>Created</dt>
            <dd>
              <Time at={r.created_at} />
            </dd>
            <dt>Updated</dt>
            <dd>
              <Time at={r.updated_at} relative />
            </dd>
            <dt>Finished</dt>
            <dd>
              <Time at={r.finished_at} />
            </dd>
          </dl>
        </Section>
        <Section title="Driving workflow">
          <RunCard id={r.workflow_id} title="Rollout" />
        </Section>
      </div>
      <Section title="Devices">
        <ProblemBox error={devices.error} />
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>#</th>
                <th>Batch</th>
                <th>Device</th>
                <th>Outcome</th>
                <th>Workflow</th>
                <th>Finished</th>
              </tr>
            </thead>
            <tbody>
              {devices.items.map((d) => (
                <tr key={d.device_id}>
                  <td>{d.ord}</td>
                  <td>{d.batch === 0 ? "canary" : d.batch}</td>
                  <td>
                    <Link to={`/devices/${d.device_id}`}>{names.get(d.device_id) ?? <ShortId id={d.device_id} />}</Link>
                  </td>
                  <td>{d.outcome ? <Badge value={d.outcome} /> : <span className="muted">pending</span>}</td>
                  <td>
                    {d.workflow_id ? (
                      <Link to={`/workflows/${d.workflow_id}`}>
                        <ShortId id={d.workflow_id} />
                      </Link>
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                  <td>
                    <Time at={d.finished_at} relative />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <LoadMore hasMore={devices.hasMore} loading={devices.loading} onMore={() => void devices.loadMore()} count={devices.items.length} />
      </Section>
    </div>
  );
}
