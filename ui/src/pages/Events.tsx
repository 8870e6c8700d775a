import { Button, Input, InputNumber, Space, Tag, Typography } from "antd";
import { useEffect, useRef, useState } from "react";
import { Virtuoso } from "react-virtuoso";
import { url } from "../api";
import { Time } from "../components/Time";
import { useLive, type LiveEvent } from "../live";
import { stream } from "../sse";

const KEEP = 5000;

/** Whether an event passes the page's filter: its type, or any word of its payload's ids. */
export function matches(e: LiveEvent, type: string, text: string): boolean {
  if (type && !e.type.includes(type)) return false;
  if (!text) return true;
  return ["job_id", "schedule_id", "worker_id", "template", "actor"].some((k) => String(e.data[k] ?? "").includes(text));
}

/** The domain's events as they are appended (`nats sub` in the browser): the tab's one stream,
 * or, from a sequence, a replay of the log from there on. */
export function Events() {
  const { subscribe } = useLive();
  const [from, setFrom] = useState<number | null>(null);
  const [type, setType] = useState("");
  const [text, setText] = useState("");
  const [paused, setPaused] = useState(false);
  const [shown, setShown] = useState<LiveEvent[]>([]);
  const buffer = useRef<LiveEvent[]>([]);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  useEffect(() => {
    buffer.current = [];
    setShown([]);
    let frame = 0;
    const add = (e: LiveEvent) => {
      buffer.current.push(e);
      if (buffer.current.length > KEEP) buffer.current.splice(0, buffer.current.length - KEEP);
      if (!pausedRef.current && !frame) {
        frame = requestAnimationFrame(() => {
          frame = 0;
          setShown([...buffer.current]);
        });
      }
    };
    if (from === null) {
      const off = subscribe(add);
      return () => { off(); cancelAnimationFrame(frame); };
    }
    const abort = new AbortController();
    void stream({
      url: url("/events", { since: from }),
      signal: abort.signal,
      onEvent: (msg) => add({ seq: Number(msg.id), type: msg.event ?? "", data: JSON.parse(msg.data) }),
    });
    return () => { abort.abort(); cancelAnimationFrame(frame); };
  }, [from, subscribe]);
  useEffect(() => {
    if (!paused) setShown([...buffer.current]);
  }, [paused]);
  const rows = shown.filter((e) => matches(e, type, text));
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Space wrap>
        <Typography.Title level={3} style={{ margin: 0 }}>Events</Typography.Title>
        <Input placeholder="type, e.g. failed" aria-label="event type" allowClear style={{ width: 180 }} value={type} onChange={(e) => setType(e.target.value)} />
        <Input placeholder="job, schedule or worker id" aria-label="id" allowClear style={{ width: 220 }} value={text} onChange={(e) => setText(e.target.value)} />
        <Button onClick={() => setPaused(!paused)}>{paused ? "Resume" : "Pause"}</Button>
        <InputNumber min={1} placeholder="from sequence" aria-label="from sequence" style={{ width: 160 }}
          onPressEnter={(e) => { const v = Number((e.target as HTMLInputElement).value); setFrom(v >= 1 ? v : null); }} />
        {from !== null ? <Button onClick={() => setFrom(null)}>Back to live</Button> : null}
        <Typography.Text data-testid="event-count">{rows.length} events{from !== null ? ` from sequence ${from}` : " since this page opened"}</Typography.Text>
      </Space>
      <div style={{ height: 600, border: "1px solid rgba(128,128,128,0.3)", borderRadius: 4 }}>
        {rows.length === 0 ? (
          <Typography.Text type="secondary" style={{ padding: 8, display: "block" }}>
            {from === null ? "Waiting for events… (or replay the log from a sequence)" : "No events match."}
          </Typography.Text>
        ) : (
          <Virtuoso data={rows} followOutput={paused ? false : "auto"} style={{ height: "100%" }}
            itemContent={(_, e) => (
              <div className="event-row" style={{ fontFamily: "monospace", fontSize: 12, padding: "2px 8px", display: "flex", gap: 12 }}>
                <span style={{ minWidth: 60 }}>{e.seq}</span>
                <span style={{ minWidth: 150 }}><Time at={String(e.data.at ?? "")} /></span>
                <Tag>{e.type}</Tag>
                <span>{String(e.data.job_id ?? e.data.schedule_id ?? e.data.worker_id ?? e.data.template ?? "")}</span>
                <span style={{ opacity: 0.7 }}>{String(e.data.actor ?? "")}</span>
              </div>
            )} />
        )}
      </div>
    </Space>
  );
}
