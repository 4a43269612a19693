import assert from "node:assert/strict";
import { test } from "node:test";
import { request } from "../lib/request.js";

function fakeModel(answer) {
  const handlers = [];
  return {
    on: (event, fn) => event === "msg:custom" && handlers.push(fn),
    off: (_event, fn) => handlers.splice(handlers.indexOf(fn), 1),
    send(msg) {
      const reply = answer(msg);
      if (reply)
        setTimeout(() => {
          for (const fn of handlers.slice()) fn(reply, []);
        }, 1);
    },
    handlers,
  };
}

test("a reply with the request's id resolves it", async () => {
  const model = fakeModel((msg) => ({
    type: "lmscope:response",
    id: msg.id,
    ok: true,
    result: msg.args.x * 2,
  }));
  const { result } = await request(model, "double", { x: 21 });
  assert.equal(result, 42);
  assert.equal(model.handlers.length, 0);
});

test("an error reply rejects with Python's message", async () => {
  const model = fakeModel((msg) => ({
    type: "lmscope:response",
    id: msg.id,
    ok: false,
    error: "IndexError: layer 40",
  }));
  await assert.rejects(request(model, "slice", {}), /layer 40/);
});

test("no reply times out and unsubscribes", async () => {
  const model = fakeModel(() => null);
  await assert.rejects(request(model, "slow", {}, { timeoutMs: 20 }), /within 20 ms/);
  assert.equal(model.handlers.length, 0);
});

test("a static page refuses at once, after telling the page", async () => {
  const asked = [];
  const model = { lmscopeStatic: true, send: (msg) => asked.push(msg.name) };
  await assert.rejects(request(model, "x"), /static snapshot/);
  assert.deepEqual(asked, ["x"]);
});
