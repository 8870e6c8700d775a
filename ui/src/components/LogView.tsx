import Anser from "anser";
import { Button, Input, Space, Tag, Typography } from "antd";
import { useEffect, useMemo, useRef, useState } from "react";
import { Virtuoso, type VirtuosoHandle } from "react-virtuoso";
import { get, url } from "../api";
import { after, appendLines, type LogLine } from "../logs";
import { stream } from "../sse";
import type { Page } from "../types";

// A log's last lines read first; earlier ones on demand.
export const TAIL = 2000;

/** One line, its ANSI colours as styled spans (never an HTML string). */
function Line({ line, current }: { line: LogLine; current: boolean }) {
  const parts = useMemo(() => Anser.ansiToJson(line.line, { use_classes: false, remove_empty: true }), [line.line]);
  return (
    <div className={`log-line log-${line.stream}`} data-pos={line.pos} style={{ whiteSpace: "pre-wrap", fontFamily: "monospace", fontSize: 12, color: line.stream === "stderr" ? "#d4380d" : undefined, background: current ? "rgba(250, 173, 20, 0.35)" : undefined }} aria-current={current || undefined}>
      {parts.map((p, i) => (
        <span key={i} style={{ color: p.fg ? `rgb(${p.fg})` : undefined, background: p.bg ? `rgb(${p.bg})` : undefined, fontWeight: p.decorations.includes("bold") ? 600 : undefined }}>
          {p.content}
        </span>
      ))}
    </div>
  );
}

/** A job's output: the stored lines, then the live stream until the job ends (follow); lines are
 * kept once each by their `pos`, across reconnects. Virtualised, with its own search. */
export function LogView({ jobId, attempt }: { jobId: string; attempt?: number }) {
  const lines = useRef<LogLine[]>([]);
  const [count, setCount] = useState(0);
  const [state, setState] = useState("connecting");
  const [paused, setPaused] = useState(false);
  const [needle, setNeedle] = useState("");
  const [hit, setHit] = useState(0);
  const list = useRef<VirtuosoHandle>(null);
  const [earlier, setEarlier] = useState(false);
  useEffect(() => {
    lines.current = [];
    setCount(0);
    setEarlier(false);
    const abort = new AbortController();
    let pending = false;
    const flush = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        setCount(lines.current.length);
      });
    };
    const start = async () => {
      // The tail first (a large log's last TAIL lines), then the live stream after its last line.
      let resume: string | undefined;
      try {
        const page = await get<Page<LogLine>>(`/jobs/${jobId}/logs`, { attempt, tail: TAIL });
        appendLines(lines.current, page.items);
        resume = page.items.at(-1)?.pos;
        setEarlier(page.items.length >= TAIL);
        flush();
      } catch {
        resume = undefined; // the stream reports what is wrong, from the first line
      }
      if (abort.signal.aborted) return;
      await stream({
        url: url(`/jobs/${jobId}/logs`, { follow: "true", attempt }),
        signal: abort.signal,
        lastEventId: resume,
        endOn: ["end"],
        onState: (s, err) => setState(s === "closed" ? (err ? `closed: ${err}` : "ended") : s),
        onEvent: (msg) => {
          if (msg.event === "line") {
            if (appendLines(lines.current, [JSON.parse(msg.data) as LogLine])) flush();
          } else if (msg.event === "end") {
            setState("ended");
          }
        },
      });
    };
    void start();
    return () => abort.abort();
  }, [jobId, attempt]);
  /** The lines before the tail shown: read from the start, a page at a time, up to it. */
  const loadEarlier = async () => {
    const first = lines.current[0]?.pos;
    const before: LogLine[] = [];
    let cursor: string | undefined;
    do {
      const page = await get<Page<LogLine>>(`/jobs/${jobId}/logs`, { attempt, limit: 10000, cursor });
      for (const l of page.items) if (first === undefined || after(first, l.pos)) before.push(l);
      const last = page.items.at(-1)?.pos;
      cursor = page.next_cursor && last && first && after(first, last) ? page.next_cursor : undefined;
    } while (cursor);
    lines.current = [...before, ...lines.current];
    setEarlier(false);
    setCount(lines.current.length);
  };
  const matches = useMemo(() => {
    if (!needle) return [];
    const out: number[] = [];
    lines.current.forEach((l, i) => l.line.includes(needle) && out.push(i));
    return out;
  }, [needle, count]);
  const jump = (i: number) => {
    if (!matches.length) return;
    const n = ((i % matches.length) + matches.length) % matches.length;
    setHit(n);
    setPaused(true);
    list.current?.scrollToIndex({ index: matches[n], align: "center" });
  };
  // A new search jumps to its first match.
  useEffect(() => {
    if (needle && matches.length) jump(0);
  }, [needle]);
  const current = matches.length ? matches[hit] : -1;
  const download = async () => {
    const all: LogLine[] = [];
    let cursor: string | undefined;
    do {
      const page = await get<Page<LogLine>>(`/jobs/${jobId}/logs`, { attempt, limit: 10000, cursor });
      all.push(...page.items);
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    const blob = new Blob([all.map((l) => l.line).join("\n") + "\n"], { type: "text/plain" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${jobId}.log`;
    a.click();
    URL.revokeObjectURL(a.href);
  };
  return (
    <Space orientation="vertical" style={{ width: "100%" }}>
      <Space wrap>
        <Tag data-testid="log-state">{state}</Tag>
        <Typography.Text data-testid="log-count">{count} lines</Typography.Text>
        <Button size="small" onClick={() => setPaused(!paused)}>{paused ? "Follow" : "Pause"}</Button>
        <Input.Search size="small" placeholder="search the log" aria-label="search the log" allowClear style={{ width: 220 }}
          onSearch={(v) => { setNeedle(v); setHit(0); }} />
        {needle ? (
          <>
            <Typography.Text>{matches.length ? `${hit + 1} / ${matches.length}` : "no match"}</Typography.Text>
            <Button size="small" onClick={() => jump(hit - 1)} disabled={!matches.length}>Previous</Button>
            <Button size="small" onClick={() => jump(hit + 1)} disabled={!matches.length}>Next</Button>
          </>
        ) : null}
        {earlier ? <Button size="small" onClick={() => void loadEarlier()}>Load earlier lines</Button> : null}
        <Button size="small" onClick={() => void download()}>Download</Button>
      </Space>
      <div style={{ height: 420, border: "1px solid rgba(128,128,128,0.3)", borderRadius: 4 }} data-testid="log">
        {count === 0 ? (
          <Typography.Text type="secondary" style={{ padding: 8, display: "block" }}>
            {state === "ended" ? "No output." : "Waiting for output…"}
          </Typography.Text>
        ) : (
          <Virtuoso
            ref={list}
            totalCount={count}
            followOutput={paused ? false : "auto"}
            itemContent={(i) => <Line line={lines.current[i]} current={i === current} />}
            style={{ height: "100%" }}
          />
        )}
      </div>
    </Space>
  );
}
