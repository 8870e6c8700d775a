import { useQuery, useQueryClient } from "@tanstack/react-query";
import { App, Button, Form, Input, InputNumber, Modal, Radio, Select, Space, Table, Tag, Typography } from "antd";
import { useState } from "react";
import { Link, useParams } from "react-router";
import { ApiError, errorText, get, post } from "../api";
import { KindTag, StatusTag } from "../components/StatusTag";
import { Time } from "../components/Time";
import { useLiveRefresh } from "../live";
import type { PreviewTick, Schedule, Tick } from "../types";

const list = <T,>(data: T[] | { items: T[] } | undefined): T[] => (Array.isArray(data) ? data : (data?.items ?? []));

function useScheduleAction() {
  const client = useQueryClient();
  const { message } = App.useApp();
  return async (s: Schedule, what: string) => {
    try {
      await post(`/schedules/${s.id}/${what}`);
      message.success(`${s.spec.name}: ${what}`);
      void client.invalidateQueries({ queryKey: ["schedules"] });
      void client.invalidateQueries({ queryKey: ["schedule", s.id] });
    } catch (err) {
      message.error(errorText(err));
    }
  };
}

function trigger(s: Schedule): string {
  return s.spec.cron ? `cron ${s.spec.cron} (${s.spec.timezone ?? "UTC"})` : `every ${s.spec.interval_s} s`;
}

export function Schedules() {
  const client = useQueryClient();
  const act = useScheduleAction();
  const [creating, setCreating] = useState(false);
  const schedules = useQuery({ queryKey: ["schedules"], queryFn: () => get<Schedule[] | { items: Schedule[] }>("/schedules") });
  useLiveRefresh((e) => e.data.schedule_id !== undefined, () => void client.invalidateQueries({ queryKey: ["schedules"] }));
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Space>
        <Typography.Title level={3} style={{ margin: 0 }}>Schedules</Typography.Title>
        <Button type="primary" onClick={() => setCreating(true)}>New schedule</Button>
      </Space>
      <Table<Schedule> rowKey="id" size="small" pagination={false} dataSource={list(schedules.data)} loading={schedules.isLoading}
        locale={{ emptyText: "No schedules yet: create one with New schedule." }}
        columns={[
          { title: "Name", render: (_, s) => <Link to={`/schedules/${s.id}`}>{s.spec.name}</Link> },
          { title: "Trigger", render: (_, s) => trigger(s) },
          { title: "State", dataIndex: "status", render: (st: string) => <KindTag kind={st === "active" ? "success" : "default"}>{st}</KindTag> },
          { title: "Next fire", dataIndex: "next_fire_at", render: (t: string) => <Time at={t} /> },
          { title: "Last fire", dataIndex: "last_fired_at", render: (t: string) => <Time at={t} /> },
          { title: "Fired / skipped / missed", render: (_, s) => `${s.fired ?? 0} / ${s.skipped ?? 0} / ${s.missed ?? 0}` },
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
      <Modal open={creating} title="New schedule" footer={null} onCancel={() => setCreating(false)} destroyOnHidden width={720}>
        <NewSchedule onDone={() => { setCreating(false); void client.invalidateQueries({ queryKey: ["schedules"] }); }} />
      </Modal>
    </Space>
  );
}

interface Fields {
  name: string;
  kind: "cron" | "interval";
  cron?: string;
  interval_s?: number;
  timezone: string;
  script: string;
  overlap_policy: string;
}

export function scheduleBody(f: Fields): Record<string, unknown> {
  const body: Record<string, unknown> = {
    name: f.name,
    timezone: f.timezone || "UTC",
    overlap_policy: f.overlap_policy,
    job: { name: f.name, executor: { type: "shell", script: f.script } },
  };
  if (f.kind === "cron") body.cron = f.cron;
  else body.interval_s = f.interval_s;
  return body;
}

/** Create a schedule; Preview shows its next fire times in its zone and in UTC before saving,
 * checked by the API as create checks it (errors at the field). */
function NewSchedule({ onDone }: { onDone: () => void }) {
  const [form] = Form.useForm<Fields>();
  const [preview, setPreview] = useState<PreviewTick[] | null>(null);
  const { message } = App.useApp();
  const kind = Form.useWatch("kind", form);
  const fail = (err: unknown) => {
    if (err instanceof ApiError && Object.keys(err.fields).length) {
      form.setFields(Object.entries(err.fields).map(([k, v]) => ({ name: (k.startsWith("job") ? "script" : k) as keyof Fields, errors: [v] })));
    } else {
      message.error(errorText(err));
    }
  };
  const doPreview = async () => {
    setPreview(null);
    try {
      const f = await form.validateFields();
      setPreview(await post<PreviewTick[]>("/schedules/preview", scheduleBody(f)));
    } catch (err) {
      if (!(err && typeof err === "object" && "errorFields" in err)) fail(err);
    }
  };
  const save = async (f: Fields) => {
    try {
      await post("/schedules", scheduleBody(f));
      message.success(`Schedule ${f.name} created`);
      onDone();
    } catch (err) {
      fail(err);
    }
  };
  return (
    <Form form={form} layout="vertical" onFinish={save} onValuesChange={() => setPreview(null)}
      initialValues={{ kind: "cron", timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", overlap_policy: "skip" }}>
      <Form.Item label="Name" name="name" rules={[{ required: true, message: "A schedule needs a name" }]}><Input /></Form.Item>
      <Form.Item label="Trigger" name="kind">
        <Radio.Group options={[{ value: "cron", label: "cron" }, { value: "interval", label: "every N seconds" }]} />
      </Form.Item>
      {kind === "interval" ? (
        <Form.Item label="Interval (s)" name="interval_s" rules={[{ required: true, message: "How often?" }]}><InputNumber min={1} /></Form.Item>
      ) : (
        <Form.Item label="Cron" name="cron" rules={[{ required: true, message: "A cron expression, e.g. */5 * * * *" }]}
          extra="5 fields (minute hour day month weekday), or 6 with seconds first"><Input placeholder="*/5 * * * *" /></Form.Item>
      )}
      <Form.Item label="Time zone" name="timezone"><Input /></Form.Item>
      <Form.Item label="Overlap" name="overlap_policy">
        <Select options={["skip", "allow", "queue", "buffer_one", "cancel_other"].map((v) => ({ value: v, label: v }))} />
      </Form.Item>
      <Form.Item label="Script" name="script" rules={[{ required: true, message: "What should it run?" }]}>
        <Input.TextArea rows={3} style={{ fontFamily: "monospace" }} />
      </Form.Item>
      <Space>
        <Button onClick={() => void doPreview()}>Preview</Button>
        <Button type="primary" htmlType="submit">Save</Button>
      </Space>
      {preview ? (
        <Table<PreviewTick> style={{ marginTop: 12 }} rowKey="tick" size="small" pagination={false} dataSource={preview}
          aria-label="next fire times" title={() => "Next fire times"}
          columns={[
            { title: "In its zone", dataIndex: "local" },
            { title: "UTC", dataIndex: "tick" },
          ]} />
      ) : null}
    </Form>
  );
}

export function ScheduleDetail() {
  const { id = "" } = useParams();
  const client = useQueryClient();
  const act = useScheduleAction();
  const schedule = useQuery({ queryKey: ["schedule", id], queryFn: () => get<Schedule>(`/schedules/${id}`) });
  const ticks = useQuery({ queryKey: ["schedule", id, "runs"], queryFn: () => get<{ items: Tick[] }>(`/schedules/${id}/runs`, { limit: 100 }) });
  useLiveRefresh(
    (e) => e.data.schedule_id === id,
    () => void client.invalidateQueries({ queryKey: ["schedule", id] }),
  );
  if (schedule.error) return <Typography.Text type="danger">{String(schedule.error)}</Typography.Text>;
  const s = schedule.data;
  if (!s) return <Typography.Text>Loading…</Typography.Text>;
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Space wrap>
        <Typography.Title level={3} style={{ margin: 0 }}>{s.spec.name}</Typography.Title>
        <Tag>{s.status}</Tag>
        <Typography.Text>{trigger(s)}</Typography.Text>
        <Typography.Text>next <Time at={s.next_fire_at} /></Typography.Text>
        <Button onClick={() => void act(s, "run-now")}>Run now</Button>
        <Button onClick={() => void act(s, s.paused ? "resume" : "pause")}>{s.paused ? "Resume" : "Pause"}</Button>
      </Space>
      <Typography.Title level={5}>Ticks</Typography.Title>
      <Table<Tick> rowKey="seq" size="small" pagination={false} dataSource={ticks.data?.items ?? []} loading={ticks.isLoading}
        locale={{ emptyText: "No ticks yet." }}
        columns={[
          { title: "Seq", dataIndex: "seq" },
          { title: "Outcome", dataIndex: "outcome", render: (o: string) => <KindTag kind={o === "fired" ? "success" : "warning"}>{o}</KindTag> },
          { title: "Tick", dataIndex: "tick", render: (t: string) => <Time at={t} /> },
          { title: "Fired", dataIndex: "fired_at", render: (t: string) => <Time at={t} /> },
          { title: "Lateness", dataIndex: "lateness_s", render: (l: number | null) => (l === null ? "" : `${(l * 1000).toFixed(0)} ms`) },
          { title: "Job", dataIndex: "job_id", render: (j: string | null, t) => (j ? <Space><Link to={`/jobs/${j}`}>{j}</Link>{t.job_status ? <StatusTag status={String(t.job_status)} /> : null}</Space> : "") },
          { title: "Reason", dataIndex: "reason" },
        ]} />
    </Space>
  );
}
