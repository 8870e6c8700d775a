import { App, Button, Form, Input, InputNumber, Select, Tabs } from "antd";
import { useState } from "react";
import { useNavigate } from "react-router";
import { ApiError, errorText, isAccepted, post } from "../api";
import type { Job } from "../types";

interface Fields {
  name: string;
  type: "shell" | "python";
  script: string;
  tags?: string[];
  timeout_s?: number | null;
  max_retries?: number | null;
  priority?: number | null;
}

/** The API's body for a job from the form's fields. */
export function jobBody(f: Fields): Record<string, unknown> {
  const body: Record<string, unknown> = { name: f.name, executor: { type: f.type, script: f.script }, tags: f.tags ?? [] };
  if (f.timeout_s) body.timeout_s = f.timeout_s;
  if (f.max_retries) body.max_retries = f.max_retries;
  if (f.priority) body.priority = f.priority;
  return body;
}

// A 422's field path (body.executor.script) to the form field it is about.
const FIELD_OF: Record<string, keyof Fields> = { "executor.script": "script", "executor.type": "type", executor: "script" };

/** Submit a job from fields, or from JSON; the API's validation messages are shown at the field. */
export function NewJob({ onDone }: { onDone: () => void }) {
  const [form] = Form.useForm<Fields>();
  const [json, setJson] = useState("");
  const [jsonError, setJsonError] = useState<string | null>(null);
  const { message } = App.useApp();
  const navigate = useNavigate();
  const submit = async (body: unknown, onFieldErrors?: (e: ApiError) => void) => {
    try {
      const job = await post<Job | { accepted: true; seq: number; id?: string }>("/jobs", body);
      const id = job.id;
      message.success(isAccepted(job) ? `Submitted ${id}; it shows once the read model catches up` : `Submitted ${id}`);
      onDone();
      if (id) navigate(`/jobs/${id}`);
    } catch (err) {
      if (err instanceof ApiError && onFieldErrors) onFieldErrors(err);
      else setJsonError(errorText(err));
    }
  };
  const fromFields = (f: Fields) =>
    submit(jobBody(f), (err) => {
      const known = Object.entries(err.fields).filter(([k]) => FIELD_OF[k] ?? k in f);
      if (!known.length) {
        message.error(err.message);
        return;
      }
      form.setFields(known.map(([k, v]) => ({ name: FIELD_OF[k] ?? (k as keyof Fields), errors: [v] })));
    });
  const fromJson = () => {
    setJsonError(null);
    let body: unknown;
    try {
      body = JSON.parse(json);
    } catch (err) {
      setJsonError(`not JSON: ${String(err)}`);
      return;
    }
    void submit(body);
  };
  return (
    <Tabs
      items={[
        {
          key: "form",
          label: "Form",
          children: (
            <Form form={form} layout="vertical" initialValues={{ type: "shell" }} onFinish={fromFields}>
              <Form.Item label="Name" name="name" rules={[{ required: true, message: "A job needs a name" }]}>
                <Input />
              </Form.Item>
              <Form.Item label="Executor" name="type">
                <Select options={[{ value: "shell", label: "shell" }, { value: "python", label: "python script" }]} />
              </Form.Item>
              <Form.Item label="Script" name="script" rules={[{ required: true, message: "What should it run?" }]}>
                <Input.TextArea rows={5} style={{ fontFamily: "monospace" }} />
              </Form.Item>
              <Form.Item label="Tags" name="tags">
                <Select mode="tags" open={false} placeholder="type a tag, then Enter" />
              </Form.Item>
              <Form.Item label="Timeout (s)" name="timeout_s">
                <InputNumber min={0.1} />
              </Form.Item>
              <Form.Item label="Retries" name="max_retries">
                <InputNumber min={0} max={100} />
              </Form.Item>
              <Button type="primary" htmlType="submit">Submit</Button>
            </Form>
          ),
        },
        {
          key: "json",
          label: "JSON",
          children: (
            <>
              <Input.TextArea aria-label="job JSON" rows={10} value={json} onChange={(e) => setJson(e.target.value)}
                placeholder='{"name": "hello", "executor": {"type": "shell", "script": "echo hi"}}' style={{ fontFamily: "monospace" }} />
              {jsonError ? <div role="alert" style={{ color: "#cf1322", marginTop: 8 }}>{jsonError}</div> : null}
              <Button type="primary" onClick={fromJson} style={{ marginTop: 8 }}>Submit JSON</Button>
            </>
          ),
        },
      ]}
    />
  );
}
