// One event stream per tab (GET /events over fetch) that feeds every view: listeners get each
// event's type, subject and sequence; the Jobs and Job pages refresh what an event changes.

import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { get, url } from "./api";
import { stream } from "./sse";

export interface LiveEvent {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

type Listener = (e: LiveEvent) => void;

interface Live {
  state: "open" | "retrying" | "closed";
  /** `replay`: first hand `fn` the tab's recent events, those a view that mounts just now
   * (after a click that made them) would otherwise never see. */
  subscribe: (fn: Listener, replay?: boolean) => () => void;
}

// How many of the latest events the tab keeps for views that mount after them.
const RECENT = 1000;

const LiveContext = createContext<Live>({ state: "closed", subscribe: () => () => undefined });

export function LiveProvider({ children, domain }: { children: ReactNode; domain: string }) {
  const listeners = useRef(new Set<Listener>());
  const recent = useRef<LiveEvent[]>([]);
  const [state, setState] = useState<Live["state"]>("retrying");
  const client = useQueryClient();
  useEffect(() => {
    const abort = new AbortController();
    // From one past what the read model had applied: every event after what any view reads
    // from now on is sent. Once the stream is open every view reads again, so what a view read
    // before it opened is not left behind either.
    const start = async () => {
      let since: number | undefined;
      try {
        since = (await get<{ read_model_seq: number }>("/info")).read_model_seq + 1;
      } catch {
        since = undefined; // the stream's own retries report the problem
      }
      await stream({
        url: url("/events", { since }),
        signal: abort.signal,
        onState: (s) => {
          setState(s);
          if (s === "open") void client.invalidateQueries(undefined, { cancelRefetch: false }); // a read in flight may finish
        },
        onEvent: (msg) => {
          let data: Record<string, unknown> = {};
          try {
            data = JSON.parse(msg.data);
          } catch {
            return;
          }
          const e = { seq: Number(msg.id), type: msg.event ?? "", data };
          recent.current.push(e);
          if (recent.current.length > RECENT) recent.current.splice(0, recent.current.length - RECENT);
          for (const fn of listeners.current) fn(e);
        },
      });
    };
    void start();
    return () => abort.abort();
  }, [domain, client]);
  // Stable across the connection's state changes, so a view's subscription (and what it has
  // gathered) outlives a reconnect.
  const subscribe = useCallback((fn: Listener, replay = false) => {
    if (replay) for (const e of recent.current) fn(e);
    listeners.current.add(fn);
    return () => void listeners.current.delete(fn);
  }, []);
  const value = useMemo<Live>(() => ({ state, subscribe }), [state, subscribe]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): Live {
  return useContext(LiveContext);
}

// The read model applies an event a moment after the stream delivers it: a refresh made at
// once can read the state from before it. So a burst gets a refresh `ms` after its first event
// and another `SETTLE_MS` after its last, when the read model has caught up.
export const SETTLE_MS = 1000;

/** Calls `fn` after events that `match`: `ms` after the first of a burst (and again each `ms`
 * while the burst goes on), and once more `SETTLE_MS` after its last. */
export function useLiveRefresh(match: (e: LiveEvent) => boolean, fn: (latest: LiveEvent) => void, ms = 250): void {
  const { subscribe } = useLive();
  const saved = useRef({ match, fn });
  saved.current = { match, fn };
  useEffect(() => {
    let soon: ReturnType<typeof setTimeout> | undefined;
    let settle: ReturnType<typeof setTimeout> | undefined;
    let latest: LiveEvent | undefined;
    const run = () => latest && saved.current.fn(latest);
    const off = subscribe((e) => {
      if (!saved.current.match(e)) return;
      latest = e;
      if (soon === undefined) {
        soon = setTimeout(() => {
          soon = undefined;
          run();
        }, ms);
      }
      clearTimeout(settle);
      settle = setTimeout(run, SETTLE_MS);
    }, true);
    return () => {
      off();
      clearTimeout(soon);
      clearTimeout(settle);
    };
  }, [subscribe, ms]);
}
