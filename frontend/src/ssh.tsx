// A device's SSH access (issue 17): the form fields shared by the registration form and the
// device page's edit, the host key fingerprint's client-side check, and the fingerprint's
// display. SSH carries the file jobs the binary API cannot do on RouterOS 6 and 7.0-7.12
// (exports of any size, backup downloads, change-script and firmware uploads); it logs in as
// the API's user, with the password or with an SSH private key given with the credentials
// (`SshKeyField`, shared by the registration form and the device page's credentials form).

import type { ReactNode } from "react";

import type { ApiProblem, Schemas } from "./api/client";
import { Field } from "./ui";

type SshAccess = Schemas["SshAccessDto"];

export type SshTrust = "pinned" | "first_use";

/** The SSH part of a form, as typed. */
export interface SshForm {
  enabled: boolean;
  port: string;
  trust: SshTrust;
  fingerprint: string;
}

export const NO_SSH: SshForm = { enabled: false, port: "22", trust: "pinned", fingerprint: "" };

/** The form for a device's current SSH access (the fingerprint in its OpenSSH form). */
export function sshFormFrom(ssh: SshAccess | null | undefined): SshForm {
  if (!ssh) return { ...NO_SSH, enabled: true };
  const hex = ssh.host_key_sha256 ?? null;
  return {
    enabled: true,
    port: String(ssh.port),
    trust: ssh.trust === "first_use" || !hex ? "first_use" : "pinned",
    fingerprint: hex ? openSshFingerprint(hex) : "",
  };
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * A host key fingerprint as typed or pasted, normalised to what the API takes: `SHA256:` and
 * 43 base64 characters (also found inside a whole `ssh-keygen -lf` line such as
 * `256 SHA256:… root@router (ED25519)`), or 64 hex digits (colons allowed between pairs).
 * `error` says what is wrong otherwise.
 */
export function parseSshFingerprint(input: string): { value: string } | { error: string } {
  const t = input.trim();
  if (!t) return { error: "Give the host key's SHA-256 fingerprint, or choose trust on first use." };
  const token = /(?:^|\s)(SHA256:\S*)/.exec(t)?.[1];
  if (token) {
    const b64 = token.slice("SHA256:".length).replace(/=$/, "");
    // 43 characters are 258 bits: the last one carries 2 bits beyond the 32 bytes, which are 0.
    const last = B64.indexOf(b64.charAt(42));
    if (/^[A-Za-z0-9+/]{43}$/.test(b64)) {
      if (last % 4 === 0) return { value: `SHA256:${b64}` };
      return { error: `"${token}" cannot be a SHA-256 fingerprint: its last character is wrong (copied in full?).` };
    }
    return {
      error: `"${token.slice(0, 60)}" is not a SHA-256 fingerprint: after "SHA256:" come 43 base64 characters, as ssh-keygen -lf prints them.`,
    };
  }
  const hex = t.replace(/:/g, "");
  if (/^[0-9A-Fa-f]{64}$/.test(hex)) return { value: hex.toLowerCase() };
  if (/^[0-9A-Fa-f]+$/.test(hex))
    return { error: `${hex.length} hex digits: a SHA-256 fingerprint has 64.` };
  return {
    error: 'Not a SHA-256 fingerprint: give the "SHA256:…" form ssh-keygen -lf prints, or 64 hex digits.',
  };
}

function portProblem(port: string): string | null {
  const n = Number(port || "22");
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? null : "The SSH port is 1-65535.";
}

/** What is wrong with the SSH part of a form (null when it can be sent). */
export function sshFormProblem(f: SshForm): string | null {
  if (!f.enabled) return null;
  const port = portProblem(f.port);
  if (port) return port;
  if (f.trust === "pinned") {
    const fp = parseSshFingerprint(f.fingerprint);
    if ("error" in fp) return fp.error;
  }
  return null;
}

/** The API's `SshInput` for the form (null when SSH is not enabled); check `sshFormProblem` first. */
export function sshInputOf(f: SshForm): Schemas["SshInput"] | null {
  if (!f.enabled) return null;
  const port = f.port ? Number(f.port) : 22;
  if (f.trust === "first_use") return { port, trust_on_first_use: true };
  const fp = parseSshFingerprint(f.fingerprint);
  return { port, host_key_sha256: "value" in fp ? fp.value : f.fingerprint.trim() };
}

/** Lowercase hex SHA-256 (as the API returns it) in OpenSSH's form, `SHA256:` + base64 without padding. */
export function openSshFingerprint(hex: string): string {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return hex;
  let bin = "";
  for (let i = 0; i < 64; i += 2) bin += String.fromCharCode(parseInt(hex.slice(i, i + 2), 16));
  return `SHA256:${btoa(bin).replace(/=+$/, "")}`;
}

/**
 * The SSH fields: an "Enable SSH access" box when `optional` (registration), then port and
 * host key trust: pin a fingerprint, or trust the first connection's key. `showErrors`
 * shows the fingerprint's problem even before anything was typed (after a refused submit).
 */
export function SshFields({
  value,
  onChange,
  optional,
  showErrors,
}: {
  value: SshForm;
  onChange: (f: SshForm) => void;
  optional?: boolean;
  showErrors?: boolean;
}) {
  const set = (patch: Partial<SshForm>) => onChange({ ...value, ...patch });
  const fp = value.trust === "pinned" ? parseSshFingerprint(value.fingerprint) : null;
  const fpError = fp && "error" in fp && (showErrors || value.fingerprint.trim()) ? fp.error : null;
  const portError = showErrors ? portProblem(value.port) : null;
  return (
    <fieldset className="ssh-fields" data-testid="ssh-fields">
      <legend>SSH access{optional ? " (optional)" : ""}</legend>
      <p className="small muted">
        For the file jobs the API cannot do on RouterOS 6 and 7.0–7.12: exports of any size, backup downloads,
        change-script and firmware uploads (without it, config pushes are refused there and backups stay on the device
        only). SSH logs in as the API user, with its password or with the SSH private key given with the credentials;
        its group needs the <code>ssh</code> and <code>ftp</code> policies.
      </p>
      {optional ? (
        <label className="check">
          <input type="checkbox" checked={value.enabled} onChange={(e) => set({ enabled: e.target.checked })} />
          Enable SSH access
        </label>
      ) : null}
      {value.enabled ? (
        <>
          <div className="grid-3">
            <Field label="SSH port" hint="default 22">
              <input
                type="number"
                name="ssh_port"
                min={1}
                max={65535}
                placeholder="22"
                value={value.port}
                onChange={(e) => set({ port: e.target.value })}
              />
              {portError ? <span className="field-error">{portError}</span> : null}
            </Field>
          </div>
          <div className="radio-row" role="radiogroup" aria-label="Host key trust">
            <label className="check">
              <input
                type="radio"
                name="ssh_trust"
                value="pinned"
                checked={value.trust === "pinned"}
                onChange={() => set({ trust: "pinned" })}
              />
              Pin host key
            </label>
            <label className="check">
              <input
                type="radio"
                name="ssh_trust"
                value="first_use"
                checked={value.trust === "first_use"}
                onChange={() => set({ trust: "first_use" })}
              />
              Trust on first use
            </label>
          </div>
          {value.trust === "pinned" ? (
            <Field
              label="Host key fingerprint"
              hint={
                <>
                  <code>SHA256:…</code> as <code>ssh-keygen -lf</code> prints it (on a copy of the router's public host
                  key), or 64 hex digits
                </>
              }
            >
              <input
                name="ssh_fingerprint"
                className="mono"
                spellCheck={false}
                autoComplete="off"
                placeholder="SHA256:…"
                aria-invalid={fpError ? true : undefined}
                value={value.fingerprint}
                onChange={(e) => set({ fingerprint: e.target.value })}
              />
              {fpError ? (
                <span className="field-error" data-testid="ssh-fingerprint-error">
                  {fpError}
                </span>
              ) : null}
            </Field>
          ) : (
            <p className="warn-note small" data-testid="tofu-warning">
              Trust on first use: the host key the device presents on the first SSH connection is recorded and pinned
              without a check. Someone who can intercept that connection gets their key pinned instead; pin the real
              fingerprint when you can.
            </p>
          )}
        </>
      ) : null}
    </fieldset>
  );
}

/** The longest SSH private key the API takes, in bytes. */
export const MAX_SSH_KEY_BYTES = 32768;

/** The `ssh_private_key` to send for the typed text: only when something was typed. */
export function sshPrivateKeyOf(text: string): string | undefined {
  return text.trim() ? text : undefined;
}

/** Whether a problem from the API is about the `ssh_private_key` (its detail names it first). */
export function isSshKeyProblem(error: ApiProblem | null): boolean {
  return !!error && error.status === 422 && /^ssh_private_key\b/.test(error.problem.detail ?? "");
}

/**
 * The optional SSH private key of a device's credentials (write-only): a monospace textarea.
 * Checked by the API (a public key, a passphrase-protected or unreadable key is a 422 whose
 * detail says what to give instead); here only its size. `note` goes under the field (the
 * credentials form says what saving without a key does).
 */
export function SshKeyField({
  value,
  onChange,
  invalid,
  note,
}: {
  value: string;
  onChange: (v: string) => void;
  invalid?: boolean;
  note?: ReactNode;
}) {
  const bytes = new TextEncoder().encode(value).length;
  const tooLong = bytes > MAX_SSH_KEY_BYTES;
  return (
    <div className="ssh-key-field" data-testid="ssh-key-field">
      <Field
        label="SSH private key (optional)"
        hint={
          <>
            Logs in over SSH with this key instead of the password; import its public key for the user on the device (
            <code>/user ssh-keys import</code>). Unencrypted OpenSSH, PKCS#8 or PKCS#1 PEM. Stored encrypted, never
            shown again.
          </>
        }
      >
        <textarea
          name="ssh_private_key"
          className="mono"
          rows={value ? 6 : 3}
          spellCheck={false}
          autoComplete="off"
          autoCapitalize="off"
          placeholder={"-----BEGIN OPENSSH PRIVATE KEY-----\n…\n-----END OPENSSH PRIVATE KEY-----"}
          aria-invalid={invalid || tooLong ? true : undefined}
          value={value}
          onChange={(e) => onChange(e.target.value)}
        />
        {tooLong ? (
          <span className="field-error">
            {bytes} bytes: the API takes a key of at most {MAX_SSH_KEY_BYTES} bytes.
          </span>
        ) : null}
      </Field>
      {note}
    </div>
  );
}
