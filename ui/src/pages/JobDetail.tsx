import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Alert, App, Button, Descriptions, Segmented, Slider, Space, Table, Tabs, Typography } from "antd";
import { useEffect, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { errorText, get, isAccepted, post } from "../api";
import { LogView } from "../components/LogView";
import { StatusTag } from "../components/StatusTag";
import { Time } from "../components/Time";
import { gap } from "../format";
import { useLiveRefresh } from "../live";
import type { Attempt, Job, JobEvent } from "../types";

const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "lost"]);

export function JobDetail() {
  const { id = "" } = useParams();
  const client = useQueryClient();
  const navigate = useNavigate();
  const { message } = App.useApp();
  // The newest sequence the stream has shown for this job: until the read model's answer has
  // reached it (`last_seq`), it is read again every half second.
  const wanted = useRef(0);
  useEffect(() => {
    wanted.current = 0; // another job (a retry's)
  }, [id]);
  const behind = (seq: number | undefined) => (seq !== undefined && seq < wanted.current ? 500 : false);
  const job = useQuery({
    queryKey: ["job", id],
    queryFn: () => get<Job>(`/jobs/${id}`),
    refetchInterval: (q) => behind(q.state.data?.last_seq),
  });
  const events = useQuery({
    queryKey: ["job-events", id],
    queryFn: () => get<JobEvent[]>(`/jobs/${id}/events`),
    refetchInterval: (q) => behind(q.state.data?.at(-1)?.seq),
  });
  useLiveRefresh(
    (e) => e.data.job_id === id,
    (latest) => {
      wanted.current = Math.max(wanted.current, latest.seq);
      void client.invalidateQueries({ queryKey: ["job", id] });
      void client.invalidateQueries({ queryKey: ["job-events", id] });
    },
  );
  const [attempt, setAttempt] = useState<number | undefined>(undefined);
  if (job.error) {
    return <Alert type="error" title={String(job.error)} description={<Link to="/jobs">Back to the jobs</Link>} />;
  }
  if (!job.data) return <Typography.Text>Loading…</Typography.Text>;
  const j = job.data;
  const act = async (what: "cancel" | "retry") => {
    try {
      const out = await post<Job | { accepted: true; seq: number; id?: string; new_id?: string }>(`/jobs/${id}/${what}`);
      const newId = isAccepted(out) ? (out.new_id ?? out.id) : out.id;
      if (what === "retry") {
        message.success(`Retried as ${newId}`);
        if (newId) navigate(`/jobs/${newId}`);
      } else {
        message.success(isAccepted(out) ? `Cancel requested (sequence ${out.seq})` : "Cancel requested");
      }
      void client.invalidateQueries({ queryKey: ["job", id] });
    } catch (err) {
      message.error(errorText(err));
    }
  };
  const attempts = j.attempts ?? [];
  return (
    <Space orientation="vertical" style={{ width: "100%" }} size="middle">
      <Space wrap align="center">
        <Typography.Title level={3} style={{ margin: 0 }}>{j.spec.name}</Typography.Title>
        <StatusTag status={j.status} />
        <Typography.Text copyable code>{j.id}</Typography.Text>
        {!TERMINAL.has(j.status) ? <Button danger onClick={() => void act("cancel")} disabled={j.cancel_requested}>
          {j.cancel_requested ? "Cancel requested" : "Cancel"}</Button> : null}
        {TERMINAL.has(j.status) ? <Button onClick={() => void act("retry")}>Retry</Button> : null}
      </Space>
      {j.status === "pending" && j.pending_reason ? (
        <Alert type="warning" showIcon title="Why it is pending" description={j.pending_reason} data-testid="pending-reason" />
      ) : null}
      {j.error ? <Alert type="error" showIcon title={`Exit code ${j.exit_code ?? "none"}`} description={j.error} /> : null}
      <Descriptions size="small" bordered column={{ xs: 1, md: 3 }} items={[
        { label: "Executor", children: j.spec.executor.type },
        { label: "Worker", children: j.worker_id ?? "" },
        { label: "Attempt", children: j.attempt ?? 0 },
        { label: "Submitted", children: <Time at={j.submitted_at} /> },
        { label: "Started", children: <Time at={j.started_at} /> },
        { label: "Finished", children: <Time at={j.finished_at} /> },
        { label: "Tags", children: (j.spec.tags ?? []).join(", ") },
        { label: "Retry of", children: j.retry_of ? <Link to={`/jobs/${j.retry_of}`}>{j.retry_of}</Link> : "" },
        { label: "Schedule", children: j.schedule_id ?? "" },
      ]} />
      <Tabs items={[
        {
          key: "log",
          label: "Log",
          children: (
            <Space orientation="vertical" style={{ width: "100%" }}>
              {attempts.length > 1 ? (
                <Segmented value={attempt ?? 0} onChange={(v) => setAttempt(v === 0 ? undefined : Number(v))}
                  options={[{ label: "all attempts", value: 0 }, ...attempts.map((a) => ({ label: `attempt ${a.n}`, value: a.n }))]} />
              ) : null}
              <LogView jobId={id} attempt={attempt} />
            </Space>
          ),
        },
        { key: "timeline", label: "Timeline", children: <Timeline events={events.data ?? []} jobId={id} /> },
        { key: "attempts", label: `Attempts (${attempts.length})`, children: <Attempts attempts={attempts} /> },
      ]} />
    </Space>
  );
}

/** The job's events from the log, with sequences, actors and the time between them; the
 * slider shows the job as it was right after any of them (GET /jobs/{id}?as_of_seq=). */
function Timeline({ events, jobId }: { events: JobEvent[]; jobId: string }) {
  const [at, setAt] = useState<number | null>(null);
  const seq = at === null ? null : events[at]?.seq;
  const then = useQuery({
    queryKey: ["job-as-of", jobId, seq],
    queryFn: () => get<Job>(`/jobs/${jobId}`, { as_of_seq: seq }),
    enabled: seq !== null && seq !== undefined,
  });
  if (!events.length) return <Typography.Text>No events yet.</Typography.Text>;
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Typography.Text>Time travel: the job as of event</Typography.Text>
      <Slider min={0} max={events.length - 1} value={at ?? events.length - 1} onChange={(v) => setAt(v)}
        tooltip={{ formatter: (v) => (v === undefined ? "" : `${events[v].type} (seq ${events[v].seq})`) }} ariaLabelForHandle="time travel: the job as of event" />
      {then.data ? (
        <Alert data-testid="as-of" type="info" title={<span>As of sequence {seq}: <b>{then.data.status}</b>, attempt {then.data.attempt ?? 0}{then.data.worker_id ? ` on ${then.data.worker_id}` : ""}</span>} />
      ) : null}
      <Table<JobEvent> rowKey="seq" size="small" pagination={false} dataSource={events}
        onRow={(_, i) => ({ onClick: () => setAt(i ?? null), style: { cursor: "pointer" } })}
        rowClassName={(_, i) => (i === at ? "ant-table-row-selected" : "")}
        columns={[
          { title: "Seq", dataIndex: "seq" },
          { title: "Event", dataIndex: "type" },
          { title: "At", dataIndex: "at", render: (t: string) => <Time at={t} /> },
          { title: "After", render: (_, e, i) => (i ? gap(events[i - 1].at, e.at) : "") },
          { title: "Actor", dataIndex: "actor" },
          { title: "Worker", dataIndex: "worker_id" },
        ]} />
    </Space>
  );
}

function Attempts({ attempts }: { attempts: Attempt[] }) {
  return (
    <Table<Attempt> rowKey="n" size="small" pagination={false} dataSource={attempts}
      locale={{ emptyText: "Not dispatched yet." }}
      columns={[
        { title: "Attempt", dataIndex: "n" },
        { title: "Status", dataIndex: "status", render: (s: string) => <StatusTag status={s} /> },
        { title: "Worker", dataIndex: "worker_id" },
        { title: "Dispatched", dataIndex: "dispatched_at", render: (t: string) => <Time at={t} /> },
        { title: "Start delay", render: (_, a) => gap(a.dispatched_at, a.started_at) },
        { title: "Duration", render: (_, a) => gap(a.started_at, a.finished_at) },
        { title: "Exit", dataIndex: "exit_code" },
        { title: "Error", dataIndex: "error" },
      ]} />
  );
}
