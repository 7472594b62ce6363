// Small shared components: problem display, times, status badges, pagers, JSON, forms, text
// to copy.

import { useEffect, useRef, useState, type ReactNode } from "react";

import { ApiProblem } from "./api/client";

/** Shows an API problem in full (title, detail, field errors, request id); never swallowed. */
export function ProblemBox({ error, onDismiss }: { error: ApiProblem | null; onDismiss?: () => void }) {
  if (!error) return null;
  const p = error.problem;
  const extra: string[] = [];
  if (p.current_version !== undefined && p.current_version !== null)
    extra.push(`current version ${p.current_version}`);
  if (p.required_permission) extra.push(`needs permission ${p.required_permission}`);
  if (p.retry_after) extra.push(`retry in ${p.retry_after}s`);
  return (
    <div className="problem" role="alert" data-problem={error.code}>
      <div className="problem-head">
        <strong>{p.title}</strong>
        {p.status ? <span className="problem-status">{p.status}</span> : null}
        {onDismiss ? (
          <button type="button" className="link" onClick={onDismiss} aria-label="Dismiss">
            ×
          </button>
        ) : null}
      </div>
      {p.detail ? <div className="problem-detail">{p.detail}</div> : null}
      {p.errors ? <pre className="problem-errors">{JSON.stringify(p.errors, null, 2)}</pre> : null}
      {extra.length || error.requestId ? (
        <div className="problem-meta">
          {extra.join(" · ")}
          {error.requestId ? `${extra.length ? " · " : ""}request ${error.requestId}` : ""}
        </div>
      ) : null}
    </div>
  );
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** `2026-11-22 10:00:05` in local time. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())}`;
}

export function relativeTime(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "never";
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  const abs = Math.abs(s);
  const suffix = s >= 0 ? "ago" : "from now";
  if (abs < 5) return "just now";
  if (abs < 60) return `${abs}s ${suffix}`;
  if (abs < 3600) return `${Math.floor(abs / 60)}m ${suffix}`;
  if (abs < 86400) return `${Math.floor(abs / 3600)}h ${suffix}`;
  return `${Math.floor(abs / 86400)}d ${suffix}`;
}

/** Re-renders every `ms` (for relative times). */
export function useTick(ms = 15_000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function Time({ at, relative = false }: { at: string | null | undefined; relative?: boolean }) {
  useTick(); // re-render now and then; the time itself is read at render
  if (!at) return <span className="muted">—</span>;
  return (
    <time dateTime={at} title={`${formatTime(at)} (${at})`}>
      {relative ? relativeTime(at, Date.now()) : formatTime(at)}
    </time>
  );
}

const TONES: Record<string, string> = {
  online: "ok",
  closed: "ok",
  succeeded: "ok",
  committed: "ok",
  completed: "ok",
  ready: "ok",
  offline: "bad",
  open: "bad",
  failed: "bad",
  halted: "bad",
  rolled_back: "warn",
  cancelled: "muted",
  unknown: "muted",
  running: "info",
  waiting: "info",
  retrying: "warn",
  paused: "warn",
  live: "ok",
  connecting: "info",
  reconnecting: "warn",
  unavailable: "bad",
  idle: "muted",
  // file access paths
  api: "ok",
  ssh: "info",
  // change requests
  draft: "muted",
  submitted: "info",
  approved: "ok",
  scheduled: "info",
  rejected: "bad",
  withdrawn: "muted",
  risk_low: "muted",
  risk_medium: "warn",
  risk_high: "bad",
};

export function Badge({ value, label }: { value: string | null | undefined; label?: string }) {
  const v = value ?? "unknown";
  return (
    <span className={`badge badge-${TONES[v] ?? "muted"}`} data-value={v}>
      {label ?? v.replace(/_/g, " ")}
    </span>
  );
}

/** The mark of a break-glass change request and of everything correlated with it. */
export function EmergencyBadge({ title }: { title?: string }) {
  return (
    <span className="badge badge-emergency" data-value="emergency" title={title}>
      EMERGENCY
    </span>
  );
}

export function Tags({ tags }: { tags: string[] }) {
  if (!tags.length) return <span className="muted">—</span>;
  return (
    <span className="tags">
      {tags.map((t) => (
        <span key={t} className="tag">
          {t}
        </span>
      ))}
    </span>
  );
}

export function LoadMore({
  hasMore,
  loading,
  onMore,
  count,
}: {
  hasMore: boolean;
  loading: boolean;
  onMore: () => void;
  count: number;
}) {
  return (
    <div className="pager">
      <span className="muted">
        {count} shown{hasMore ? "" : count ? " (all)" : ""}
      </span>
      {hasMore ? (
        <button type="button" onClick={onMore} disabled={loading}>
          {loading ? "Loading…" : "Load more"}
        </button>
      ) : null}
    </div>
  );
}

export function Json({ value }: { value: unknown }) {
  return <pre className="json">{JSON.stringify(value, null, 2)}</pre>;
}

export function Field({ label, children, hint }: { label: string; children: ReactNode; hint?: ReactNode }) {
  return (
    <label className="field">
      <span className="field-label">{label}</span>
      {children}
      {hint ? <span className="field-hint">{hint}</span> : null}
    </label>
  );
}

export function Section({
  title,
  actions,
  children,
  id,
}: {
  title: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
  id?: string;
}) {
  return (
    <section className="card" id={id}>
      <header className="card-head">
        <h2>{title}</h2>
        {actions ? <div className="card-actions">{actions}</div> : null}
      </header>
      <div className="card-body">{children}</div>
    </section>
  );
}

export function Loading({ what }: { what?: string }) {
  return <div className="loading">Loading{what ? ` ${what}` : ""}…</div>;
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Short id for display, full id on hover: a UUID's last 8 characters (our ids are time-ordered
 * v7 UUIDs, whose first characters are the same for everything made in the same minute), a
 * commit's first 8.
 */
export function ShortId({ id }: { id: string | null | undefined }) {
  if (!id) return <span className="muted">—</span>;
  return (
    <code className="id" title={id}>
      {UUID.test(id) ? `…${id.slice(-8)}` : id.slice(0, 8)}
    </code>
  );
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Converts a `datetime-local` value (local time) to RFC 3339 UTC. */
export function localToIso(v: string): string | null {
  if (!v) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** RFC 3339 to a `datetime-local` input value. */
export function isoToLocal(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())}`;
}

/** "UTC+01:00" for the browser's time zone now. */
export function timeZoneLabel(at = new Date()): string {
  const off = -at.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const abs = Math.abs(off);
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return `${zone ? `${zone}, ` : ""}UTC${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

/** A button that asks "Sure?" inline before running. */
export function ConfirmButton({
  onConfirm,
  children,
  disabled,
  danger,
  question = "Sure?",
}: {
  onConfirm: () => void;
  children: ReactNode;
  disabled?: boolean;
  danger?: boolean;
  question?: string;
}) {
  const [asking, setAsking] = useState(false);
  if (asking)
    return (
      <span className="confirm">
        <span>{question}</span>
        <button
          type="button"
          className={danger ? "danger" : "primary"}
          onClick={() => {
            setAsking(false);
            onConfirm();
          }}
        >
          Yes
        </button>
        <button type="button" onClick={() => setAsking(false)}>
          No
        </button>
      </span>
    );
  return (
    <button type="button" className={danger ? "danger" : undefined} disabled={disabled} onClick={() => setAsking(true)}>
      {children}
    </button>
  );
}

/**
 * Text to copy (a public key, a command): a read-only monospace box and a Copy button. Where
 * the clipboard cannot be written (no secure context, permission refused) the button selects
 * the text instead, for Ctrl+C.
 */
export function CopyBox({ text, label, testId }: { text: string; label: string; testId?: string }) {
  const box = useRef<HTMLPreElement>(null);
  const [done, setDone] = useState<{ text: string; how: "copied" | "selected" } | null>(null);
  useEffect(() => {
    if (!done) return;
    const t = setTimeout(() => setDone(null), 4000);
    return () => clearTimeout(t);
  }, [done]);
  const select = () => {
    const el = box.current;
    const sel = window.getSelection();
    if (!el || !sel) return;
    const range = document.createRange();
    range.selectNodeContents(el);
    sel.removeAllRanges();
    sel.addRange(range);
  };
  const copy = async () => {
    try {
      if (!navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(text);
      setDone({ text, how: "copied" });
    } catch {
      select();
      setDone({ text, how: "selected" });
    }
  };
  return (
    <div className="copy-box">
      <pre ref={box} className="copy-text mono" data-testid={testId} title={label} tabIndex={0}>
        {text}
      </pre>
      <button type="button" onClick={() => void copy()} aria-label={`Copy ${label.toLowerCase()}`}>
        Copy
      </button>
      {done && done.text === text ? (
        <span className="small muted" role="status" data-copied={done.how}>
          {done.how === "copied" ? "Copied." : "Selected: press Ctrl+C to copy."}
        </span>
      ) : null}
    </div>
  );
}
