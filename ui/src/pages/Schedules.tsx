import { useQuery, useQueryClient } from "@tanstack/react-query";
import { App, Button, Space, Table, Tag, Typography } from "antd";
import { get, post } from "../api";
import { Time } from "../components/Time";
import { useLiveRefresh } from "../live";
import type { Schedule } from "../types";

export function Schedules() {
  const client = useQueryClient();
  const { message } = App.useApp();
  const schedules = useQuery({
    queryKey: ["schedules"],
    queryFn: () => get<Schedule[] | { items: Schedule[] }>("/schedules"),
  });
  useLiveRefresh((e) => e.data.schedule_id !== undefined, () => void client.invalidateQueries({ queryKey: ["schedules"] }));
  const rows = Array.isArray(schedules.data) ? schedules.data : (schedules.data?.items ?? []);
  const act = async (s: Schedule, what: string) => {
    try {
      await post(`/schedules/${s.id}/${what}`);
      message.success(`${s.name}: ${what}`);
      void client.invalidateQueries({ queryKey: ["schedules"] });
    } catch (err) {
      message.error(String(err instanceof Error ? err.message : err));
    }
  };
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Typography.Title level={3} style={{ margin: 0 }}>Schedules</Typography.Title>
      <Table<Schedule> rowKey="id" size="small" pagination={false} dataSource={rows} loading={schedules.isLoading}
        locale={{ emptyText: "No schedules. Create one with `jobstream schedules create` or POST /api/v1/schedules." }}
        columns={[
          { title: "Name", dataIndex: "name" },
          { title: "State", render: (_, s) => (s.paused ? <Tag>paused</Tag> : <Tag color="success">active</Tag>) },
          { title: "Next fire", dataIndex: "next_fire_at", render: (t: string) => <Time at={t} /> },
          { title: "Last fire", dataIndex: "last_fire_at", render: (t: string) => <Time at={t} /> },
          {
            title: "",
            render: (_, s) => (
              <Space>
                <Button size="small" onClick={() => void act(s, "run-now")}>Run now</Button>
                <Button size="small" onClick={() => void act(s, s.paused ? "resume" : "pause")}>{s.paused ? "Resume" : "Pause"}</Button>
              </Space>
            ),
          },
        ]} />
    </Space>
  );
}
