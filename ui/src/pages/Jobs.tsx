import { useInfiniteQuery, useQueryClient } from "@tanstack/react-query";
import { App, Button, Input, Modal, Select, Space, Table, Typography } from "antd";
import { useMemo, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { type Accepted, errorText, get, isAccepted, post } from "../api";
import { StatusTag } from "../components/StatusTag";
import { Time } from "../components/Time";
import { fromSearch, STATUSES, toQuery, toSearch, type JobFilter } from "../filters";
import { useLiveRefresh } from "../live";
import type { Job, Page } from "../types";
import { NewJob } from "./NewJob";

interface BulkOut {
  matched: number;
  succeeded: number;
  failed: number;
  results: { id: string; ok: boolean; status?: string | null; new_id?: string | null; error?: string | null }[];
}

export function Jobs() {
  const [search, setSearch] = useSearchParams();
  const filter = useMemo(() => fromSearch(search), [search]);
  const query = toQuery(filter);
  const client = useQueryClient();
  const { message, modal } = App.useApp();
  const [selected, setSelected] = useState<string[]>([]);
  const [creating, setCreating] = useState(false);
  const jobs = useInfiniteQuery({
    queryKey: ["jobs", query],
    queryFn: ({ pageParam }) => get<Page<Job>>("/jobs", { ...query, limit: 100, cursor: pageParam }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  // A job event changes a row (or adds one): refetch what is shown, in place.
  useLiveRefresh((e) => e.data.job_id !== undefined, () => void client.invalidateQueries({ queryKey: ["jobs"] }));
  const rows = jobs.data?.pages.flatMap((p) => p.items) ?? [];
  const change = (patch: Partial<JobFilter>) => setSearch(toSearch({ ...filter, ...patch }));

  const bulk = async (action: "cancel" | "retry", ids: string[] | null) => {
    const selection = ids ? { ids } : { filter: query };
    let counted: BulkOut;
    try {
      counted = await post<BulkOut>(`/jobs/bulk/${action}`, { ...selection, dry_run: true });
    } catch (err) {
      message.error(errorText(err));
      return;
    }
    modal.confirm({
      title: `${action === "cancel" ? "Cancel" : "Retry"} ${counted.matched} job${counted.matched === 1 ? "" : "s"}?`,
      content: ids ? "The selected jobs." : "Every job the filter matches now.",
      okText: `${action === "cancel" ? "Cancel" : "Retry"} ${counted.matched}`,
      onOk: async () => {
        try {
          const done = await post<BulkOut | Accepted>(`/jobs/bulk/${action}`, selection);
          if (isAccepted(done)) {
            message.info(`${action} accepted at sequence ${done.seq}; the list updates when the read model catches up`);
          } else {
            const firstError = done.results.find((r) => !r.ok)?.error;
            const text = `${action}: ${done.succeeded} done, ${done.failed} refused${firstError ? ` (${firstError})` : ""}`;
            if (done.failed) message.warning(text);
            else message.success(text);
          }
          setSelected([]);
          await client.invalidateQueries({ queryKey: ["jobs"] });
        } catch (err) {
          message.error(`${action} failed: ${errorText(err)}`);
        }
      },
    });
  };

  const statusOptions = STATUSES.map((s) => ({ value: s, label: s }));
  return (
    <Space orientation="vertical" style={{ width: "100%" }} size="middle">
      <Space wrap>
        <Typography.Title level={3} style={{ margin: 0 }}>Jobs</Typography.Title>
        <Button type="primary" onClick={() => setCreating(true)}>New job</Button>
        <Button disabled={!selected.length} onClick={() => void bulk("cancel", selected)}>Cancel selected</Button>
        <Button disabled={!selected.length} onClick={() => void bulk("retry", selected)}>Retry selected</Button>
        <Button danger onClick={() => void bulk("cancel", null)}>Cancel all matching</Button>
      </Space>
      <Space wrap>
        <Select mode="multiple" allowClear placeholder="status" aria-label="status" style={{ minWidth: 200 }}
          value={filter.status} options={statusOptions} onChange={(v) => change({ status: v })} />
        <Select mode="multiple" allowClear placeholder="not status" aria-label="not status" style={{ minWidth: 200 }}
          value={filter.notStatus} options={statusOptions} onChange={(v) => change({ notStatus: v })} />
        <Input.Search placeholder="name" aria-label="name" defaultValue={filter.name} allowClear onSearch={(v) => change({ name: v })} style={{ width: 160 }} />
        <Input.Search placeholder="tag" aria-label="tag" defaultValue={filter.tag} allowClear onSearch={(v) => change({ tag: v })} style={{ width: 140 }} />
        <Input.Search placeholder="worker" aria-label="worker" defaultValue={filter.worker} allowClear onSearch={(v) => change({ worker: v })} style={{ width: 140 }} />
        <Input.Search placeholder="label key=value" aria-label="label" defaultValue={filter.label} allowClear onSearch={(v) => change({ label: v })} style={{ width: 170 }} />
      </Space>
      {jobs.error ? <Typography.Text type="danger">{String(jobs.error)}</Typography.Text> : null}
      <Table<Job>
        rowKey="id"
        size="small"
        loading={jobs.isLoading}
        dataSource={rows}
        pagination={false}
        rowSelection={{ selectedRowKeys: selected, onChange: (keys) => setSelected(keys as string[]) }}
        locale={{ emptyText: "No jobs match. Submit one with New job, or clear the filters." }}
        columns={[
          { title: "Job", dataIndex: "id", render: (id: string) => <Link to={`/jobs/${id}`}>{id}</Link> },
          { title: "Name", render: (_, j) => j.spec.name },
          { title: "Status", dataIndex: "status", render: (s: string) => <StatusTag status={s} /> },
          { title: "Executor", render: (_, j) => j.spec.executor.type },
          { title: "Worker", dataIndex: "worker_id" },
          { title: "Attempt", dataIndex: "attempt" },
          { title: "Submitted", dataIndex: "submitted_at", render: (t: string) => <Time at={t} /> },
          { title: "Finished", dataIndex: "finished_at", render: (t: string) => <Time at={t} /> },
        ]}
      />
      {jobs.hasNextPage ? (
        <Button onClick={() => void jobs.fetchNextPage()} loading={jobs.isFetchingNextPage}>Load more</Button>
      ) : null}
      <Modal open={creating} title="New job" footer={null} onCancel={() => setCreating(false)} destroyOnHidden width={640}>
        <NewJob onDone={() => setCreating(false)} />
      </Modal>
    </Space>
  );
}
