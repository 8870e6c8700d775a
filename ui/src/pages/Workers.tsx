import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Space, Table, Tag, Typography } from "antd";
import { get } from "../api";
import { StatusTag } from "../components/StatusTag";
import { Time } from "../components/Time";
import { useLiveRefresh } from "../live";
import type { Worker } from "../types";

export function Workers() {
  const client = useQueryClient();
  const workers = useQuery({
    queryKey: ["workers"],
    queryFn: () => get<Worker[] | { items: Worker[] }>("/workers"),
    // Heartbeats are not events: their age and the slots in use are read again every 2 s.
    refetchInterval: 2000,
  });
  useLiveRefresh((e) => e.data.worker_id !== undefined, () => void client.invalidateQueries({ queryKey: ["workers"] }));
  const rows = Array.isArray(workers.data) ? workers.data : (workers.data?.items ?? []);
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Typography.Title level={3} style={{ margin: 0 }}>Workers</Typography.Title>
      <Table<Worker> rowKey="id" size="small" pagination={false} dataSource={rows} loading={workers.isLoading}
        locale={{ emptyText: "No workers. Start one with `jobstream worker`." }}
        columns={[
          { title: "Worker", dataIndex: "id" },
          { title: "State", render: (_, w) => <Space><StatusTag status={w.status} />{w.draining ? <Tag>draining</Tag> : null}</Space> },
          { title: "Slots", render: (_, w) => `${w.active_jobs ?? "-"}/${w.max_concurrency}` },
          { title: "Tags", render: (_, w) => (w.tags ?? []).join(", ") },
          { title: "Executors", render: (_, w) => (w.executors ?? []).join(", ") },
          { title: "Host", render: (_, w) => w.host?.hostname ?? "" },
          { title: "Last heartbeat", dataIndex: "last_heartbeat_at", render: (t: string) => <Time at={t} /> },
        ]} />
    </Space>
  );
}
