// The script editor: CodeMirror 6 (`codemirror`'s basicSetup: line numbers, history,
// bracket matching, search, active line) in a small controlled React wrapper. Loaded lazily
// (`React.lazy`) by the pages that edit scripts, so the fleet and device pages do not ship it.

import { useEffect, useRef, type CSSProperties } from "react";
import { basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { EditorView, placeholder as placeholderExt } from "@codemirror/view";

export interface ScriptEditorProps {
  value: string;
  onChange: (value: string) => void;
  /** Accessible name of the editing surface. */
  label: string;
  placeholder?: string;
  readOnly?: boolean;
  minHeight?: string;
}

const theme = EditorView.theme({
  "&": { fontSize: "13px", border: "1px solid var(--line)", borderRadius: "var(--radius)", background: "var(--panel)" },
  ".cm-content, .cm-gutter": { minHeight: "var(--cm-min-height, 12em)" },
  ".cm-scroller": { fontFamily: "var(--mono)", maxHeight: "32em" },
  "&.cm-focused": { outline: "2px solid var(--brand-2)" },
});

export default function ScriptEditor({ value, onChange, label, placeholder, readOnly = false, minHeight }: ScriptEditorProps) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;

  useEffect(() => {
    if (!host.current) return;
    const v = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: value,
        extensions: [
          basicSetup,
          theme,
          EditorView.lineWrapping,
          EditorState.readOnly.of(readOnly),
          EditorView.editable.of(!readOnly),
          EditorView.contentAttributes.of({ "aria-label": label, "data-testid": "script-editor" }),
          placeholder ? placeholderExt(placeholder) : [],
          EditorView.updateListener.of((u) => {
            if (u.docChanged) onChangeRef.current(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    return () => {
      v.destroy();
      view.current = null;
    };
    // The editor is created once per mount; `value` is synced below.
  }, [readOnly, label, placeholder]);

  // A value set from outside (a reset, a loaded request) replaces the document.
  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== value) {
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } });
    }
  }, [value]);

  return <div ref={host} className="script-editor" style={minHeight ? ({ "--cm-min-height": minHeight } as CSSProperties) : undefined} />;
}
