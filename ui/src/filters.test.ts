import { describe, expect, it } from "vitest";
import { fromSearch, toQuery, toSearch } from "./filters";

describe("job filters in the URL", () => {
  it("round-trips every filter", () => {
    const search = new URLSearchParams("status=failed,timed_out&not_status=cancelled&name=etl&tag=gpu&worker=w1&label=team%3Dd");
    const f = fromSearch(search);
    expect(f.status).toEqual(["failed", "timed_out"]);
    expect(f.notStatus).toEqual(["cancelled"]);
    expect(f.label).toBe("team=d");
    expect(fromSearch(toSearch(f))).toEqual(f);
  });

  it("gives the API only the filters that are set", () => {
    expect(toQuery(fromSearch(new URLSearchParams("status=running")))).toEqual({ status: "running" });
    expect(toQuery(fromSearch(new URLSearchParams("")))).toEqual({});
  });
});
