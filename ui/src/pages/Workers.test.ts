import { describe, expect, it } from "vitest";
import { beatAge } from "./Workers";

describe("heartbeat age", () => {
  const now = Date.parse("2026-12-02T10:00:30Z");
  it("is green while beats arrive, amber after missed ones, red past half the TTL", () => {
    expect(beatAge("2026-12-02T10:00:29Z", now)).toEqual({ text: "1.0 s ago", color: "success" });
    expect(beatAge("2026-12-02T10:00:22Z", now).color).toBe("warning");
    expect(beatAge("2026-12-02T10:00:10Z", now)).toEqual({ text: "20 s ago", color: "error" });
    expect(beatAge(null, now).text).toBe("");
  });
});
