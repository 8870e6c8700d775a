import { Typography } from "antd";

/** One value per bucket as bars (no chart library); null is a gap. Each bar's title gives its
 * time and value, and the largest value labels the axis. */
export function Series({ points, format, label, color = "#0958d9", height = 90 }: {
  points: { start: string; value: number | null }[];
  format: (v: number) => string;
  label: string;
  color?: string;
  height?: number;
}) {
  const values = points.map((p) => p.value).filter((v): v is number => v !== null);
  if (!values.length) return <Typography.Text type="secondary">Nothing in this range.</Typography.Text>;
  const top = Math.max(...values) || 1;
  return (
    <div>
      <Typography.Text type="secondary" style={{ fontSize: 12 }}>max {format(top)}</Typography.Text>
      <div role="img" aria-label={label} style={{ display: "flex", alignItems: "flex-end", gap: 1, height }}>
        {points.map((p) => (
          <div key={p.start} title={`${new Date(p.start).toLocaleString()}: ${p.value === null ? "none" : format(p.value)}`}
            style={{ flex: 1, minWidth: 1, height: `${((p.value ?? 0) / top) * 100}%`, background: color }} />
        ))}
      </div>
    </div>
  );
}
