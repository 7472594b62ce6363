// Unified diffs (the API's `unified` / `diff` fields: `---`/`+++` headers and `@@` hunks).
// `UnifiedDiff` shows them side by side through react-diff-view, which lives in its own
// lazily loaded chunk (src/diffview.tsx); until it has loaded (and for text it cannot
// parse) the plain coloured view shows the same lines, so nothing waits on the chunk.
// Not `React.lazy`: once preloaded, the viewer renders in the same pass (no Suspense
// fallback flashing for a module that is already there).

import { useEffect, useState } from "react";
import type { ViewType } from "react-diff-view";

type Viewer = typeof import("./diffview").default;

let viewer: Viewer | null = null;
let loading: Promise<Viewer> | null = null;

function loadViewer(): Promise<Viewer> {
  loading ??= import("./diffview").then((m) => (viewer = m.default));
  return loading;
}

/** Starts loading the side-by-side viewer (call where a diff is likely to be shown). */
export function preloadDiffViewer(): void {
  void loadViewer().catch(() => {
    loading = null; // a failed chunk load is retried next time; the plain view stays
  });
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
  const [View, setView] = useState<Viewer | null>(() => viewer);
  useEffect(() => {
    if (View) return;
    let live = true;
    loadViewer()
      .then((v) => {
        if (live) setView(() => v);
      })
      .catch(() => {
        loading = null;
      });
    return () => {
      live = false;
    };
  }, [View]);
  return View ? <View text={text} viewType={viewType} testId={testId} /> : <PlainDiff text={text} testId={testId} />;
}
