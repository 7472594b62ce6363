// File downloads that need the bearer token (the audit bundle, the audit feed as CSV, the
// audit reports as CSV or PDF): a
// plain `<a href>` cannot send `Authorization`, so the file is fetched (with the session's
// token and one refresh on 401, like every request), held as a Blob, hashed (SHA-256, Web
// Crypto) and handed to the browser through an object URL. Query parameters are typed by the
// generated `paths`; a non-2xx answer throws the API's problem (`ApiProblem`), never a file.

import { authorizedFetch, buildUrl, problemFrom, toProblem } from "./client";
import type { paths } from "./schema";

/** The GET operations that answer a file rather than JSON. */
export type DownloadPath = "/api/v1/audit/export" | "/api/v1/audit/feed.csv" | "/api/v1/audit/reports/{kind}";

export type DownloadQuery<P extends DownloadPath> = NonNullable<NonNullable<paths[P]["get"]>["parameters"]["query"]>;

/** The path parameters of a download (none for most). */
export type DownloadPathParams<P extends DownloadPath> = NonNullable<paths[P]["get"]>["parameters"] extends { path: infer X } ? X : undefined;

export interface Downloaded {
  blob: Blob;
  /** From `Content-Disposition`, else the fallback. */
  fileName: string;
  bytes: number;
  contentType: string;
  /** SHA-256 of the bytes received, computed here (null where Web Crypto is unavailable: not a secure context). */
  sha256: string | null;
  /** The `Netledger-Bundle-Sha256` header (the bundle download), if the server sent one. */
  serverSha256: string | null;
}

/** The file name of a `Content-Disposition: attachment; filename="…"` header. */
export function dispositionFileName(header: string | null): string | null {
  if (!header) return null;
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      // fall through to the plain form
    }
  }
  const plain = /filename\s*=\s*"([^"]*)"/i.exec(header) ?? /filename\s*=\s*([^;]+)/i.exec(header);
  const name = plain?.[1].trim();
  // Only a base name: never a path the browser might be asked to honour.
  return name ? name.replace(/[/\\]/g, "_") : null;
}

/** Lowercase hex SHA-256 of the blob, or null where `crypto.subtle` is missing. */
export async function sha256Hex(blob: Blob): Promise<string | null> {
  const subtle = typeof crypto !== "undefined" ? crypto.subtle : undefined;
  if (!subtle) return null;
  const digest = await subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Fetches a file with the session's token; throws `ApiProblem` for an error answer. */
export async function fetchDownload<P extends DownloadPath>(
  path: P,
  query: DownloadQuery<P>,
  fallbackName: string,
  signal?: AbortSignal,
  pathParams?: DownloadPathParams<P>,
): Promise<Downloaded> {
  const url = buildUrl(path, (pathParams ?? undefined) as object | undefined, query as object);
  let res: Response;
  try {
    res = await authorizedFetch(url, { method: "GET", headers: { accept: "*/*" }, signal });
  } catch (e) {
    throw toProblem(e);
  }
  if (!res.ok) throw await problemFrom(res);
  let blob: Blob;
  try {
    blob = await res.blob();
  } catch (e) {
    // The body is streamed: a connection cut mid-way ends here.
    throw toProblem(e);
  }
  return {
    blob,
    fileName: dispositionFileName(res.headers.get("content-disposition")) ?? fallbackName,
    bytes: blob.size,
    contentType: res.headers.get("content-type") ?? blob.type,
    sha256: await sha256Hex(blob),
    serverSha256: res.headers.get("netledger-bundle-sha256")?.trim().toLowerCase() || null,
  };
}

/**
 * Hands a blob to the browser as a download named `fileName`. Returns the object URL (for a
 * "save again" link); revoke it with `URL.revokeObjectURL` when it is no longer shown.
 */
export function saveBlob(blob: Blob, fileName: string, url = URL.createObjectURL(blob)): string {
  const a = document.createElement("a");
  a.href = url;
  a.download = fileName;
  a.rel = "noopener";
  a.style.display = "none";
  document.body.append(a);
  a.click();
  a.remove();
  return url;
}
