// Audit › Verification (`/audit/verification`): "Verify history now" (`GET /audit/verify`:
// every hash chain of the tenant and every signed checkpoint; the run is itself recorded as
// an `AuditVerificationRun` security event) with its verdict in plain words, and the signed
// checkpoints (`GET /audit/checkpoints`) with their documents.

import { Fragment, useState } from "react";

import { api } from "../api/client";
import { useAction, useResource } from "../hooks";
import { Badge, Empty, Json, ProblemBox, Section, Time } from "../ui";

export function AuditVerifyView() {
  const list = useResource(async () => (await api("get", "/api/v1/audit/checkpoints")).data, []);
  const verify = useAction(async () => {
    const r = (await api("get", "/api/v1/audit/verify")).data;
    return { ...r, verifiedAt: new Date().toISOString() };
  });
  const [open, setOpen] = useState<number | null>(null);
  const v = verify.result;
  const checkpoints = list.data?.items ?? [];
  const keyIds = [...new Set(checkpoints.map((c) => c.key_id))];
  const unsigned = v ? Math.max(0, v.last_position - v.signed_through) : 0;

  return (
    <>
      <Section
        title="Verification"
        actions={
          <button
            type="button"
            className="primary"
            disabled={verify.pending}
            onClick={() => {
              void verify.run().then(() => list.reload());
            }}
          >
            {verify.pending ? "Verifying…" : "Verify history now"}
          </button>
        }
      >
        <ProblemBox error={verify.error} />
        {v ? (
          <div
            className={v.ok ? "verdict verdict-ok" : "verdict verdict-bad"}
            data-testid="verify-result"
            data-ok={v.ok}
            data-signed-through={v.signed_through}
            data-problem-position={v.problem_position ?? ""}
          >
            <div className="verdict-head">
              <Badge value={v.ok ? "succeeded" : "failed"} label={v.ok ? "OK" : "PROBLEM FOUND"} />{" "}
              <strong>{v.ok ? "The history verifies." : "The history does not verify."}</strong>{" "}
              <span className="small muted">
                run <Time at={v.verifiedAt} />
              </span>
            </div>
            {v.ok ? (
              <p>
                {v.events} events and {v.checkpoints} checkpoints checked; <strong>signed through position {v.signed_through}</strong> of{" "}
                {v.last_position}.{" "}
                {unsigned
                  ? `Events after position ${v.signed_through} are hash-chained but not signed yet (the next checkpoint covers them).`
                  : "Every event is covered by a signed checkpoint."}{" "}
                {v.signatures_checked ? "Signatures checked." : <strong>Signatures not checked (the API has no public key).</strong>}
              </p>
            ) : (
              <div className="problem" role="alert">
                <div className="problem-head">
                  <strong>At position {v.problem_position ?? "?"}</strong>
                </div>
                <div className="problem-detail">{v.problem ?? "unspecified problem"}</div>
                <div className="problem-meta">
                  {v.events} events and {v.checkpoints} checkpoints checked; signed through position {v.signed_through} of{" "}
                  {v.last_position}. Nothing after the first problem is vouched for.
                </div>
              </div>
            )}
            <p className="small muted">
              This checks the history the API reads from PostgreSQL. To prove it independently, download the bundle and verify it
              offline with the platform's public key (Bundle download).
            </p>
          </div>
        ) : (
          <Empty>
            Recomputes the hash chain of every event of your tenant and checks each signed checkpoint (range, digest, signature).
            The run is recorded as an AuditVerificationRun security event.
          </Empty>
        )}
      </Section>
      <Section
        title={`Signed checkpoints${list.data ? ` (${checkpoints.length})` : ""}`}
        actions={keyIds.length ? <span className="small muted">signing key{keyIds.length > 1 ? "s" : ""}: {keyIds.join(", ")}</span> : null}
      >
        <ProblemBox error={list.error} />
        {list.data && !checkpoints.length ? <Empty>No checkpoints yet (written periodically).</Empty> : null}
        {checkpoints.length ? (
          <div className="table-wrap">
            <table className="table" data-testid="checkpoint-table">
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
                {checkpoints.map((c) => (
                  <Fragment key={c.seq}>
                    <tr data-seq={c.seq}>
                      <td>{c.seq}</td>
                      <td>
                        {c.from_position}–{c.to_position}
                      </td>
                      <td>{c.event_count}</td>
                      <td className="mono small" title={c.digest}>
                        {c.digest.slice(0, 24)}…
                      </td>
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
