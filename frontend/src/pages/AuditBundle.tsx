// Audit › Bundle download (`/audit/bundle`, audit:export): the tenant's audit bundle
// (`GET /audit/export?from=&to=`, a tar, docs/auditing.md) fetched with the session's token,
// hashed here (SHA-256, compared with the server's `Netledger-Bundle-Sha256` header) and
// saved through an object URL; then its name, size, SHA-256, what its manifest says (the
// first tar member), and the commands that verify it offline with the platform's key.

import { useEffect, useRef, useState, type FormEvent } from "react";

import { api, ApiProblem, toProblem } from "../api/client";
import { fetchDownload, saveBlob, type Downloaded } from "../api/download";
import { useResource } from "../hooks";
import { Link } from "../router";
import { Badge, Empty, Field, ProblemBox, Section, Time, formatBytes } from "../ui";

interface Manifest {
  format?: string;
  tenant_id?: string;
  created_at?: string;
  producer?: string;
  range?: { from_position?: number | null; to_position?: number | null; requested_from?: string | null; requested_to?: string | null };
  members?: { name: string; bytes: number; sha256: string }[];
}

interface FirstMember {
  name: string;
  manifest: Manifest | null;
  error: string | null;
}

/** Reads the first member of a tar archive (ustar/GNU header: name 0..100, octal size 124..136). */
async function readFirstMember(blob: Blob): Promise<FirstMember> {
  const head = new Uint8Array(await blob.slice(0, 512).arrayBuffer());
  if (head.length < 512) return { name: "", manifest: null, error: "the file is shorter than one tar header" };
  const cstr = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0)));
  const name = cstr(head.subarray(0, 100));
  const size = parseInt(cstr(head.subarray(124, 136)).trim() || "0", 8);
  if (name !== "manifest.json") return { name, manifest: null, error: `the first member is “${name}”, not manifest.json` };
  if (!Number.isFinite(size) || size <= 0 || size > 16 * 1024 * 1024) return { name, manifest: null, error: "the manifest's size is not readable" };
  try {
    const manifest = JSON.parse(await blob.slice(512, 512 + size).text()) as Manifest;
    return { name, manifest, error: null };
  } catch (e) {
    return { name, manifest: null, error: `manifest.json does not parse: ${String(e)}` };
  }
}

/** A position stays a position; a local date-time (no zone) is read in this browser's zone; anything else goes as typed. */
function normaliseBound(v: string): string | undefined {
  const s = v.trim();
  if (!s) return undefined;
  if (/^\d+$/.test(s)) return s;
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(s)) {
    const d = new Date(s.replace(" ", "T"));
    if (!Number.isNaN(d.getTime())) return d.toISOString();
  }
  return s;
}

interface Result extends Downloaded {
  url: string;
  first: FirstMember;
  requested: { from?: string; to?: string };
  at: string;
}

export function AuditBundleView() {
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<ApiProblem | null>(null);
  const [result, setResult] = useState<Result | null>(null);
  const urlRef = useRef<string | null>(null);
  const checkpoints = useResource(async () => (await api("get", "/api/v1/audit/checkpoints")).data.items, []);
  const keyIds = [...new Set((checkpoints.data ?? []).map((c) => c.key_id))];

  useEffect(
    () => () => {
      if (urlRef.current) URL.revokeObjectURL(urlRef.current);
    },
    [],
  );

  const download = async (e: FormEvent) => {
    e.preventDefault();
    setPending(true);
    setError(null);
    try {
      const requested = { from: normaliseBound(from), to: normaliseBound(to) };
      // A position goes as `from`/`to`, a time as `from_time`/`to_time`.
      const isPos = (v?: string) => v !== undefined && /^\d+$/.test(v);
      const query = {
        from: isPos(requested.from) ? Number(requested.from) : undefined,
        from_time: requested.from !== undefined && !isPos(requested.from) ? requested.from : undefined,
        to: isPos(requested.to) ? Number(requested.to) : undefined,
        to_time: requested.to !== undefined && !isPos(requested.to) ? requested.to : undefined,
      };
      const d = await fetchDownload("/api/v1/audit/export", query, "netledger-audit.nlaudit.tar");
      const first = await readFirstMember(d.blob);
      if (urlRef.current) URL.revokeObjectURL(urlRef.current);
      const url = URL.createObjectURL(d.blob);
      urlRef.current = url;
      saveBlob(d.blob, d.fileName, url);
      setResult({ ...d, url, first, requested, at: new Date().toISOString() });
    } catch (err) {
      setError(toProblem(err));
    } finally {
      setPending(false);
    }
  };

  const r = result;
  const shaOk = r && r.sha256 && r.serverSha256 ? r.sha256 === r.serverSha256 : null;
  const sha = r ? (r.sha256 ?? r.serverSha256 ?? "") : "";
  const file = r?.fileName ?? "FILE";

  return (
    <>
      <Section title="Download the audit bundle">
        <form className="inline-edit" aria-label="Audit bundle" onSubmit={(e) => void download(e)}>
          <Field label="From (optional)" hint="a position (120) or a time (2026-12-07T10:00:00Z); default: the first event">
            <input name="from" value={from} onChange={(e) => setFrom(e.target.value)} placeholder="first event" />
          </Field>
          <Field label="To (optional)" hint="a position or a time; default: the newest event">
            <input name="to" value={to} onChange={(e) => setTo(e.target.value)} placeholder="newest event" />
          </Field>
          <button type="submit" className="primary" disabled={pending}>
            {pending ? "Downloading…" : "Download bundle"}
          </button>
        </form>
        <p className="small muted">
          One tar file: the events of the range in canonical form, every signed checkpoint through it, the signing keys with their
          hand-overs, the newest checkpoint published outside the database and the configuration history as a git bundle. A bound
          is widened to the checkpoint that covers it. The download is recorded as an{" "}
          <Link to="/audit?event_type=AuditBundleExported">AuditBundleExported</Link> security event with the file's SHA-256.
        </p>
        <ProblemBox error={error} onDismiss={() => setError(null)} />
      </Section>

      {r ? (
        <Section title="Downloaded">
          <div data-testid="bundle-result" data-sha256={sha} data-bytes={r.bytes} data-file={r.fileName}>
            <dl className="facts">
              <dt>File</dt>
              <dd>
                <code data-testid="bundle-file">{r.fileName}</code>{" "}
                <a href={r.url} download={r.fileName} className="small">
                  save again
                </a>
              </dd>
              <dt>Size</dt>
              <dd data-testid="bundle-size">
                {formatBytes(r.bytes)} ({r.bytes.toLocaleString("en")} bytes)
              </dd>
              <dt>SHA-256</dt>
              <dd>
                <code className="wrap" data-testid="bundle-sha256">
                  {sha || "—"}
                </code>{" "}
                {shaOk === true ? <Badge value="succeeded" label="matches the server's" /> : null}
                {shaOk === false ? <Badge value="failed" label={`the server said ${r.serverSha256}`} /> : null}
                {!r.sha256 ? <span className="small muted"> (the server's; this browser cannot hash here: not a secure context)</span> : null}
              </dd>
              <dt>Downloaded</dt>
              <dd>
                <Time at={r.at} />
                {r.requested.from || r.requested.to ? (
                  <span className="small muted">
                    {" "}
                    asked from {r.requested.from ?? "the first event"} to {r.requested.to ?? "the newest"}
                  </span>
                ) : null}
              </dd>
              <dt>Manifest</dt>
              <dd data-testid="bundle-manifest" data-first-member={r.first.name}>
                {r.first.manifest ? (
                  <span className="small">
                    first member <code>{r.first.name}</code>: format <code>{r.first.manifest.format ?? "?"}</code>, positions{" "}
                    {r.first.manifest.range?.from_position ?? "?"}–{r.first.manifest.range?.to_position ?? "newest"},{" "}
                    {r.first.manifest.members?.length ?? 0} members (
                    {(r.first.manifest.members ?? []).map((m) => `${m.name} ${formatBytes(m.bytes)}`).join(", ")})
                  </span>
                ) : (
                  <span className="bad">{r.first.error}</span>
                )}
              </dd>
            </dl>
          </div>
        </Section>
      ) : null}

      <Section title="Verify it offline">
        <p>
          On your own machine, with no database and no network, either verifier proves the file was not altered (docs/auditing.md
          specifies the format; the verdict is the first line, <code>OK:</code> or <code>TAMPERED …</code>):
        </p>
        <pre className="code" data-testid="verify-commands">
          {r ? `sha256sum ${file}   # ${sha}\n` : ""}
          {`netledger audit verify ${file} --trusted-key <platform key>\n`}
          {`python3 tools/audit-verify.py ${file} --trusted-key <platform key>`}
        </pre>
        <p className="small">
          <strong>The platform key</strong> is the installation's audit public key (64 hex), its <code>SHA256:</code> fingerprint, or{" "}
          <code>&lt;key id&gt;=&lt;64 hex&gt;</code>: get it from the platform's operator out of band (
          <code>netledger audit public-key --all</code>), never from the bundle itself (a forger would replace the keys in it).
          {keyIds.length ? (
            <>
              {" "}
              This tenant's checkpoints are signed by key id{keyIds.length > 1 ? "s" : ""} <code>{keyIds.join(", ")}</code>.
            </>
          ) : null}
        </p>
        <ProblemBox error={checkpoints.error} />
        {!r ? <Empty>Download a bundle to see its name, size and SHA-256 here.</Empty> : null}
      </Section>
    </>
  );
}
