// The firmware cache: packages by version (`GET /firmware`) and uploads
// (`PUT /firmware/{version}/{file_name}`, raw bytes) for roles with firmware:write.

import { useState, type FormEvent } from "react";

import { api } from "../api/client";
import { useAuth } from "../auth";
import { useAction, useResource } from "../hooks";
import { Empty, Field, ProblemBox, Section, formatBytes } from "../ui";

/** `routeros-7.19.4-arm64.npk` -> `7.19.4`. */
export function versionFromFileName(name: string): string {
  const m = /(\d+\.\d+(?:\.\d+)?(?:(?:beta|rc)\d+)?)/.exec(name);
  return m ? m[1] : "";
}

export function FirmwarePage() {
  const auth = useAuth();
  const list = useResource(async () => (await api("get", "/api/v1/firmware")).data, []);
  return (
    <div className="page">
      <div className="page-head">
        <h1>Firmware cache</h1>
      </div>
      {auth.can("firmware:write") ? <Upload onDone={() => void list.reload()} /> : null}
      <Section title="Packages">
        <ProblemBox error={list.error} />
        {list.data && !list.data.items.length ? <Empty>No packages yet.</Empty> : null}
        {list.data?.items.length ? (
          <div className="table-wrap">
            <table className="table" data-testid="firmware-table">
              <thead>
                <tr>
                  <th>Version</th>
                  <th>File</th>
                  <th>Size</th>
                  <th>SHA-256</th>
                </tr>
              </thead>
              <tbody>
                {list.data.items.map((p) => (
                  <tr key={`${p.version}/${p.file_name}`}>
                    <td>{p.version}</td>
                    <td>
                      <code>{p.file_name}</code>
                    </td>
                    <td>{formatBytes(p.size)}</td>
                    <td className="mono small">{p.sha256 ?? <span className="muted">not recorded (placed by hand)</span>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
      </Section>
    </div>
  );
}

function Upload({ onDone }: { onDone: () => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [version, setVersion] = useState("");
  const [name, setName] = useState("");
  const upload = useAction(async (_key: string, v: string, n: string) => {
    if (!file) throw new Error("choose a file");
    const r = await api("put", "/api/v1/firmware/{version}/{file_name}", {
      path: { version: v, file_name: n },
      rawBody: file,
    });
    onDone();
    return r.data;
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void upload.run(version.trim(), name.trim());
  };
  return (
    <form className="card form-card" onSubmit={submit} aria-label="Upload firmware">
      <h2>Upload a package</h2>
      <div className="grid-3">
        <Field label="Package file" hint="as MikroTik names it, e.g. routeros-7.19.4-arm64.npk">
          <input
            type="file"
            accept=".npk,application/octet-stream"
            required
            onChange={(e) => {
              const f = e.target.files?.[0] ?? null;
              setFile(f);
              if (f) {
                setName(f.name);
                if (!version) setVersion(versionFromFileName(f.name));
              }
            }}
          />
        </Field>
        <Field label="RouterOS version">
          <input required value={version} placeholder="7.19.4" onChange={(e) => setVersion(e.target.value)} />
        </Field>
        <Field label="File name">
          <input required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
      </div>
      <ProblemBox error={upload.error} onDismiss={upload.clear} />
      {upload.result ? (
        <div className="notice">
          Uploaded {upload.result.package.file_name} ({formatBytes(upload.result.package.size)}), sha256{" "}
          <code>{upload.result.package.sha256}</code>
        </div>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={upload.pending || !file}>
          {upload.pending ? "Uploading…" : "Upload"}
        </button>
      </div>
    </form>
  );
}
