// Workflow runs: the list (filter by kind, state, device; live), a run's detail with its
// steps as a timeline (outcomes, errors, retries), input and output, and cancel.

import { useEffect, useState } from "react";

import { api, type Schemas } from "../api/client";
import { WORKFLOW_RUN_STATES, isTerminalRunState, oneOf, type WorkflowRunState } from "../api/enums";
import { useAuth } from "../auth";
import { useAction, useDeviceNames, useLiveRefresh, useLiveStatus, usePaged, useResource } from "../hooks";
import { Link, useQueryState } from "../router";
import { Badge, Empty, Field, Json, LoadMore, Loading, ProblemBox, Section, ShortId, Time, formatTime } from "../ui";
import { EventTable } from "./Events";

export type Run = Schemas["WorkflowRunDto"];
export type RunDetail = Schemas["WorkflowRunDetailDto"];
type Step = Schemas["WorkflowStepDto"];

export function isTerminal(state: WorkflowRunState): boolean {
  return isTerminalRunState(state);
}

export type WorkflowKind = Schemas["WorkflowKind"];
// Every kind the API reports, checked against the generated WorkflowKind type: a kind added to
// (or removed from) the API makes tsc fail here until this set follows.
const KINDS: Record<WorkflowKind, true> = {
  backup: true,
  change_request: true,
  config_push: true,
  config_restore: true,
  firmware_upgrade: true,
  rollout: true,
};
export const WORKFLOW_KINDS = Object.keys(KINDS) as WorkflowKind[];

export function WorkflowsPage() {
  const [q, setQ] = useQueryState();
  const kind = q.get("kind") ?? "";
  const state = q.get("state") ?? "";
  const device = q.get("device") ?? "";
  const runs = usePaged<Run>(
    async (cursor) =>
      (
        await api("get", "/api/v1/workflows", {
          query: {
            kind: WORKFLOW_KINDS.find((k) => k === kind),
            state: oneOf(WORKFLOW_RUN_STATES, state),
            device_id: device || undefined,
            cursor,
            limit: 50,
          },
        })
      ).data,
    [kind, state, device],
  );
  useLiveRefresh((e) => e.category === "workflow", () => void runs.reload(), [runs.reload]);

  return (
    <div className="page">
      <div className="page-head">
        <h1>Workflows</h1>
      </div>
      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Workflow filters">
        <Field label="Kind">
          <select value={kind} onChange={(e) => setQ({ kind: e.target.value || null })}>
            <option value="">any</option>
            {WORKFLOW_KINDS.map((k) => (
              <option key={k} value={k}>
                {k.replace(/_/g, " ")}
              </option>
            ))}
          </select>
        </Field>
        <Field label="State">
          <select value={state} onChange={(e) => setQ({ state: e.target.value || null })}>
            <option value="">any</option>
            {WORKFLOW_RUN_STATES.map((k) => (
              <option key={k} value={k}>
                {k.replace(/_/g, " ")}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Device id">
          <input
            defaultValue={device}
            key={device}
            placeholder="any"
            onBlur={(e) => setQ({ device: e.target.value.trim() || null })}
            onKeyDown={(e) => {
              if (e.key === "Enter") setQ({ device: (e.target as HTMLInputElement).value.trim() || null });
            }}
          />
        </Field>
      </form>
      <ProblemBox error={runs.error} />
      <RunTable runs={runs.items} />
      {!runs.loading && !runs.items.length && !runs.error ? <Empty>No workflow runs.</Empty> : null}
      <LoadMore hasMore={runs.hasMore} loading={runs.loading} onMore={() => void runs.loadMore()} count={runs.items.length} />
    </div>
  );
}

export function RunTable({ runs, compact = false }: { runs: Run[]; compact?: boolean }) {
  const names = useDeviceNames();
  return (
    <div className="table-wrap">
      <table className="table" data-testid="workflow-table">
        <thead>
          <tr>
            <th>Run</th>
            <th>Kind</th>
            <th>State</th>
            {compact ? null : <th>Step</th>}
            {compact ? null : <th>Devices</th>}
            <th>Started</th>
            {compact ? null : <th>Finished</th>}
            <th>Reason / last error</th>
          </tr>
        </thead>
        <tbody>
          {runs.map((r) => (
            <tr key={r.id} data-workflow={r.id} data-kind={r.kind}>
              <td>
                <Link to={`/workflows/${r.id}`}>
                  <ShortId id={r.id} />
                </Link>
              </td>
              <td className="nowrap">{r.kind.replace(/_/g, " ")}</td>
              <td>
                <Badge value={r.state} />
              </td>
              {compact ? null : (
                <td>
                  {r.current_step ?? <span className="muted">—</span>}
                  <span className="muted small"> ({r.steps_completed} done)</span>
                </td>
              )}
              {compact ? null : (
                <td>
                  {r.devices.slice(0, 3).map((d) => (
                    <Link key={d} to={`/devices/${d}`} className="mr">
                      {names.get(d) ?? <ShortId id={d} />}
                    </Link>
                  ))}
                  {r.devices.length > 3 ? <span className="muted">+{r.devices.length - 3}</span> : null}
                </td>
              )}
              <td className="nowrap">
                <Time at={r.started_at} relative />
              </td>
              {compact ? null : (
                <td className="nowrap">
                  <Time at={r.finished_at} relative />
                </td>
              )}
              <td className="wrap small">{r.reason ?? r.last_error ?? <span className="muted">—</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/**
 * A run followed live: refetched on each event of its stream (`workflow-<id>`), polled every
 * few seconds only while the live connection is down.
 */
export function useRun(id: string) {
  const run = useResource(async () => (await api("get", "/api/v1/workflows/{workflow_id}", { path: { workflow_id: id } })).data, [id]);
  useLiveRefresh((e) => e.stream === `workflow-${id}`, () => void run.reload(), [id, run.reload]);
  // A run just started may not be in the read model yet (the projector writes it a moment
  // after the event): a 404 is retried for a few seconds before it is shown.
  const [misses, setMisses] = useState(0);
  const notYet = run.error?.status === 404 && !run.data && misses < 15;
  useEffect(() => {
    if (!notYet) return;
    const t = setTimeout(() => {
      setMisses((m) => m + 1);
      void run.reload();
    }, 400);
    return () => clearTimeout(t);
  }, [notYet, misses, run.reload]);
  const status = useLiveStatus();
  const state = run.data?.run.state;
  useEffect(() => {
    if (!state || isTerminal(state)) return;
    // Every 4 s while the live connection is down; a slow safety refresh while it is up.
    const t = setInterval(() => void run.reload(), status === "live" ? 20_000 : 4000);
    return () => clearInterval(t);
  }, [status, state, run.reload]);
  return { ...run, error: notYet ? null : run.error };
}

const UUID_IN_TEXT = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

export function StepTimeline({ steps }: { steps: Step[] }) {
  const names = useDeviceNames();
  if (!steps.length) return <Empty>No steps yet.</Empty>;
  // Rollout steps are named after device ids (`start-<id>`): show the device's name.
  const label = (step: string) => step.replace(UUID_IN_TEXT, (id) => names.get(id.toLowerCase()) ?? id);
  return (
    <ol className="timeline" data-testid="steps">
      {steps.map((s) => (
        <li key={`${s.seq}-${s.step}`} className={`step step-${s.state}`} data-step={s.step} data-state={s.state}>
          <div className="step-dot" aria-hidden />
          <div className="step-body">
            <div className="step-head">
              <strong title={s.step}>{label(s.step)}</strong> <Badge value={s.state === "completed" ? "succeeded" : s.state} label={s.state} />
              {s.attempts > 1 ? <span className="muted small"> {s.attempts} attempts</span> : null}
              <span className="muted small step-time" title={`${s.started_at} → ${s.finished_at ?? "running"}`}>
                {formatTime(s.started_at)}
                {s.finished_at ? ` → ${sameDay(s.started_at, s.finished_at) ? formatTime(s.finished_at).slice(11) : formatTime(s.finished_at)} (${duration(s.started_at, s.finished_at)})` : null}
              </span>
            </div>
            {s.last_error ? (
              <div className="step-error">
                {s.failure_class ? <span className="tag">{s.failure_class}</span> : null} {s.last_error}
              </div>
            ) : null}
            {s.retry_at && s.state === "retrying" ? (
              <div className="small muted">
                next attempt <Time at={s.retry_at} relative />
              </div>
            ) : null}
          </div>
        </li>
      ))}
    </ol>
  );
}

function sameDay(a: string, b: string): boolean {
  return formatTime(a).slice(0, 10) === formatTime(b).slice(0, 10);
}

export function duration(from: string, to: string): string {
  const ms = new Date(to).getTime() - new Date(from).getTime();
  if (!Number.isFinite(ms)) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** A compact live view of one run (used on the device page after starting an action). */
export function RunCard({ id, title, onFinished }: { id: string; title: string; onFinished?: (r: Run) => void }) {
  const run = useRun(id);
  const r = run.data?.run;
  const [reported, setReported] = useState(false);
  useEffect(() => {
    if (r && isTerminal(r.state) && !reported) {
      setReported(true);
      onFinished?.(r);
    }
  }, [r, reported, onFinished]);
  return (
    <div className="run-card" data-testid="active-workflow" data-workflow={id} data-state={r?.state ?? "loading"}>
      <div className="run-card-head">
        <strong>{title}</strong> <Link to={`/workflows/${id}`}>run <ShortId id={id} /></Link>{" "}
        {r ? <Badge value={r.state} /> : <span className="muted">loading…</span>}
        {r?.current_step && !isTerminal(r.state) ? <span className="muted small"> at {r.current_step}</span> : null}
      </div>
      <ProblemBox error={run.error} />
      {r?.reason ? <div className="small">{r.reason}</div> : null}
      {r?.last_error && !isTerminal(r.state) ? <div className="small step-error">{r.last_error}</div> : null}
      {run.data ? <StepTimeline steps={run.data.steps} /> : null}
    </div>
  );
}

export function WorkflowPage({ id }: { id: string }) {
  const auth = useAuth();
  const names = useDeviceNames();
  const run = useRun(id);
  const [reason, setReason] = useState("");
  const cancel = useAction(async (_key: string, why: string) => {
    const r = await api("post", "/api/v1/workflows/{workflow_id}/cancel", {
      path: { workflow_id: id },
      body: { reason: why || null },
    });
    void run.reload();
    return r.data;
  });
  const journal = usePaged(
    async (cursor) =>
      (await api("get", "/api/v1/events/streams/{stream}", { path: { stream: `workflow-${id}` }, query: { cursor, limit: 200 } })).data,
    [id],
  );
  useLiveRefresh((e) => e.stream === `workflow-${id}`, () => void journal.reload(), [id, journal.reload]);

  if (!run.data) {
    return (
      <div className="page">
        <h1>Workflow</h1>
        <ProblemBox error={run.error} />
        {!run.error ? <Loading /> : null}
      </div>
    );
  }
  const r = run.data.run;
  return (
    <div className="page">
      <div className="page-head">
        <h1>
          {r.kind.replace(/_/g, " ")} <ShortId id={r.id} /> <Badge value={r.state} />
        </h1>
        <div className="page-actions">
          {auth.can("workflows:cancel") && !isTerminal(r.state) ? (
            <span className="inline-form">
              <input placeholder="reason (optional)" value={reason} onChange={(e) => setReason(e.target.value)} />
              <button type="button" className="danger" disabled={cancel.pending} onClick={() => void cancel.run(reason)}>
                {cancel.pending ? "Cancelling…" : "Cancel run"}
              </button>
            </span>
          ) : null}
        </div>
      </div>
      <ProblemBox error={cancel.error} onDismiss={cancel.clear} />
      {cancel.result ? <div className="notice">Cancel signal delivered; the run stops at its next step boundary.</div> : null}
      <div className="grid-2">
        <Section title="Run">
          <dl className="facts">
            <dt>Id</dt>
            <dd>
              <code>{r.id}</code>
            </dd>
            <dt>Definition</dt>
            <dd>
              {r.kind} v{r.definition_version}
            </dd>
            <dt>State</dt>
            <dd>
              <Badge value={r.state} /> {r.outcome && r.outcome !== r.state ? <span>outcome {r.outcome}</span> : null}
            </dd>
            <dt>Reason</dt>
            <dd>{r.reason ?? <span className="muted">—</span>}</dd>
            <dt>Current step</dt>
            <dd>{r.current_step ?? <span className="muted">—</span>}</dd>
            <dt>Steps completed</dt>
            <dd>{r.steps_completed}</dd>
            <dt>Failed attempts</dt>
            <dd>{r.failed_attempts}</dd>
            <dt>Last error</dt>
            <dd className="wrap">{r.last_error ?? <span className="muted">—</span>}</dd>
            <dt>Wakes</dt>
            <dd>
              <Time at={r.wake_at} />
            </dd>
            <dt>Last signal</dt>
            <dd>{r.last_signal ?? <span className="muted">—</span>}</dd>
            <dt>Devices</dt>
            <dd>
              {r.devices.map((d) => (
                <Link key={d} to={`/devices/${d}`} className="mr">
                  {names.get(d) ?? <ShortId id={d} />}
                </Link>
              ))}
            </dd>
            {r.rollout_id ? (
              <>
                <dt>Rollout</dt>
                <dd>
                  <Link to={`/rollouts/${r.rollout_id}`}>
                    <ShortId id={r.rollout_id} />
                  </Link>
                </dd>
              </>
            ) : null}
            <dt>Idempotency key</dt>
            <dd>
              <code>{r.idempotency_key ?? "—"}</code>
            </dd>
            <dt>Started</dt>
            <dd>
              <Time at={r.started_at} />
            </dd>
            <dt>Finished</dt>
            <dd>
              <Time at={r.finished_at} />
              {r.finished_at ? <span className="muted"> ({duration(r.started_at, r.finished_at)})</span> : null}
            </dd>
          </dl>
        </Section>
        <Section title="Steps">
          <StepTimeline steps={run.data.steps} />
        </Section>
      </div>
      <div className="grid-2">
        <Section title="Input">
          <Json value={run.data.input} />
        </Section>
        <Section title="Output">{run.data.output ? <Json value={run.data.output} /> : <Empty>Not finished.</Empty>}</Section>
      </div>
      <Section
        title="Journal"
        actions={
          <Link to={`/events?stream=workflow-${id}`} className="small">
            in the event history
          </Link>
        }
      >
        <ProblemBox error={journal.error} />
        {journal.items.length ? <EventTable events={journal.items} /> : <Empty>No journal events yet.</Empty>}
        <LoadMore hasMore={journal.hasMore} loading={journal.loading} onMore={() => void journal.loadMore()} count={journal.items.length} />
      </Section>
    </div>
  );
}
