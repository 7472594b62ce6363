// Audit › Reports (`/audit/reports`, audit:read): the auditors' reports for a time range
// (`GET /audit/reports/{kind}?from=&to=&format=`, docs/auditing.md §11) — the change log (what
// changed on which device, when, by whom, under which change request and approvals), the
// device inventory as of the range's end and the audit verification report — downloaded as
// CSV or PDF with the session's token.

import { useState } from "react";

import { ApiProblem, toProblem } from "../api/client";
import { fetchDownload, saveBlob, type Downloaded } from "../api/download";
import { Empty, Field, ProblemBox, Section, formatBytes } from "../ui";

type Kind = "change-log" | "inventory" | "verification";
type Format = "csv" | "pdf";

const KINDS: { kind: Kind; label: string; about: string }[] = [
  {
    kind: "change-log",
    label: "Change log",
    about: "every config change of a device in the range: when, which device, push, drift or backup, the commit, who, the change request, its author and approvers",
  },
  { kind: "inventory", label: "Device inventory", about: "the fleet as of the range's end (default now), from the events" },
  {
    kind: "verification",
    label: "Audit verification",
    about: "the history verified now (hash chains and signed checkpoints) and the checkpoints of the range",
  },
];

/** A local date-time input (no zone) read in this browser's zone, as RFC 3339. */
function toRfc3339(v: string): string | undefined {
  if (!v.trim()) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? v : d.toISOString();
}

export function AuditReportsView() {
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [pending, setPending] = useState<string | null>(null);
  const [error, setError] = useState<ApiProblem | null>(null);
  const [last, setLast] = useState<(Downloaded & { kind: Kind; format: Format }) | null>(null);

  const download = async (kind: Kind, format: Format) => {
    setPending(`${kind}.${format}`);
    setError(null);
    try {
      const d = await fetchDownload(
        "/api/v1/audit/reports/{kind}",
        { from: toRfc3339(from), to: toRfc3339(to), format },
        `netledger-${kind}.${format}`,
        undefined,
        { kind },
      );
      saveBlob(d.blob, d.fileName);
      setLast({ ...d, kind, format });
    } catch (err) {
      setError(toProblem(err));
    } finally {
      setPending(null);
    }
  };

  return (
    <>
      <Section title="Reports">
        <form className="inline-edit" aria-label="Report range" onSubmit={(e) => e.preventDefault()}>
          <Field label="From (optional)" hint="default: the first event">
            <input type="datetime-local" step="1" name="from" value={from} onChange={(e) => setFrom(e.target.value)} />
          </Field>
          <Field label="To (optional)" hint="default: now">
            <input type="datetime-local" step="1" name="to" value={to} onChange={(e) => setTo(e.target.value)} />
          </Field>
        </form>
        <table className="table" data-testid="reports">
          <tbody>
            {KINDS.map((k) => (
              <tr key={k.kind} data-kind={k.kind}>
                <td>
                  <strong>{k.label}</strong>
                  <div className="small muted">{k.about}</div>
                </td>
                {(["csv", "pdf"] as Format[]).map((f) => (
                  <td key={f}>
                    <button type="button" disabled={pending !== null} onClick={() => void download(k.kind, f)}>
                      {pending === `${k.kind}.${f}` ? "Preparing…" : f.toUpperCase()}
                    </button>
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
        <ProblemBox error={error} onDismiss={() => setError(null)} />
        {last ? (
          <p className="small" data-testid="report-result" data-file={last.fileName} data-bytes={last.bytes} data-type={last.contentType}>
            Downloaded <code>{last.fileName}</code> ({formatBytes(last.bytes)}, {last.contentType}
            {last.sha256 ? <>, SHA-256 <code className="wrap">{last.sha256}</code></> : null}).
          </p>
        ) : (
          <Empty>Pick a range (or none) and a report.</Empty>
        )}
      </Section>
    </>
  );
}
