// A small hand-made SVG time-series chart: lines (optionally with a min-max band for
// rollups), time axis over the requested range, a few y ticks, hover read-out.

import { useMemo, useState, type MouseEvent, type ReactNode } from "react";

export interface Point {
  t: number; // ms since epoch
  v: number;
  min?: number;
  max?: number;
}

export interface Series {
  name: string;
  color: string;
  points: Point[];
}

const W = 760;
const H = 200;
const PAD = { l: 56, r: 12, t: 10, b: 26 };

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

function timeLabel(t: number, span: number): string {
  const d = new Date(t);
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  if (span > 2 * 86400_000) return `${d.getMonth() + 1}/${d.getDate()} ${hm}`;
  if (span < 10 * 60_000) return `${hm}:${String(d.getSeconds()).padStart(2, "0")}`;
  return hm;
}

export function LineChart({
  series,
  from,
  to,
  format,
  yMax,
  label,
  extra,
}: {
  series: Series[];
  from: number;
  to: number;
  format: (v: number) => string;
  yMax?: number;
  label: string;
  /** Controls shown in the caption (e.g. an interface picker). */
  extra?: ReactNode;
}) {
  const [hover, setHover] = useState<number | null>(null);
  const top = useMemo(() => {
    if (yMax !== undefined) return yMax;
    let m = 0;
    for (const s of series) for (const p of s.points) m = Math.max(m, p.max ?? p.v);
    return niceMax(m);
  }, [series, yMax]);
  const span = Math.max(1, to - from);
  const x = (t: number) => PAD.l + ((t - from) / span) * (W - PAD.l - PAD.r);
  const y = (v: number) => PAD.t + (1 - Math.min(v, top) / top) * (H - PAD.t - PAD.b);
  const empty = series.every((s) => s.points.length === 0);

  const xticks = Array.from({ length: 6 }, (_, i) => from + (span * i) / 5);
  const yticks = [0, 0.25, 0.5, 0.75, 1].map((f) => top * f);

  const onMove = (e: MouseEvent<SVGSVGElement>) => {
    const rect = e.currentTarget.getBoundingClientRect();
    const px = ((e.clientX - rect.left) / rect.width) * W;
    if (px < PAD.l || px > W - PAD.r) {
      setHover(null);
      return;
    }
    setHover(from + ((px - PAD.l) / (W - PAD.l - PAD.r)) * span);
  };

  const nearest = (s: Series): Point | null => {
    if (hover === null || !s.points.length) return null;
    let best = s.points[0];
    for (const p of s.points) if (Math.abs(p.t - hover) < Math.abs(best.t - hover)) best = p;
    return best;
  };

  return (
    <figure className="chart">
      <figcaption>
        <span className="chart-title">
          {label} {extra}
        </span>
        <span className="chart-legend">
          {series.map((s) => {
            const n = nearest(s);
            return (
              <span key={s.name} className="legend-item">
                <span className="swatch" style={{ background: s.color }} />
                {s.name}
                {n ? <strong> {format(n.v)}</strong> : null}
              </span>
            );
          })}
        </span>
      </figcaption>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        className="chart-svg"
        role="img"
        aria-label={label}
        onMouseMove={onMove}
        onMouseLeave={() => setHover(null)}
      >
        {yticks.map((v) => (
          <g key={v}>
            <line x1={PAD.l} x2={W - PAD.r} y1={y(v)} y2={y(v)} className="grid" />
            {empty && yMax === undefined ? null : (
              <text x={PAD.l - 6} y={y(v) + 4} textAnchor="end" className="tick">
                {format(v)}
              </text>
            )}
          </g>
        ))}
        {xticks.map((t, i) => (
          <text
            key={t}
            x={x(t)}
            y={H - 8}
            textAnchor={i === 0 ? "start" : i === xticks.length - 1 ? "end" : "middle"}
            className="tick"
          >
            {timeLabel(t, span)}
          </text>
        ))}
        {series.map((s) => {
          const pts = s.points.filter((p) => p.t >= from && p.t <= to);
          if (!pts.length) return null;
          const band = pts.some((p) => p.min !== undefined && p.max !== undefined && p.max > p.min)
            ? pts.map((p) => `${x(p.t)},${y(p.max ?? p.v)}`).join(" ") +
              " " +
              [...pts]
                .reverse()
                .map((p) => `${x(p.t)},${y(p.min ?? p.v)}`)
                .join(" ")
            : null;
          return (
            <g key={s.name}>
              {band ? <polygon points={band} fill={s.color} opacity={0.15} /> : null}
              <polyline
                points={pts.map((p) => `${x(p.t)},${y(p.v)}`).join(" ")}
                fill="none"
                stroke={s.color}
                strokeWidth={1.6}
                strokeLinejoin="round"
              />
              {pts.length < 3 ? pts.map((p) => <circle key={p.t} cx={x(p.t)} cy={y(p.v)} r={2.5} fill={s.color} />) : null}
            </g>
          );
        })}
        {hover !== null ? <line x1={x(hover)} x2={x(hover)} y1={PAD.t} y2={H - PAD.b} className="cursor" /> : null}
        {empty ? (
          <text x={W / 2} y={H / 2} textAnchor="middle" className="tick">
            no samples in this range
          </text>
        ) : null}
      </svg>
    </figure>
  );
}
