import { useQuery } from "@tanstack/react-query";
import { Card, Col, Row, Segmented, Space, Table, Typography } from "antd";
import { useSearchParams } from "react-router";
import { get } from "../api";
import { Bars, type Bucket } from "../components/Bars";
import { Series } from "../components/Series";

// A range and the bucket width that gives it 48 - 288 bars.
export const RANGES: Record<string, { hours: number; interval: string }> = {
  "1h": { hours: 1, interval: "1m" },
  "6h": { hours: 6, interval: "5m" },
  "24h": { hours: 24, interval: "15m" },
  "7d": { hours: 168, interval: "1h" },
};

export function seconds(v: number): string {
  return v < 1 ? `${(v * 1000).toFixed(0)} ms` : v < 120 ? `${v.toFixed(1)} s` : `${(v / 60).toFixed(1)} min`;
}

interface Durations {
  items: { name: string; runs: number; finished: number; success_rate: number | null; duration_p50_s: number | null; duration_p90_s: number | null; duration_p99_s: number | null }[];
}
interface Waits { buckets: { start: string; runs: number; p50_s: number | null; p99_s: number | null }[] }
interface Use { buckets: { start: string; busy_slots: number; capacity: number; utilisation: number | null }[] }
interface Lateness { items: { schedule_id: string; name: string; fired: number; skipped: number; missed: number; lateness_p50_s: number | null; lateness_p99_s: number | null }[] }

/** The analytics endpoints over a chosen range, kept in the URL (`?range=24h`). */
export function Analytics() {
  const [search, setSearch] = useSearchParams();
  const range = RANGES[search.get("range") ?? ""] ? (search.get("range") as string) : "24h";
  const { hours, interval } = RANGES[range];
  const params = { since: new Date(Date.now() - hours * 3600e3).toISOString(), interval };
  const key = (name: string) => ["analytics", name, range];
  const runs = useQuery({ queryKey: key("runs"), queryFn: () => get<{ buckets: Bucket[] }>("/analytics/runs", params) });
  const durations = useQuery({ queryKey: key("durations"), queryFn: () => get<Durations>("/analytics/durations", { since: params.since, group_by: "name", limit: 50 }) });
  const waits = useQuery({ queryKey: key("waits"), queryFn: () => get<Waits>("/analytics/queue-wait", params) });
  const use = useQuery({ queryKey: key("use"), queryFn: () => get<Use>("/analytics/utilisation", params) });
  const late = useQuery({ queryKey: key("late"), queryFn: () => get<Lateness>("/analytics/schedules", { since: params.since }) });
  const pct = (v: number | null) => (v === null ? "" : `${(v * 100).toFixed(1)}%`);
  const s = (v: number | null) => (v === null ? "" : seconds(v));
  return (
    <Space orientation="vertical" style={{ width: "100%" }} size="middle">
      <Space>
        <Typography.Title level={3} style={{ margin: 0 }}>Analytics</Typography.Title>
        <Segmented aria-label="range" value={range} options={Object.keys(RANGES)} onChange={(v) => setSearch({ range: String(v) })} />
      </Space>
      <Card size="small" title={`Runs by status (${interval} buckets)`}><Bars buckets={runs.data?.buckets ?? []} /></Card>
      <Row gutter={12}>
        <Col span={12}>
          <Card size="small" title="Queue wait p99 (submitted or requeued → dispatched)">
            <Series label="queue wait p99 over time" points={(waits.data?.buckets ?? []).map((b) => ({ start: b.start, value: b.p99_s }))} format={seconds} />
          </Card>
        </Col>
        <Col span={12}>
          <Card size="small" title="Worker utilisation (busy slots / slots offered)">
            <Series label="worker utilisation over time" color="#2b7a0b" points={(use.data?.buckets ?? []).map((b) => ({ start: b.start, value: b.utilisation }))} format={(v) => `${(v * 100).toFixed(v < 0.1 ? 2 : 0)}%`} />
          </Card>
        </Col>
      </Row>
      <Card size="small" title="Per job name: success rate and duration">
        <Table size="small" pagination={false} rowKey="name" dataSource={durations.data?.items ?? []} locale={{ emptyText: "No runs in this range." }}
          columns={[
            { title: "Job name", dataIndex: "name" },
            { title: "Runs", dataIndex: "runs" },
            { title: "Success", dataIndex: "success_rate", render: pct },
            { title: "p50", dataIndex: "duration_p50_s", render: s },
            { title: "p90", dataIndex: "duration_p90_s", render: s },
            { title: "p99", dataIndex: "duration_p99_s", render: s },
          ]} />
      </Card>
      <Card size="small" title="Schedules: ticks and lateness">
        <Table size="small" pagination={false} rowKey="schedule_id" dataSource={late.data?.items ?? []} locale={{ emptyText: "No ticks in this range." }}
          columns={[
            { title: "Schedule", dataIndex: "name" },
            { title: "Fired", dataIndex: "fired" },
            { title: "Skipped", dataIndex: "skipped" },
            { title: "Missed", dataIndex: "missed" },
            { title: "Late p50", dataIndex: "lateness_p50_s", render: s },
            { title: "Late p99", dataIndex: "lateness_p99_s", render: s },
          ]} />
      </Card>
    </Space>
  );
}
