import { Alert, Button, Card, Form, Input, Typography } from "antd";
import { useState } from "react";
import { ApiError, get, setToken } from "../api";
import type { Info } from "../types";

/** Paste a token (admin or domain); it is checked against /info and kept for this tab only. */
export function Login({ onSignedIn }: { onSignedIn: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async ({ value }: { value: string }) => {
    setBusy(true);
    setError(null);
    setToken(value.trim());
    try {
      await get<Info>("/info");
      onSignedIn();
    } catch (err) {
      setToken(null);
      setError(err instanceof ApiError && err.status === 401 ? "That token is not valid." : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main style={{ display: "grid", placeItems: "center", minHeight: "100vh" }}>
      <Card style={{ width: 420 }}>
        <Typography.Title level={2}>jobstream</Typography.Title>
        <Typography.Paragraph>
          Sign in with a token: the admin token `jobstream up` printed, or a domain's token. It is kept for this
          browser tab only.
        </Typography.Paragraph>
        <Form layout="vertical" onFinish={submit}>
          <Form.Item label="Token" name="value" rules={[{ required: true, message: "Paste a token" }]}>
            <Input.Password autoFocus autoComplete="off" />
          </Form.Item>
          {error ? <Alert type="error" title={error} style={{ marginBottom: 16 }} /> : null}
          <Button type="primary" htmlType="submit" loading={busy} block>
            Sign in
          </Button>
        </Form>
      </Card>
    </main>
  );
}
