// Audit (audit:read), the auditor's section, in four views (sub-routes, one tab each):
//
// * `/audit` — the timeline explorer: `GET /audit/feed`, newest first, filtered by time range,
//   actor, device, stream, event type, category and correlation id (a change request's id
//   gives the request and everything it caused); every filter lives in the URL, so a view can
//   be shared; a correlation id in an entry filters to its chain; "Download CSV" saves the
//   filtered view (`/audit/feed.csv`). Entries of an emergency change request, and everything
//   correlated with it, carry a red EMERGENCY badge.
// * `/audit/as-of` — a device and the fleet as they were at a time (./AuditAsOf.tsx).
// * `/audit/verification` — verify the history now, and the signed checkpoints (./AuditVerify.tsx).
// * `/audit/reports` — change log, inventory and verification reports as CSV or PDF
//   (./AuditReports.tsx).
// * `/audit/bundle` — download the audit bundle (audit:export) with its SHA-256 and the
//   commands that verify it offline (./AuditBundle.tsx).

import { useEffect, useMemo, useState, type ReactNode } from "react";

import { api, ApiProblem, toProblem, type Schemas } from "../api/client";
import { fetchDownload, saveBlob, type DownloadQuery } from "../api/download";
import { useAuth } from "../auth";
import { useDeviceNames, usePaged, useResource } from "../hooks";
import { Link, useQueryState } from "../router";
import {
  Badge,
  EmergencyBadge,
  Empty,
  Field,
  LoadMore,
  ProblemBox,
  ShortId,
  Time,
  formatBytes,
  isoToLocal,
  localToIso,
  timeZoneLabel,
} from "../ui";
import { AuditAsOfView } from "./AuditAsOf";
import { AuditBundleView } from "./AuditBundle";
import { AuditReportsView } from "./AuditReports";
import { AuditVerifyView } from "./AuditVerify";
import { CATEGORIES, streamLink } from "./Events";

type Entry = Schemas["AuditEntryDto"];
type FeedQuery = DownloadQuery<"/api/v1/audit/feed.csv">;

/** The audit feed's categories: the event store's, and the security events' own. */
export const AUDIT_CATEGORIES = [...CATEGORIES, "security"];

interface ViewDef {
  path: string;
  label: string;
  /** The permission the view needs on top of audit:read. */
  needs?: string;
}

const VIEWS: Record<string, ViewDef> = {
  timeline: { path: "/audit", label: "Timeline" },
  "as-of": { path: "/audit/as-of", label: "Device as of", needs: "configs:read" },
  verification: { path: "/audit/verification", label: "Verification" },
  bundle: { path: "/audit/bundle", label: "Bundle download", needs: "audit:export" },
  reports: { path: "/audit/reports", label: "Reports" },
};

export function AuditPage({ view = "timeline" }: { view?: string }) {
  const auth = useAuth();
  if (!auth.can("audit:read")) {
    return (
      <div className="page">
        <h1>Audit</h1>
        <Empty>Your role cannot read the audit feed (needs audit:read).</Empty>
      </div>
    );
  }
  const def = VIEWS[view];
  let body: ReactNode;
  if (!def) body = <Empty>No audit view named “{view}”.</Empty>;
  else if (def.needs && !auth.can(def.needs)) body = <Empty>Your role cannot open this view (needs {def.needs}).</Empty>;
  else if (view === "as-of") body = <AuditAsOfView />;
  else if (view === "verification") body = <AuditVerifyView />;
  else if (view === "bundle") body = <AuditBundleView />;
  else if (view === "reports") body = <AuditReportsView />;
  else body = <Timeline />;

  return (
    <div className="page audit-page" data-view={view}>
      <div className="page-head">
        <h1>Audit</h1>
        <nav className="tabs" role="tablist" aria-label="Audit views">
          {Object.entries(VIEWS)
            .filter(([, v]) => !v.needs || auth.can(v.needs))
            .map(([k, v]) => (
              <Link key={k} to={v.path} role="tab" aria-selected={k === view} className={k === view ? "tab active" : "tab"}>
                {v.label}
              </Link>
            ))}
        </nav>
      </div>
      {body}
    </div>
  );
}

// ---------------------------------------------------------------------------------------
// Names for ids (users, API keys, change requests), where the caller may read them

/** `user:<id>` / `api_key:<id>` → a name, for the roles that may read users and keys. */
export function useActorNames(): Map<string, string> {
  const auth = useAuth();
  const canUsers = auth.can("users:read");
  const canKeys = auth.can("apikeys:read");
  const users = useResource(
    async () => (canUsers ? (await api("get", "/api/v1/users", { query: { limit: 500 } })).data.items : []),
    [canUsers],
  );
  const keys = useResource(
    async () => (canKeys ? (await api("get", "/api/v1/api-keys", { query: { limit: 500 } })).data.items : []),
    [canKeys],
  );
  return useMemo(() => {
    const m = new Map<string, string>();
    for (const u of users.data ?? []) m.set(`user:${u.id}`, u.display_name || u.email);
    for (const k of keys.data ?? []) m.set(`api_key:${k.id}`, `API key “${k.name}”`);
    return m;
  }, [users.data, keys.data]);
}

/** The recent change requests (for picking one as a correlation id), by id. */
function useChangeRequests(): { list: Schemas["ChangeRequestSummaryDto"][]; error: ApiProblem | null } {
  const auth = useAuth();
  const can = auth.can("changes:read");
  const r = useResource(
    async () => (can ? (await api("get", "/api/v1/change-requests", { query: { limit: 200 } })).data.items : []),
    [can],
  );
  return { list: r.data ?? [], error: r.error };
}

/** An actor by name: the name it had at the event (`asThen`, from the feed) before today's
 * (`names`), the id one hover away; a system component by its id. */
export function Actor({ actor, names, asThen }: { actor: string; names: Map<string, string>; asThen?: string | null }) {
  const now = names.get(actor);
  const name = asThen ?? now;
  const title = asThen && now && now !== asThen ? `${actor} (today: ${now})` : actor;
  return name ? (
    <span title={title}>
      {name} <span className="muted small">{actor.startsWith("api_key:") ? "API key" : actor.split(":")[0]}</span>
    </span>
  ) : (
    <span className="mono">{actor}</span>
  );
}

// ---------------------------------------------------------------------------------------
// Timeline explorer

const FILTER_KEYS = ["from", "to", "actor", "subject", "device", "stream", "event_type", "category", "correlation_id"] as const;
type FilterKey = (typeof FILTER_KEYS)[number];
type Filters = Record<FilterKey, string>;

function feedQuery(f: Filters): FeedQuery {
  const q: FeedQuery = {};
  for (const k of FILTER_KEYS) if (f[k]) q[k] = f[k];
  return q;
}

function Timeline() {
  const [q, setQ] = useQueryState();
  const f = Object.fromEntries(FILTER_KEYS.map((k) => [k, q.get(k) ?? ""])) as Filters;
  const query = feedQuery(f);
  const queryKey = JSON.stringify(query);
  const feed = usePaged<Entry>(
    async (cursor) => (await api("get", "/api/v1/audit/feed", { query: { ...query, cursor, limit: 100 } })).data,
    [queryKey],
  );
  // Which filters the rows shown belong to (for "settled": loaded, and for these filters).
  const [loadedKey, setLoadedKey] = useState<string | null>(null);
  useEffect(() => {
    if (!feed.loading) setLoadedKey(queryKey);
  }, [feed.loading]);
  const settled = !feed.loading && loadedKey === queryKey;
  const names = useActorNames();
  const deviceNames = useDeviceNames();
  const changes = useChangeRequests();
  const changeById = useMemo(() => new Map(changes.list.map((c) => [c.change_request_id, c])), [changes.list]);
  const active = FILTER_KEYS.filter((k) => f[k]);
  const eventTypes = useMemo(() => [...new Set(feed.items.map((e) => e.event_type))].sort(), [feed.items]);

  const text = (k: FilterKey, label: string, placeholder: string, list?: string) => (
    <Field label={label}>
      <input
        defaultValue={f[k]}
        key={`${k}-${f[k]}`}
        placeholder={placeholder}
        list={list}
        onBlur={(e) => setQ({ [k]: e.target.value.trim() || null })}
        onKeyDown={(e) => {
          if (e.key === "Enter") setQ({ [k]: (e.target as HTMLInputElement).value.trim() || null });
        }}
      />
    </Field>
  );

  const chain = f.correlation_id ? changeById.get(f.correlation_id) : undefined;
  const csv = useCsvDownload(query);

  return (
    <>
      <form className="filters audit-filters" onSubmit={(e) => e.preventDefault()} aria-label="Audit filters">
        <TimeFilter label="From" value={f.from} onChange={(v) => setQ({ from: v })} />
        <TimeFilter label="To" value={f.to} onChange={(v) => setQ({ to: v })} />
        {text("actor", "Actor", "user:<id>", "audit-actors")}
        <datalist id="audit-actors">
          {[...names.entries()].map(([id, name]) => (
            <option key={id} value={id}>
              {name}
            </option>
          ))}
        </datalist>
        {text("subject", "Subject", "device:<id>, user:<id>, api_key:<id>, change_request:<id>")}
        <Field label="Device">
          <select value={f.device} onChange={(e) => setQ({ device: e.target.value || null })}>
            <option value="">all</option>
            {f.device && !deviceNames.has(f.device) ? <option value={f.device}>{f.device}</option> : null}
            {[...deviceNames.entries()]
              .sort((a, b) => a[1].localeCompare(b[1]))
              .map(([id, name]) => (
                <option key={id} value={id}>
                  {name}
                </option>
              ))}
          </select>
        </Field>
        {text("event_type", "Event type", "ChangeRequestApproved", "audit-event-types")}
        <datalist id="audit-event-types">
          {eventTypes.map((t) => (
            <option key={t} value={t} />
          ))}
        </datalist>
        <Field label="Category">
          <select value={f.category} onChange={(e) => setQ({ category: e.target.value || null })}>
            <option value="">all</option>
            {AUDIT_CATEGORIES.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </Field>
        {text("stream", "Stream", "device-<id>")}
        {changes.list.length ? (
          <Field label="Change request">
            <select value={changeById.has(f.correlation_id) ? f.correlation_id : ""} onChange={(e) => setQ({ correlation_id: e.target.value || null })}>
              <option value="">any</option>
              {changes.list.map((c) => (
                <option key={c.change_request_id} value={c.change_request_id}>
                  {c.title} ({c.state.replace(/_/g, " ")}, …{c.change_request_id.slice(-8)})
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        {text("correlation_id", "Correlation id", "a change request's id, or any entry's")}
        <div className="summary">
          {active.length ? (
            <button type="button" onClick={() => setQ(Object.fromEntries(FILTER_KEYS.map((k) => [k, null])))}>
              Clear filters
            </button>
          ) : null}
          <button type="button" disabled={csv.pending} onClick={() => void csv.run()} title="the entries of this filtered view, as CSV">
            {csv.pending ? "Downloading…" : "Download CSV"}
          </button>
        </div>
      </form>
      {csv.saved ? (
        <div className="small muted" data-testid="csv-saved">
          Saved {csv.saved.name} ({formatBytes(csv.saved.bytes)}): the {active.length ? "filtered" : "whole"} feed, newest first.
        </div>
      ) : null}
      <ProblemBox error={csv.error} onDismiss={csv.clearError} />
      <ProblemBox error={changes.error} />
      {f.correlation_id ? (
        <div className="notice chain-notice" data-testid="correlation-filter">
          <span>
            Chain of correlation id <code>{f.correlation_id}</code>
            {chain ? (
              <>
                : change request <Link to={`/changes/${chain.change_request_id}`}>{chain.title}</Link>{" "}
                <Badge value={chain.state} /> {chain.emergency ? <EmergencyBadge /> : null} — the request, its approvals,
                run, rollout, per-device workflows and the device events they wrote
              </>
            ) : null}
            .
          </span>
          <button type="button" onClick={() => setQ({ correlation_id: null })}>
            Clear correlation filter
          </button>
        </div>
      ) : null}
      <ProblemBox error={feed.error} />
      <div className="table-wrap">
        <table className="table audit-table" data-testid="audit-table" data-settled={settled}>
          <thead>
            <tr>
              <th>Recorded</th>
              <th>Actor</th>
              <th>Event</th>
              <th>Subject</th>
              <th>Summary</th>
              <th title="Everything one action caused shares it; click to follow the chain">Correlation</th>
              <th>#</th>
            </tr>
          </thead>
          <tbody>
            {feed.items.map((e) => (
              <EntryRow
                key={e.position}
                e={e}
                names={names}
                deviceNames={deviceNames}
                change={changeById.get(e.correlation_id)}
                chained={f.correlation_id === e.correlation_id}
                onFilter={(k, v) =>
                  // Following a chain shows all of it: the other filters would cut it.
                  setQ(k === "correlation_id" ? { ...Object.fromEntries(FILTER_KEYS.map((x) => [x, null])), correlation_id: v } : { [k]: v })
                }
              />
            ))}
          </tbody>
        </table>
      </div>
      {!feed.loading && !feed.items.length && !feed.error ? <Empty>Nothing matches.</Empty> : null}
      <LoadMore hasMore={feed.hasMore} loading={feed.loading} onMore={() => void feed.loadMore()} count={feed.items.length} />
      <p className="small muted">
        Times are shown in your time zone ({timeZoneLabel()}); the filters send them as UTC. The URL holds the filters: copy it to
        share this view.
      </p>
    </>
  );
}

function EntryRow({
  e,
  names,
  deviceNames,
  change,
  chained,
  onFilter,
}: {
  e: Entry;
  names: Map<string, string>;
  deviceNames: Map<string, string>;
  change?: Schemas["ChangeRequestSummaryDto"];
  chained: boolean;
  onFilter: (k: FilterKey, v: string) => void;
}) {
  const [open, setOpen] = useState(false);
  const link = streamLink(e.stream);
  const device = /^device-([0-9a-f-]{36})$/.exec(e.stream)?.[1];
  return (
    <>
      <tr
        data-position={e.position}
        data-event-type={e.event_type}
        data-emergency={e.emergency}
        data-correlation={e.correlation_id}
        data-stream={e.stream}
        data-actor={e.actor}
        data-actor-name={e.actor_name ?? undefined}
        data-subject={e.subject ?? undefined}
        data-subject-name={e.subject_name ?? undefined}
        className={e.emergency ? "row-emergency" : undefined}
      >
        <td className="nowrap">
          <Time at={e.recorded_at} />
        </td>
        <td className="small">
          <button type="button" className="link" title={`only ${e.actor}`} onClick={() => onFilter("actor", e.actor)}>
            <Actor actor={e.actor} names={names} asThen={e.actor_name} />
          </button>
        </td>
        <td>
          <button type="button" className="link" title="only this event type" onClick={() => onFilter("event_type", e.event_type)}>
            {e.event_type}
          </button>
          <div className="small muted">{e.category}</div>
        </td>
        <td className="small">
          {link ? <Link to={link}>{e.stream}</Link> : <span className="mono">{e.stream}</span>}
          {e.subject && (e.subject_name || (device && deviceNames.get(device))) ? (
            <div>
              <button
                type="button"
                className="link muted"
                title={`only events about ${e.subject} (named as it was then)`}
                onClick={() => onFilter("subject", e.subject ?? "")}
              >
                {e.subject_name ?? deviceNames.get(device ?? "")}
              </button>
            </div>
          ) : null}
          {device ? (
            <div>
              <Link to={`/audit/as-of?device=${device}&at=${encodeURIComponent(e.recorded_at)}`} title="the device as it was right after this event">
                state then
              </Link>
            </div>
          ) : null}
        </td>
        <td>
          {e.emergency ? (
            <>
              <EmergencyBadge title="Part of an emergency (break-glass) change request: it ran before its approvals" />{" "}
            </>
          ) : null}
          {e.summary}
        </td>
        <td className="small">
          {chained ? (
            <span className="muted" title={e.correlation_id}>
              this chain
            </span>
          ) : (
            <button
              type="button"
              className="link"
              data-testid="correlation-link"
              title={`Show the chain of ${e.correlation_id}`}
              aria-label={`chain ${e.correlation_id}`}
              onClick={() => onFilter("correlation_id", e.correlation_id)}
            >
              <ShortId id={e.correlation_id} />
            </button>
          )}
          {change ? <div className="muted">{change.title}</div> : null}
        </td>
        <td className="mono small">
          <button type="button" className="link" aria-expanded={open} title="details" onClick={() => setOpen(!open)}>
            {e.position}
          </button>
        </td>
      </tr>
      {open ? (
        <tr className="detail-row">
          <td colSpan={7}>
            <dl className="facts small">
              <dt>Position</dt>
              <dd className="mono">{e.position}</dd>
              <dt>Recorded</dt>
              <dd className="mono">{e.recorded_at}</dd>
              <dt>Event id</dt>
              <dd className="mono">{e.event_id}</dd>
              <dt>Actor</dt>
              <dd className="mono">{e.actor}</dd>
              <dt>Correlation id</dt>
              <dd className="mono">{e.correlation_id}</dd>
              <dt>Causation id</dt>
              <dd className="mono">
                {e.causation_id}
                {e.causation_id === e.correlation_id ? <span className="muted"> (caused directly by the action that started the chain)</span> : null}
              </dd>
              <dt>Schema version</dt>
              <dd>{e.schema_version}</dd>
              <dt>Events</dt>
              <dd>
                <Link to={`/events?stream=${encodeURIComponent(e.stream)}`}>the stream's events with payloads and hashes</Link>
              </dd>
            </dl>
          </td>
        </tr>
      ) : null}
    </>
  );
}

/** A `datetime-local` filter whose value is kept in the URL as RFC 3339 UTC. */
function TimeFilter({ label, value, onChange }: { label: string; value: string; onChange: (iso: string | null) => void }) {
  const [local, setLocal] = useState(isoToLocal(value));
  useEffect(() => {
    if (localToIso(local) !== (value || null)) setLocal(isoToLocal(value));
  }, [value]);
  return (
    <Field label={label}>
      <input
        type="datetime-local"
        step={1}
        value={local}
        onChange={(e) => {
          setLocal(e.target.value);
          // An incomplete value reads as "": the filter is off until it is complete again.
          onChange(localToIso(e.target.value));
        }}
      />
    </Field>
  );
}

/** Downloads the filtered view as CSV (`/audit/feed.csv`, the same filters, newest first). */
function useCsvDownload(query: FeedQuery) {
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<ApiProblem | null>(null);
  const [saved, setSaved] = useState<{ name: string; bytes: number } | null>(null);
  const run = async () => {
    setPending(true);
    setError(null);
    setSaved(null);
    try {
      const d = await fetchDownload("/api/v1/audit/feed.csv", query, "netledger-audit-feed.csv");
      const url = saveBlob(d.blob, d.fileName);
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setSaved({ name: d.fileName, bytes: d.bytes });
    } catch (e) {
      setError(toProblem(e));
    } finally {
      setPending(false);
    }
  };
  return { run, pending, error, saved, clearError: () => setError(null) };
}
