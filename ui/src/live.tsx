// One event stream per tab (GET /events over fetch) that feeds every view: listeners get each
// event's type, subject and sequence; the Jobs and Job pages refresh what an event changes.

import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import { url } from "./api";
import { stream } from "./sse";

export interface LiveEvent {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

type Listener = (e: LiveEvent) => void;

interface Live {
  state: "open" | "retrying" | "closed";
  subscribe: (fn: Listener) => () => void;
}

const LiveContext = createContext<Live>({ state: "closed", subscribe: () => () => undefined });

export function LiveProvider({ children, domain }: { children: ReactNode; domain: string }) {
  const listeners = useRef(new Set<Listener>());
  const [state, setState] = useState<Live["state"]>("retrying");
  useEffect(() => {
    const abort = new AbortController();
    // From now on (no `since`): what is there already comes from the REST reads.
    void stream({
      url: url("/events"),
      signal: abort.signal,
      onState: (s) => setState(s),
      onEvent: (msg) => {
        let data: Record<string, unknown> = {};
        try {
          data = JSON.parse(msg.data);
        } catch {
          return;
        }
        const e = { seq: Number(msg.id), type: msg.event ?? "", data };
        for (const fn of listeners.current) fn(e);
      },
    });
    return () => abort.abort();
  }, [domain]);
  const value: Live = {
    state,
    subscribe: (fn) => {
      listeners.current.add(fn);
      return () => listeners.current.delete(fn);
    },
  };
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): Live {
  return useContext(LiveContext);
}

/** Calls `fn` at most every `ms` after events that `match`, with the latest matching event. */
export function useLiveRefresh(match: (e: LiveEvent) => boolean, fn: () => void, ms = 250): void {
  const live = useLive();
  const saved = useRef({ match, fn });
  saved.current = { match, fn };
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const off = live.subscribe((e) => {
      if (!saved.current.match(e) || timer !== undefined) return;
      timer = setTimeout(() => {
        timer = undefined;
        saved.current.fn();
      }, ms);
    });
    return () => {
      off();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [live, ms]);
}
