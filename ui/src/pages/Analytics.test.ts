import { describe, expect, it } from "vitest";
import { RANGES, seconds } from "./Analytics";

describe("analytics", () => {
  it("gives every range a bucket width within the API's 10,000 buckets", () => {
    const step: Record<string, number> = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600 };
    for (const { hours, interval } of Object.values(RANGES)) {
      const n = (hours * 3600) / step[interval];
      expect(n).toBeGreaterThanOrEqual(48);
      expect(n).toBeLessThanOrEqual(10000);
    }
  });
  it("writes durations in the unit that reads best", () => {
    expect(seconds(0.0123)).toBe("12 ms");
    expect(seconds(3.21)).toBe("3.2 s");
    expect(seconds(600)).toBe("10.0 min");
  });
});
