// Request/response over anywidget custom messages, for data fetched on demand (prefetching
// neighbouring layers, say). Python answers {type: "lmscope:response", id, ok, result|error}.

let counter = 0;

/**
 * Time allowed for a reply: a base plus a rate for the bytes expected, so big slices over slow
 * links are not cut off at a fixed few seconds.
 * @param {number} expectedBytes
 */
export function timeoutFor(expectedBytes = 0) {
  return 5000 + Math.ceil(expectedBytes / 250_000) * 1000; // 5 s + 1 s per 250 KB
}

/**
 * @param {any} model anywidget model
 * @param {string} name handler name registered in Python with @request_handler
 * @param {object} [args]
 * @param {{timeoutMs?: number, expectedBytes?: number}} [options]
 * @returns {Promise<{result: any, buffers: DataView[]}>}
 */
export function request(model, name, args = {}, options = {}) {
  if (model.lmscopeStatic) {
    // the static runtime's send() puts a visible note on the page; then fail at once
    model.send({ type: "lmscope:request", name, args });
    return Promise.reject(new Error("this is a static snapshot: more data needs a running kernel"));
  }
  const id = `${Date.now()}-${counter++}`;
  const timeoutMs = options.timeoutMs ?? timeoutFor(options.expectedBytes);
  return new Promise((resolve, reject) => {
    const onMessage = (msg, buffers) => {
      if (msg?.type !== "lmscope:response" || msg.id !== id) return;
      finish();
      if (msg.ok) resolve({ result: msg.result, buffers: buffers || [] });
      else reject(new Error(msg.error));
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`no answer to '${name}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      model.off("msg:custom", onMessage);
    };
    model.on("msg:custom", onMessage);
    model.send({ type: "lmscope:request", id, name, args });
  });
}
