import { act, render } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useLiveRefresh, type LiveEvent } from "./live";

// A stand-in for the tab's stream: the hook subscribes through the context's default value,
// so the test hands events to the listener it registered.
let listener: ((e: LiveEvent) => void) | null = null;
vi.mock("react", async (orig) => {
  const react = await orig<typeof import("react")>();
  return {
    ...react,
    useContext: () => ({ state: "open", subscribe: (fn: (e: LiveEvent) => void) => { listener = fn; return () => { listener = null; }; } }),
  };
});

function Probe({ fn }: { fn: () => void }) {
  useLiveRefresh((e) => e.data.job_id === "j1", fn);
  return null;
}

describe("live refresh", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("refreshes soon after a burst and again once the read model has caught up", () => {
    const fn = vi.fn();
    render(<Probe fn={fn} />);
    const ev = (seq: number, job_id = "j1") => act(() => listener?.({ seq, type: "x", data: { job_id } }));
    ev(1);
    ev(2);
    ev(3, "other");
    act(() => void vi.advanceTimersByTime(250));
    expect(fn).toHaveBeenCalledTimes(1);
    ev(4); // `succeeded`, coalesced before: it must still get a refresh after it
    act(() => void vi.advanceTimersByTime(250));
    expect(fn).toHaveBeenCalledTimes(2);
    act(() => void vi.advanceTimersByTime(1000));
    expect(fn).toHaveBeenCalledTimes(3);
    act(() => void vi.advanceTimersByTime(5000));
    expect(fn).toHaveBeenCalledTimes(3);
  });
});
