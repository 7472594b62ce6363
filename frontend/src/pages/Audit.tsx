// Audit (audit:read): who did what (`GET /audit/feed`, newest first, filter by stream,
// category, type, actor; the entries of an emergency change request and everything
// correlated with it carry a red EMERGENCY badge), the signed checkpoints, and a
// verification of the tenant's hash chain and signatures (`GET /audit/verify`).

import { Fragment, useState } from "react";

import { api, type Schemas } from "../api/client";
import { useAuth } from "../auth";
import { useAction, usePaged, useResource } from "../hooks";
import { Link, useQueryState } from "../router";
import { Badge, EmergencyBadge, Empty, Field, Json, LoadMore, ProblemBox, Section, Time } from "../ui";
import { CATEGORIES, streamLink } from "./Events";

type Entry = Schemas["AuditEntryDto"];

export function AuditPage() {
  const auth = useAuth();
  const [q, setQ] = useQueryState();
  const f = {
    stream: q.get("stream") ?? "",
    category: q.get("category") ?? "",
    event_type: q.get("event_type") ?? "",
    actor: q.get("actor") ?? "",
  };
  const feed = usePaged<Entry>(
    async (cursor) =>
      (
        await api("get", "/api/v1/audit/feed", {
          query: {
            stream: f.stream || undefined,
            category: f.category || undefined,
            event_type: f.event_type || undefined,
            actor: f.actor || undefined,
            cursor,
            limit: 100,
          },
        })
      ).data,
    [f.stream, f.category, f.event_type, f.actor],
  );
  const [tab, setTab] = useState<"feed" | "checkpoints">("feed");

  if (!auth.can("audit:read")) {
    return (
      <div className="page">
        <h1>Audit</h1>
        <Empty>Your role cannot read the audit feed (needs audit:read).</Empty>
      </div>
    );
  }

  const text = (k: keyof typeof f, label: string, placeholder: string) => (
    <Field label={label}>
      <input
        defaultValue={f[k]}
        key={`${k}-${f[k]}`}
        placeholder={placeholder}
        onBlur={(e) => setQ({ [k]: e.target.value.trim() || null })}
        onKeyDown={(e) => {
          if (e.key === "Enter") setQ({ [k]: (e.target as HTMLInputElement).value.trim() || null });
        }}
      />
    </Field>
  );

  return (
    <div className="page">
      <div className="page-head">
        <h1>Audit</h1>
        <div className="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={tab === "feed"} className={tab === "feed" ? "tab active" : "tab"} onClick={() => setTab("feed")}>
            Feed
          </button>
          <button
            type="button"
            role="tab"
            aria-selected={tab === "checkpoints"}
            className={tab === "checkpoints" ? "tab active" : "tab"}
            onClick={() => setTab("checkpoints")}
          >
            Checkpoints &amp; verification
          </button>
        </div>
      </div>
      {tab === "feed" ? (
        <>
          <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Audit filters">
            {text("stream", "Stream", "device-<id>")}
            <Field label="Category">
              <select value={f.category} onChange={(e) => setQ({ category: e.target.value || null })}>
                <option value="">all</option>
                {CATEGORIES.map((c) => (
                  <option key={c} value={c}>
                    {c}
                  </option>
                ))}
              </select>
            </Field>
            {text("event_type", "Event type", "DeviceTagsChanged")}
            {text("actor", "Actor", "user:<id>")}
          </form>
          <ProblemBox error={feed.error} />
          <div className="table-wrap">
            <table className="table" data-testid="audit-table">
              <thead>
                <tr>
                  <th>Recorded</th>
                  <th>Actor</th>
                  <th>Summary</th>
                  <th>Type</th>
                  <th>Stream</th>
                  <th>#</th>
                </tr>
              </thead>
              <tbody>
                {feed.items.map((e) => {
                  const link = streamLink(e.stream);
                  return (
                    <tr key={e.position} data-position={e.position} data-event-type={e.event_type} data-emergency={e.emergency} className={e.emergency ? "row-emergency" : undefined}>
                      <td>
                        <Time at={e.recorded_at} />
                      </td>
                      <td className="small">
                        <button type="button" className="link" title="only this actor" onClick={() => setQ({ actor: e.actor })}>
                          {e.actor}
                        </button>
                      </td>
                      <td>
                        {e.emergency ? (
                          <>
                            <EmergencyBadge title="Part of an emergency (break-glass) change request: it ran before its approvals" />{" "}
                          </>
                        ) : null}
                        {e.summary}
                      </td>
                      <td>
                        <button type="button" className="link" onClick={() => setQ({ event_type: e.event_type })}>
                          {e.event_type}
                        </button>
                      </td>
                      <td className="small">{link ? <Link to={link}>{e.stream}</Link> : e.stream}</td>
                      <td className="mono small">{e.position}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          {!feed.loading && !feed.items.length && !feed.error ? <Empty>Nothing matches.</Empty> : null}
          <LoadMore hasMore={feed.hasMore} loading={feed.loading} onMore={() => void feed.loadMore()} count={feed.items.length} />
        </>
      ) : (
        <Checkpoints />
      )}
    </div>
  );
}

function Checkpoints() {
  const list = useResource(async () => (await api("get", "/api/v1/audit/checkpoints")).data, []);
  const verify = useAction(async () => (await api("get", "/api/v1/audit/verify")).data);
  const [open, setOpen] = useState<number | null>(null);
  const v = verify.result;
  return (
    <>
      <Section
        title="Verification"
        actions={
          <button type="button" className="primary" disabled={verify.pending} onClick={() => void verify.run()}>
            {verify.pending ? "Verifying…" : "Verify history now"}
          </button>
        }
      >
        <ProblemBox error={verify.error} />
        {v ? (
          <div data-testid="verify-result">
            <p>
              <Badge value={v.ok ? "succeeded" : "failed"} label={v.ok ? "verified" : "problem found"} /> {v.events} events,{" "}
              {v.checkpoints} checkpoints, signed through position {v.signed_through} of {v.last_position}.{" "}
              {v.signatures_checked ? "Signatures checked." : "Signatures not checked (the API has no public key)."}
            </p>
            {v.problem ? (
              <div className="problem">
                <strong>At position {v.problem_position ?? "?"}:</strong> {v.problem}
              </div>
            ) : null}
          </div>
        ) : (
          <Empty>Recomputes the hash chain of every event and checks each checkpoint.</Empty>
        )}
      </Section>
      <Section title="Signed checkpoints">
        <ProblemBox error={list.error} />
        {list.data && !list.data.items.length ? <Empty>No checkpoints yet (written periodically).</Empty> : null}
        {list.data?.items.length ? (
          <div className="table-wrap">
            <table className="table">
              <thead>
                <tr>
                  <th>Seq</th>
                  <th>Positions</th>
                  <th>Events</th>
                  <th>Digest</th>
                  <th>Key</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {list.data.items.map((c) => (
                  <Fragment key={c.seq}>
                    <tr>
                      <td>{c.seq}</td>
                      <td>
                        {c.from_position}–{c.to_position}
                      </td>
                      <td>{c.event_count}</td>
                      <td className="mono small">{c.digest.slice(0, 24)}…</td>
                      <td>{c.key_id}</td>
                      <td>
                        <button type="button" className="link" onClick={() => setOpen(open === c.seq ? null : c.seq)}>
                          {open === c.seq ? "hide" : "document"}
                        </button>
                      </td>
                    </tr>
                    {open === c.seq ? (
                      <tr className="detail-row">
                        <td colSpan={6}>
                          <div className="small mono wrap">signature {c.signature}</div>
                          <Json value={c.document} />
                        </td>
                      </tr>
                    ) : null}
                  </Fragment>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
      </Section>
    </>
  );
}
