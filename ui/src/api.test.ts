import { describe, expect, it } from "vitest";
import { describe as describeError } from "./api";

describe("API errors", () => {
  it("keeps a 422's messages by field, without the body prefix", () => {
    const err = describeError(422, [{ loc: ["body", "executor", "script"], msg: "Field required" }]);
    expect(err.fields).toEqual({ "executor.script": "Field required" });
    expect(err.message).toBe("executor.script: Field required");
  });

  it("finds the field a domain refusal names first", () => {
    const err = describeError(422, "cron: expected 5 fields, or 6 with seconds first, got 7 in '* * * * * * *'");
    expect(err.fields).toEqual({ cron: "expected 5 fields, or 6 with seconds first, got 7 in '* * * * * * *'" });
    expect(describeError(409, "a schedule named 'x' exists").fields).toEqual({});
    expect(describeError(500, undefined).message).toBe("HTTP 500");
  });
});
