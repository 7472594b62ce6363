// Event history: every event, a category or one stream (`GET /events...`), optionally as of
// a time, in global order with cursor pages; and a live tail of the SSE connection.

import { useState, type ReactNode } from "react";

import { api, type Schemas } from "../api/client";
import { useLiveEvents, usePaged } from "../hooks";
import { Link, useQueryState } from "../router";
import { Empty, Field, Json, LoadMore, ProblemBox, Section, Time, isoToLocal, localToIso } from "../ui";

type Ev = Schemas["EventDto"];

export const CATEGORIES = ["device", "workflow", "rollout", "change", "firmware", "tenant", "user", "session"];

/** Where an event's stream lives in the UI, if anywhere. */
export function streamLink(stream: string): string | null {
  const m = /^(device|workflow|rollout|change)-([0-9a-f-]{36})$/.exec(stream);
  if (!m) return null;
  return `/${m[1]}s/${m[2]}`;
}

export function actorText(a: Schemas["ActorDto"]): string {
  if (a.kind === "system") return `system:${a.component ?? "?"}`;
  return `${a.kind}:${a.id ? a.id.slice(0, 8) : "?"}`;
}

export function EventsPage() {
  const [q, setQ] = useQueryState();
  const stream = q.get("stream") ?? "";
  const category = q.get("category") ?? "";
  const asOf = q.get("as_of") ?? "";
  const [tab, setTab] = useState<"history" | "live">("history");

  const events = usePaged<Ev>(
    async (cursor) => {
      const query = { cursor, limit: 100, as_of: asOf || undefined };
      if (stream)
        return (await api("get", "/api/v1/events/streams/{stream}", { path: { stream }, query })).data;
      if (category)
        return (await api("get", "/api/v1/events/categories/{category}", { path: { category }, query })).data;
      return (await api("get", "/api/v1/events", { query })).data;
    },
    [stream, category, asOf],
  );

  return (
    <div className="page">
      <div className="page-head">
        <h1>Events</h1>
        <div className="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={tab === "history"} className={tab === "history" ? "tab active" : "tab"} onClick={() => setTab("history")}>
            History
          </button>
          <button type="button" role="tab" aria-selected={tab === "live"} className={tab === "live" ? "tab active" : "tab"} onClick={() => setTab("live")}>
            Live tail
          </button>
        </div>
      </div>
      {tab === "live" ? (
        <LiveTail />
      ) : (
        <>
          <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Event filters">
            <Field label="Stream" hint="e.g. device-<id>; wins over category">
              <input
                defaultValue={stream}
                key={`s-${stream}`}
                placeholder="any"
                onBlur={(e) => setQ({ stream: e.target.value.trim() || null })}
                onKeyDown={(e) => {
                  if (e.key === "Enter") setQ({ stream: (e.target as HTMLInputElement).value.trim() || null });
                }}
              />
            </Field>
            <Field label="Category">
              <select value={category} onChange={(e) => setQ({ category: e.target.value || null })} disabled={!!stream}>
                <option value="">all</option>
                {CATEGORIES.map((c) => (
                  <option key={c} value={c}>
                    {c}
                  </option>
                ))}
              </select>
            </Field>
            <Field label="As of" hint="history as recorded at that time">
              <input
                type="datetime-local"
                step={1}
                defaultValue={isoToLocal(asOf)}
                key={`a-${asOf}`}
                onChange={(e) => setQ({ as_of: localToIso(e.target.value) })}
              />
            </Field>
            {stream || category || asOf ? (
              <button type="button" onClick={() => setQ({ stream: null, category: null, as_of: null })}>
                Clear
              </button>
            ) : null}
          </form>
          <p className="small muted">Oldest first, in global order. Identity events (tenant, user, session) appear only with audit:read.</p>
          <ProblemBox error={events.error} />
          <EventTable events={events.items} />
          {!events.loading && !events.items.length && !events.error ? <Empty>No events.</Empty> : null}
          <LoadMore hasMore={events.hasMore} loading={events.loading} onMore={() => void events.loadMore()} count={events.items.length} />
        </>
      )}
    </div>
  );
}

export function EventTable({ events }: { events: Ev[] }) {
  const [open, setOpen] = useState<number | null>(null);
  return (
    <div className="table-wrap">
      <table className="table" data-testid="event-table">
        <thead>
          <tr>
            <th>#</th>
            <th>Recorded</th>
            <th>Stream</th>
            <th>v</th>
            <th>Type</th>
            <th>Actor</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {events.map((e) => {
            const link = streamLink(e.stream);
            return (
              <FragmentRow key={e.position} open={open === e.position} ev={e}>
                <td className="mono small">{e.position}</td>
                <td>
                  <Time at={e.recorded_at} />
                </td>
                <td className="small">{link ? <Link to={link}>{e.stream}</Link> : e.stream}</td>
                <td>{e.version}</td>
                <td>
                  <strong>{e.event_type}</strong>
                </td>
                <td className="small">{actorText(e.actor)}</td>
                <td>
                  <button type="button" className="link" onClick={() => setOpen(open === e.position ? null : e.position)}>
                    {open === e.position ? "hide" : "details"}
                  </button>
                </td>
              </FragmentRow>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function FragmentRow({ ev, open, children }: { ev: Ev; open: boolean; children: ReactNode }) {
  return (
    <>
      <tr>{children}</tr>
      {open ? (
        <tr className="detail-row">
          <td colSpan={7}>
            <div className="small muted">
              event {ev.event_id} · schema v{ev.schema_version} · correlation {ev.correlation_id} · causation{" "}
              {ev.causation_id} · hash {ev.hash.slice(0, 16)}… (prev {ev.prev_hash.slice(0, 16)}…)
            </div>
            <Json value={ev.payload} />
          </td>
        </tr>
      ) : null}
    </>
  );
}

function LiveTail() {
  const [filter, setFilter] = useState("");
  const events = useLiveEvents(
    (e) => !filter || e.stream.includes(filter) || e.event_type.includes(filter) || e.category === filter,
    [filter],
    300,
  );
  return (
    <Section title="Live tail" actions={<input placeholder="filter: category, type or stream" value={filter} onChange={(e) => setFilter(e.target.value)} />}>
      {events.length ? <EventTable events={[...events].reverse()} /> : <Empty>Waiting for events… (newest first)</Empty>}
    </Section>
  );
}
