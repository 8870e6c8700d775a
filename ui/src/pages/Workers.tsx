import { useQuery, useQueryClient } from "@tanstack/react-query";
import { App, Button, Space, Table, Tag, Typography } from "antd";
import { errorText, get, post } from "../api";
import { KindTag, StatusTag } from "../components/StatusTag";
import { useLiveRefresh } from "../live";
import type { Worker } from "../types";

// events/worker.py: beats every 2 s; offline (its jobs given away) after 20 s without one.
const BEAT_S = 2;
const TTL_S = 20;

/** How long since the last beat: green while beats arrive, amber past two missed beats, red
 * past half the failover TTL (the dispatcher gives its jobs away at the TTL). */
export function beatAge(at: string | null | undefined, now: number): { text: string; color: string } {
  if (!at) return { text: "", color: "default" };
  const s = Math.max(0, (now - new Date(at).getTime()) / 1000);
  const color = s <= 2 * BEAT_S + 1 ? "success" : s <= TTL_S / 2 ? "warning" : "error";
  return { text: `${s.toFixed(s < 10 ? 1 : 0)} s ago`, color };
}

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
  const { message } = App.useApp();
  const act = async (w: Worker, what: "drain" | "disable" | "enable") => {
    try {
      await post(`/workers/${w.id}/${what}`);
      message.success(`${w.id}: ${what}`);
      void client.invalidateQueries({ queryKey: ["workers"] });
    } catch (err) {
      message.error(errorText(err));
    }
  };
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Typography.Title level={3} style={{ margin: 0 }}>Workers</Typography.Title>
      <Table<Worker> rowKey="id" size="small" pagination={false} dataSource={rows} loading={workers.isLoading}
        locale={{ emptyText: "No workers. Start one with `jobstream worker`." }}
        columns={[
          { title: "Worker", dataIndex: "id" },
          { title: "State", render: (_, w) => (
            <Space>
              <StatusTag status={w.status} />
              {w.admin_state && w.admin_state !== "active" ? <span data-testid={`admin-${w.id}`}><KindTag kind="warning">{w.admin_state}</KindTag></span> : null}
              {w.draining ? <Tag>shutting down</Tag> : null}
            </Space>
          ) },
          { title: "Slots", render: (_, w) => `${w.active_jobs ?? "-"}/${w.max_concurrency}` },
          { title: "Tags", render: (_, w) => (w.tags ?? []).join(", ") },
          { title: "Executors", render: (_, w) => (w.executors ?? []).join(", ") },
          { title: "Host", render: (_, w) => w.host?.hostname ?? "" },
          { title: "Last heartbeat", dataIndex: "last_heartbeat_at", render: (t: string) => {
            const age = beatAge(t, workers.dataUpdatedAt || Date.now());
            return t ? <span title={new Date(t).toISOString()}><KindTag kind={age.color as "success"}>{age.text}</KindTag></span> : "";
          } },
          {
            title: "",
            render: (_, w) => (
              <Space>
                {w.admin_state === "active" || !w.admin_state ? (
                  <>
                    <Button size="small" onClick={() => void act(w, "drain")}>Drain</Button>
                    <Button size="small" onClick={() => void act(w, "disable")}>Disable</Button>
                  </>
                ) : (
                  <Button size="small" onClick={() => void act(w, "enable")}>Enable</Button>
                )}
              </Space>
            ),
          },
        ]} />
    </Space>
  );
}
