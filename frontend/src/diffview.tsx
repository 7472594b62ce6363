// react-diff-view behind `UnifiedDiff` (src/diff.tsx): a unified diff text shown side by
// side with line numbers. Loaded lazily (its own chunk). Rows that add or remove lines also
// carry `d-add` / `d-del`, the classes the plain view uses (the browser tests find them).

import { useMemo } from "react";
import { Diff, Hunk, parseDiff, type ChangeData, type ViewType } from "react-diff-view";
import "react-diff-view/style/index.css";

import { PlainDiff } from "./diff";

/** Parses a unified diff; a diff without `diff --git` headers is fine (one file). */
function parse(text: string) {
  try {
    return parseDiff(text.endsWith("\n") ? text : `${text}\n`);
  } catch {
    return null;
  }
}

function lineClass({ changes }: { changes: ChangeData[] }): string | undefined {
  const present = changes.filter(Boolean);
  const cls: string[] = [];
  if (present.some((c) => c.type === "insert")) cls.push("d-add");
  if (present.some((c) => c.type === "delete")) cls.push("d-del");
  return cls.length ? cls.join(" ") : undefined;
}

/**
 * Side-by-side (or inline) view of a unified diff. Falls back to the raw text when the diff
 * cannot be parsed, so nothing the server sent is hidden.
 */
export default function SideBySideDiff({
  text,
  viewType = "split",
  testId,
}: {
  text: string;
  viewType?: ViewType;
  testId?: string;
}) {
  const files = useMemo(() => parse(text), [text]);
  if (!files || !files.length || files.every((f) => !f.hunks.length)) return <PlainDiff text={text} testId={testId} />;
  return (
    <div className="diff-view" data-testid={testId}>
      {files.map((f, i) => (
        <div key={`${f.oldPath}-${f.newPath}-${i}`} className="diff-file">
          {f.oldPath || f.newPath ? (
            <div className="diff-file-head small muted">
              <code>{f.oldPath}</code> → <code>{f.newPath}</code>
            </div>
          ) : null}
          <Diff viewType={viewType} diffType={f.type} hunks={f.hunks} generateLineClassName={lineClass}>
            {(hunks) => hunks.map((h) => <Hunk key={h.content} hunk={h} />)}
          </Diff>
        </div>
      ))}
    </div>
  );
}
