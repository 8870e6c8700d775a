import { useQuery, useQueryClient } from "@tanstack/react-query";
import { App, Button, Popconfirm, Space, Table, Typography } from "antd";
import { call, errorText, get, post } from "../api";
import { Time } from "../components/Time";
import { useNavigate } from "react-router";
import type { Job } from "../types";

interface Template { name: string; status: string; latest_version: number; description: string; updated_at: string; job: { name: string; executor: { type: string } } }

/** Saved job specs: run one now, or delete it (jobs made from it keep their spec). Templates
 * are saved with `jobstream templates save` or PUT /api/v1/templates/{name}. */
export function Templates() {
  const client = useQueryClient();
  const navigate = useNavigate();
  const { message } = App.useApp();
  const templates = useQuery({ queryKey: ["templates"], queryFn: () => get<Template[]>("/templates") });
  const runNow = async (t: Template) => {
    try {
      const job = await post<Job>("/jobs", { template: t.name });
      navigate(`/jobs/${job.id}`);
    } catch (err) {
      message.error(errorText(err));
    }
  };
  const remove = async (t: Template) => {
    try {
      await call("DELETE", `/templates/${t.name}`);
      message.success(`template ${t.name} deleted`);
      void client.invalidateQueries({ queryKey: ["templates"] });
    } catch (err) {
      message.error(errorText(err));
    }
  };
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Typography.Title level={3} style={{ margin: 0 }}>Templates</Typography.Title>
      <Table<Template> rowKey="name" size="small" pagination={false} dataSource={templates.data ?? []} loading={templates.isLoading}
        locale={{ emptyText: "No templates: save one with `jobstream templates save NAME --file job.json`." }}
        columns={[
          { title: "Template", dataIndex: "name" },
          { title: "Version", dataIndex: "latest_version" },
          { title: "Job", render: (_, t) => `${t.job.name} (${t.job.executor.type})` },
          { title: "Description", dataIndex: "description" },
          { title: "Saved", dataIndex: "updated_at", render: (at: string) => <Time at={at} /> },
          { title: "", render: (_, t) => (
            <Space>
              <Button size="small" onClick={() => void runNow(t)}>Run</Button>
              <Popconfirm title={`Delete template ${t.name}?`} okText="Delete" onConfirm={() => void remove(t)}>
                <Button size="small" danger>Delete</Button>
              </Popconfirm>
            </Space>
          ) },
        ]} />
    </Space>
  );
}
