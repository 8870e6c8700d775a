import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Card, Col, Row, Space, Statistic, Table, Typography } from "antd";
import { Link } from "react-router";
import { get } from "../api";
import { Bars, type Bucket } from "../components/Bars";
import { Time } from "../components/Time";
import { STATUSES } from "../filters";
import { useLiveRefresh } from "../live";
import type { Worker } from "../types";

interface Counts {
  total: number;
  counts?: { status: string; count: number }[];
}
interface Failing {
  items: { name: string; failures: number; finished: number; failure_rate: number | null; last_failure_at: string | null }[];
}
interface Lateness {
  items: { schedule_id: string; name?: string; fired: number; missed: number; skipped: number; lateness_p99_s?: number | null; [k: string]: unknown }[];
}

/** The domain at a glance, refreshed as events arrive: jobs by status, runs over the last
 * hours, what fails, the fleet, and schedules that miss or run late. */
export function Overview() {
  const client = useQueryClient();
  const counts = useQuery({ queryKey: ["overview", "counts"], queryFn: () => get<Counts>("/jobs/count", { group_by: "status" }) });
  const runs = useQuery({ queryKey: ["overview", "runs"], queryFn: () => get<{ buckets: Bucket[] }>("/analytics/runs", { interval: "5m", since: new Date(Date.now() - 6 * 3600e3).toISOString() }) });
  const failing = useQuery({ queryKey: ["overview", "failing"], queryFn: () => get<Failing>("/analytics/failing", { limit: 5 }) });
  const workers = useQuery({ queryKey: ["overview", "workers"], queryFn: () => get<Worker[]>("/workers"), refetchInterval: 5000 });
  const late = useQuery({ queryKey: ["overview", "schedules"], queryFn: () => get<Lateness>("/analytics/schedules", { limit: 10 }) });
  useLiveRefresh((e) => e.data.job_id !== undefined || e.data.schedule_id !== undefined, () => void client.invalidateQueries({ queryKey: ["overview"] }), 1000);
  const by = new Map((counts.data?.counts ?? []).map((c) => [c.status, c.count]));
  const fleet = Array.isArray(workers.data) ? workers.data : [];
  const busy = fleet.filter((w) => (w.active_jobs ?? 0) > 0).length;
  return (
    <Space orientation="vertical" style={{ width: "100%" }} size="middle">
      <Typography.Title level={3} style={{ margin: 0 }}>Overview</Typography.Title>
      <Row gutter={[12, 12]}>
        <Col><Card size="small"><Statistic title="jobs" value={counts.data?.total ?? 0} /></Card></Col>
        {STATUSES.map((s) => (
          <Col key={s}>
            <Link to={`/jobs?status=${s}`}>
              <Card size="small" hoverable><Statistic title={s} value={by.get(s) ?? 0} /></Card>
            </Link>
          </Col>
        ))}
        <Col><Link to="/workers"><Card size="small" hoverable><Statistic title="workers busy / live" value={`${busy} / ${fleet.filter((w) => w.status === "active").length}`} /></Card></Link></Col>
      </Row>
      <Card size="small" title="Runs over the last 6 hours, by status (5 minute buckets)">
        <Bars buckets={runs.data?.buckets ?? []} />
      </Card>
      <Row gutter={12}>
        <Col span={12}>
          <Card size="small" title="Failing most (24 h)">
            <Table size="small" pagination={false} rowKey="name" dataSource={failing.data?.items ?? []} locale={{ emptyText: "Nothing failed in the last 24 hours." }}
              columns={[
                { title: "Job name", dataIndex: "name", render: (n: string) => <Link to={`/jobs?name=${encodeURIComponent(n)}&status=failed,timed_out,lost`}>{n}</Link> },
                { title: "Failures", dataIndex: "failures" },
                { title: "Rate", dataIndex: "failure_rate", render: (r: number | null) => (r === null ? "" : `${(r * 100).toFixed(0)}%`) },
                { title: "Last", dataIndex: "last_failure_at", render: (t: string) => <Time at={t} /> },
              ]} />
          </Card>
        </Col>
        <Col span={12}>
          <Card size="small" title="Schedules (24 h): ticks fired, missed, skipped">
            <Table size="small" pagination={false} rowKey="schedule_id" dataSource={late.data?.items ?? []} locale={{ emptyText: "No schedule ticked in the last 24 hours." }}
              columns={[
                { title: "Schedule", dataIndex: "schedule_id", render: (id: string, r) => <Link to={`/schedules/${id}`}>{String(r.name ?? id)}</Link> },
                { title: "Fired", dataIndex: "fired" },
                { title: "Missed", dataIndex: "missed" },
                { title: "Skipped", dataIndex: "skipped" },
                { title: "Late p99", dataIndex: "lateness_p99_s", render: (l: number | null) => (l == null ? "" : `${(l * 1000).toFixed(0)} ms`) },
              ]} />
          </Card>
        </Col>
      </Row>
    </Space>
  );
}
