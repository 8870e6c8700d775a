import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Alert, App, Button, Form, Input, Modal, Space, Table, Tag, Typography } from "antd";
import { useState } from "react";
import { call, errorText, get, post } from "../api";
import { KindTag } from "../components/StatusTag";
import { Time } from "../components/Time";

interface Token { id: string; name: string; created_at: string; expires_at: string | null; revoked_at: string | null; last_used_at: string | null }
interface Domain { name: string; status: string; description: string; disabled_reason: string | null; created_at: string; tokens: Token[] }
interface NewToken { id: string; name: string; token: string }

/** Admin: domains and their tokens. A new token's value is shown once, here, and never again. */
export function Domains() {
  const client = useQueryClient();
  const { message } = App.useApp();
  const domains = useQuery({ queryKey: ["domains"], queryFn: () => get<Domain[]>("/admin/domains") });
  const [secret, setSecret] = useState<NewToken | null>(null);
  const [creating, setCreating] = useState(false);
  const refresh = () => void client.invalidateQueries({ queryKey: ["domains"] });
  const run = async (what: () => Promise<unknown>, done: string) => {
    try {
      await what();
      message.success(done);
      refresh();
    } catch (err) {
      message.error(errorText(err));
    }
  };
  const addToken = (d: Domain, name: string) =>
    run(async () => setSecret(await post<NewToken>(`/admin/domains/${d.name}/tokens`, { name })), `token ${name} added to ${d.name}`);
  const rotate = (d: Domain, t: Token) =>
    run(async () => setSecret(await post<NewToken>(`/admin/domains/${d.name}/tokens/${t.id}/rotate`, { overlap_s: 3600 })), `token ${t.name} rotated; the old one works for an hour`);
  const create = async ({ name, description }: { name: string; description?: string }) => {
    try {
      const made = await post<Domain & { token: NewToken }>("/admin/domains", { name, description: description ?? "" });
      setSecret(made.token);
      setCreating(false);
      refresh();
    } catch (err) {
      message.error(errorText(err));
    }
  };
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Space>
        <Typography.Title level={3} style={{ margin: 0 }}>Domains</Typography.Title>
        <Button type="primary" onClick={() => setCreating(true)}>New domain</Button>
      </Space>
      {domains.error ? <Alert type="error" title={String(domains.error)} /> : null}
      {secret ? (
        <Alert type="success" showIcon closable onClose={() => setSecret(null)} data-testid="new-token"
          title={`Token ${secret.name}: copy it now, it is not shown again`}
          description={<Typography.Text copyable code>{secret.token}</Typography.Text>} />
      ) : null}
      <Table<Domain> rowKey="name" size="small" pagination={false} dataSource={domains.data ?? []} loading={domains.isLoading}
        expandable={{
          expandedRowRender: (d) => (
            <Space orientation="vertical" style={{ width: "100%" }}>
              <Table<Token> rowKey="id" size="small" pagination={false} dataSource={d.tokens}
                columns={[
                  { title: "Token", dataIndex: "name" },
                  { title: "Id", dataIndex: "id" },
                  { title: "Created", dataIndex: "created_at", render: (t: string) => <Time at={t} /> },
                  { title: "Last used", dataIndex: "last_used_at", render: (t: string) => <Time at={t} /> },
                  { title: "State", render: (_, t) => (t.revoked_at ? <KindTag kind="error">revoked</KindTag> : t.expires_at ? <KindTag kind="warning">expires <Time at={t.expires_at} /></KindTag> : <KindTag kind="success">active</KindTag>) },
                  { title: "", render: (_, t) => (t.revoked_at ? null : (
                    <Space>
                      <Button size="small" onClick={() => void rotate(d, t)}>Rotate</Button>
                      <Button size="small" danger onClick={() => void run(() => call("DELETE", `/admin/domains/${d.name}/tokens/${t.id}`), `token ${t.name} revoked`)}>Revoke</Button>
                    </Space>
                  )) },
                ]} />
              <Form layout="inline" onFinish={({ name }: { name: string }) => void addToken(d, name)}>
                <Form.Item name="name" rules={[{ required: true, message: "name the token" }]}><Input placeholder="token name, e.g. ci" aria-label={`new token for ${d.name}`} /></Form.Item>
                <Button htmlType="submit">Add token</Button>
              </Form>
            </Space>
          ),
        }}
        columns={[
          { title: "Domain", dataIndex: "name" },
          { title: "State", dataIndex: "status", render: (s: string, d) => <Space><KindTag kind={s === "active" ? "success" : "warning"}>{s}</KindTag>{d.disabled_reason ? <Tag>{d.disabled_reason}</Tag> : null}</Space> },
          { title: "Description", dataIndex: "description" },
          { title: "Tokens", render: (_, d) => d.tokens.filter((t) => !t.revoked_at).length },
          { title: "Created", dataIndex: "created_at", render: (t: string) => <Time at={t} /> },
          { title: "", render: (_, d) => (d.status === "disabled"
            ? <Button size="small" onClick={() => void run(() => post(`/admin/domains/${d.name}/enable`), `${d.name} enabled`)}>Enable</Button>
            : <Button size="small" danger onClick={() => void run(() => post(`/admin/domains/${d.name}/disable`, { reason: "disabled from the UI" }), `${d.name} disabled`)}>Disable</Button>) },
        ]} />
      <Modal open={creating} title="New domain" footer={null} onCancel={() => setCreating(false)} destroyOnHidden>
        <Form layout="vertical" onFinish={create}>
          <Form.Item label="Name" name="name" rules={[{ required: true, message: "A domain needs a name" }]} extra="lower-case letters, digits and '-'"><Input /></Form.Item>
          <Form.Item label="Description" name="description"><Input /></Form.Item>
          <Button type="primary" htmlType="submit">Create</Button>
        </Form>
      </Modal>
    </Space>
  );
}
