// Server-Sent Events read with fetch, so the bearer token stays in a header (EventSource cannot
// send one). On a dropped connection it reconnects with Last-Event-ID, the id of the last event
// handled, so nothing is missed and nothing comes twice; it stops when aborted or on `end`.

import { createParser, type EventSourceMessage } from "eventsource-parser";
import { errorText, headers } from "./api";

export interface StreamOptions {
  url: string;
  onEvent: (msg: EventSourceMessage) => void;
  /** Connection state, for the UI's "live" badge. */
  onState?: (state: "open" | "retrying" | "closed", error?: string) => void;
  signal: AbortSignal;
  /** The id to resume after (Last-Event-ID), e.g. the last sequence already shown. */
  lastEventId?: string;
  /** Event names after which the stream is complete (no reconnect). */
  endOn?: string[];
  retryMs?: number;
}

/** Reads `body` to its end, handing each complete SSE message to `onEvent`; the last id seen. */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  onEvent: (msg: EventSourceMessage) => boolean | void,
): Promise<{ lastId?: string; ended: boolean }> {
  let lastId: string | undefined;
  let ended = false;
  const parser = createParser({
    onEvent(msg) {
      if (ended) return;
      if (msg.id) lastId = msg.id;
      if (onEvent(msg) === true) ended = true;
    },
  });
  const reader = body.getReader();
  const decoder = new TextDecoder();
  try {
    while (!ended) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
  } finally {
    if (ended) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
  return { lastId, ended };
}

export async function stream(opts: StreamOptions): Promise<void> {
  let lastId = opts.lastEventId;
  const retry = opts.retryMs ?? 1000;
  while (!opts.signal.aborted) {
    try {
      // A resumed stream goes on after the last event handled: Last-Event-ID, not `since`.
      const target = new URL(opts.url, window.location.origin);
      if (lastId) target.searchParams.delete("since");
      const res = await fetch(target.pathname + target.search, {
        headers: headers({ Accept: "text/event-stream", ...(lastId ? { "Last-Event-ID": lastId } : {}) }),
        signal: opts.signal,
      });
      if (!res.ok || !res.body) {
        const text = await res.text();
        let detail = `HTTP ${res.status}`;
        try {
          detail = JSON.parse(text).detail ?? detail;
        } catch {
          /* not JSON */
        }
        if (res.status === 401 || res.status === 403 || res.status === 404 || res.status === 422) {
          opts.onState?.("closed", detail); // retrying cannot help
          return;
        }
        throw new Error(detail);
      }
      opts.onState?.("open");
      const got = await readEvents(res.body, (msg) => {
        opts.onEvent(msg);
        return opts.endOn?.includes(msg.event ?? "") ?? false;
      });
      if (got.lastId) lastId = got.lastId;
      if (got.ended) {
        opts.onState?.("closed");
        return;
      }
    } catch (err) {
      if (opts.signal.aborted) break;
      opts.onState?.("retrying", errorText(err));
    }
    await new Promise((r) => setTimeout(r, retry));
  }
  opts.onState?.("closed");
}
