// Unified diffs (the API's `unified` / `diff` fields: `---`/`+++` headers and `@@` hunks).
// `UnifiedDiff` shows them side by side through react-diff-view, which lives in its own
// lazily loaded chunk (src/diffview.tsx); until it has loaded (and for text it cannot
// parse) the plain coloured view shows the same lines, so nothing waits on the chunk.

import { lazy, Suspense } from "react";
import type { ViewType } from "react-diff-view";

const SideBySideDiff = lazy(() => import("./diffview"));

/** Starts loading the side-by-side viewer (call where a diff is likely to be shown). */
export function preloadDiffViewer(): void {
  void import("./diffview");
}

/** The diff as coloured lines (`d-add`, `d-del`, `d-hunk`, `d-file`). */
export function PlainDiff({ text, testId }: { text: string; testId?: string }) {
  return (
    <pre className="code diff-text" data-testid={testId}>
      {text.split("\n").map((l, i) => (
        <div
          key={i}
          className={
            l.startsWith("+++") || l.startsWith("---")
              ? "d-file"
              : l.startsWith("@@")
                ? "d-hunk"
                : l.startsWith("+")
                  ? "d-add"
                  : l.startsWith("-")
                    ? "d-del"
                    : undefined
          }
        >
          {l || " "}
        </div>
      ))}
    </pre>
  );
}

export function UnifiedDiff({ text, viewType = "split", testId }: { text: string; viewType?: ViewType; testId?: string }) {
  return (
    <Suspense fallback={<PlainDiff text={text} testId={testId} />}>
      <SideBySideDiff text={text} viewType={viewType} testId={testId} />
    </Suspense>
  );
}
