import { Typography } from "antd";
import { STATUS_COLOR } from "../format";

export interface Bucket {
  start: string;
  total: number;
  by_status: Record<string, number>;
}

const COLOR: Record<string, string> = {
  success: "#52c41a", error: "#ff4d4f", warning: "#faad14", processing: "#1677ff", default: "#bfbfbf",
};

/** Runs per bucket as stacked bars by status, drawn with plain elements (no chart library):
 * a bar's title says its time and counts. */
export function Bars({ buckets, height = 120 }: { buckets: Bucket[]; height?: number }) {
  const top = Math.max(1, ...buckets.map((b) => b.total));
  if (!buckets.length) return <Typography.Text type="secondary">No runs in this range.</Typography.Text>;
  return (
    <div role="img" aria-label="runs over time by status" style={{ display: "flex", alignItems: "flex-end", gap: 1, height }}>
      {buckets.map((b) => (
        <div key={b.start} title={`${new Date(b.start).toLocaleString()}: ${Object.entries(b.by_status).map(([s, n]) => `${n} ${s}`).join(", ") || "none"}`}
          style={{ flex: 1, display: "flex", flexDirection: "column-reverse", height: `${(b.total / top) * 100}%`, minWidth: 2 }}>
          {Object.entries(b.by_status).map(([s, n]) => (
            <div key={s} style={{ flex: n, background: COLOR[STATUS_COLOR[s] ?? "default"] }} />
          ))}
        </div>
      ))}
    </div>
  );
}
