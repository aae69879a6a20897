'use strict';
// Line-delimited JSON-RPC 2.0 for harness services, in plain Node (no packages).
//
// Two halves, each small enough to copy into another project:
//   serveStdio(service)  the service side: one JSON object per line on stdin, one per line on
//                        stdout, logs on stderr, every line with a readable id answered once.
//   ServiceClient        the caller's side: spawn a service, many requests in flight correlated
//                        by id, a timeout per request, notifications to a callback, and an
//                        escalating shutdown (shutdown request, close stdin, SIGTERM, SIGKILL).
// The wire rules are the ones in docs/PROTOCOL.md.

const childProcess = require('node:child_process');
const readline = require('node:readline');

const CODES = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  NOT_FOUND: -32001,
  GATE_BLOCKED: -32002,
  INVALID_TRANSITION: -32003,
  INVALID_PLAN: -32004,
  TIMEOUT: -32005,
  CANCELLED: -32006,
  CONNECTION_CLOSED: -32007,
});

/** A JSON-RPC error: handlers throw it, clients reject with it. Callers test `.code`. */
class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    if (data !== undefined) this.data = data;
  }

  toWire() {
    const error = { code: this.code, message: this.message };
    if (this.data !== undefined) error.data = this.data;
    return error;
  }
}

/** Default limit of one line, in bytes; a longer line is refused with -32600. */
const MAX_LINE = 4 * 1024 * 1024;

function isId(value) {
  return (typeof value === 'string') || (Number.isInteger(value) && Number.isSafeInteger(value));
}

/** The id of a decoded message when it is well typed (an integer or a string), else null. */
function readableId(obj) {
  return obj && typeof obj === 'object' && !Array.isArray(obj) && isId(obj.id) ? obj.id : null;
}

const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);

/** Sort one decoded line: a request or notification to dispatch, or the error to answer. */
function parseMessage(obj) {
  if (Array.isArray(obj)) {
    throw new RpcError(CODES.INVALID_REQUEST, 'Batches are not supported: send one request per line');
  }
  if (obj === null || typeof obj !== 'object') {
    throw new RpcError(CODES.INVALID_REQUEST, `A message must be a JSON object, not ${obj === null ? 'null' : typeof obj}`);
  }
  const rid = readableId(obj);
  const invalid = (why) => Object.assign(new RpcError(CODES.INVALID_REQUEST, `Not a valid JSON-RPC 2.0 message: ${why}`), { id: rid });
  if (!('method' in obj)) {
    if ('result' in obj || 'error' in obj) throw invalid('this service sends no requests, so it takes no responses');
    throw invalid('no method');
  }
  if ('jsonrpc' in obj && obj.jsonrpc !== '2.0') throw invalid('jsonrpc must be "2.0"');
  if (typeof obj.method !== 'string' || obj.method === '') throw invalid('method must be a non-empty string');
  if ('id' in obj && !isId(obj.id)) throw invalid('id must be an integer or a string');
  if ('params' in obj && obj.params !== null && typeof obj.params !== 'object') throw invalid('params must be an object or an array');
  const extra = Object.keys(obj).filter((k) => !REQUEST_KEYS.has(k));
  if (extra.length) throw invalid(`unknown member(s) ${extra.join(', ')}`);
  return { id: 'id' in obj ? obj.id : undefined, method: obj.method, params: obj.params };
}

/**
 * Serve `service` on stdin/stdout until EOF or `shutdown`.
 *
 * service = { name, version, contract, notifications: [], methods: { name: (params) => result } }
 * A handler gets the request's params (an object, or {} when absent) and returns the result or a
 * Promise of it; throwing an RpcError answers that error, anything else -32603. The lifecycle
 * methods initialize, ping and shutdown are built in.
 */
function serveStdio(service, { input = process.stdin, output = process.stdout, maxLine = MAX_LINE } = {}) {
  // stdout is the wire: console.log and friends go to stderr, so a stray log cannot corrupt it.
  for (const level of ['log', 'info', 'debug']) console[level] = console.error;
  let open = true;
  let inFlight = 0;
  let inputDone = false;

  const send = (msg) => {
    if (open) output.write(JSON.stringify(msg) + '\n');
  };
  const reply = (id, result) => send({ jsonrpc: '2.0', id, result });
  const replyError = (id, err) => send({ jsonrpc: '2.0', id, error: err.toWire() });

  const builtins = {
    initialize: () => ({
      name: service.name,
      version: service.version,
      protocol_version: '1',
      jsonrpc: '2.0',
      contract: service.contract,
      methods: Object.keys(methods).sort(),
      notifications: service.notifications || [],
      pid: process.pid,
    }),
    ping: () => ({}),
    shutdown: () => {
      stop();
      return {};
    },
  };
  const methods = { ...builtins, ...service.methods, shutdown: builtins.shutdown };
  const lifecycle = new Set(Object.keys(builtins));

  const rl = readline.createInterface({ input, crlfDelay: Infinity, terminal: false });
  // After shutdown nothing more is read: closing the input lets Node exit once the replies of
  // the calls in flight are written, whether or not the caller closes its end.
  function stop() {
    inputDone = true;
    rl.close();
    if (typeof input.destroy === 'function') input.destroy();
    maybeFinish();
  }
  function maybeFinish() {
    if (inputDone && inFlight === 0 && open) {
      open = false;
      if (typeof service.onClose === 'function') service.onClose();
    }
  }

  // Synchronous handlers are answered inline, so replies leave in the order the requests came;
  // a handler returning a Promise is answered when it settles, and the loop reads on meanwhile.
  function dispatch(msg) {
    // Own properties only: "toString" or "__proto__" are not methods of the service.
    const fn = Object.prototype.hasOwnProperty.call(methods, msg.method) ? methods[msg.method] : undefined;
    if (!fn) {
      const err = new RpcError(CODES.METHOD_NOT_FOUND, `Method not found: ${msg.method}`, { method: msg.method, available: Object.keys(methods).sort() });
      if (msg.id !== undefined) replyError(msg.id, err);
      return;
    }
    inFlight += 1;
    const done = (err, result) => {
      inFlight -= 1;
      if (msg.id !== undefined) {
        if (err) replyError(msg.id, err);
        else reply(msg.id, result === undefined ? {} : result);
      }
      maybeFinish();
    };
    const fail = (exc) => {
      if (exc instanceof RpcError) return done(exc);
      console.error(`${service.name}: internal error in ${msg.method}:`, exc);
      return done(new RpcError(CODES.INTERNAL_ERROR, `Internal error: ${exc && exc.message}`));
    };
    let result;
    try {
      result = fn(paramsOf(msg));
    } catch (exc) {
      fail(exc);
      return;
    }
    if (result && typeof result.then === 'function') result.then((value) => done(null, value), fail);
    else done(null, result);
  }

  function paramsOf(msg) {
    const params = msg.params === undefined || msg.params === null ? {} : msg.params;
    if (!Array.isArray(params)) return params;
    if (lifecycle.has(msg.method) && params.length === 0) return {};
    throw new RpcError(CODES.INVALID_PARAMS, 'params must be an object with named fields, not an array');
  }

  rl.on('line', (line) => {
    if (inputDone) return; // after shutdown, nothing more is read
    if (Buffer.byteLength(line, 'utf8') > maxLine) {
      const head = /"id"\s*:\s*(-?\d{1,15}|"(?:[^"\\]|\\.){0,256}")/.exec(line.slice(0, 512));
      let id = null;
      try { id = head ? JSON.parse(head[1]) : null; } catch (_) { id = null; }
      replyError(id, new RpcError(CODES.INVALID_REQUEST, `Line of ${Buffer.byteLength(line, 'utf8')} bytes exceeds the limit of ${maxLine} bytes`, { limit: maxLine }));
      return;
    }
    if (!line.trim()) return;
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (exc) {
      replyError(null, new RpcError(CODES.PARSE_ERROR, `Parse error: ${exc.message}`));
      return;
    }
    let msg;
    try {
      msg = parseMessage(obj);
    } catch (err) {
      replyError(err.id === undefined ? null : err.id, err);
      return;
    }
    dispatch(msg);
  });
  rl.on('close', () => {
    inputDone = true;
    maybeFinish();
  });
  return { notify: (method, params) => send(params === undefined ? { jsonrpc: '2.0', method } : { jsonrpc: '2.0', method, params }) };
}

/** "exit 0", "signal SIGTERM" or "not started: spawn x ENOENT", for messages. */
function describeExit(status) {
  if (!status) return 'still running';
  if (status.error) return `not started: ${status.error}`;
  return status.signal ? `signal ${status.signal}` : `exit ${status.code}`;
}

/**
 * A service as a child process: `request()` returns a Promise settled by the reply with the
 * same id (or by the timeout, or by the child's exit: pending requests never hang).
 */
class ServiceClient {
  constructor(name, argv, { onNotification = () => {}, env = process.env, cwd, log = (text) => process.stderr.write(text) } = {}) {
    this.name = name;
    this.argv = argv;
    this.nextId = 1;
    this.pending = new Map();
    this.onNotification = onNotification;
    this.closed = false;
    // detached: the child leads its own process group, so a kill reaches whatever it started.
    this.child = childProcess.spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env, cwd, detached: true });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => resolve({ code, signal }));
      this.child.on('error', (err) => {
        this.spawnError = err;
        resolve({ code: null, signal: null, error: err.message });
      });
    });
    this.child.stdin.on('error', () => {}); // a dead child's pipe: the pending requests say why
    this.child.stderr.on('data', (chunk) => log(chunk.toString('utf8').replace(/^(?=.)/gm, `[${name}] `)));
    const lines = readline.createInterface({ input: this.child.stdout, crlfDelay: Infinity });
    lines.on('line', (line) => this.receive(line));
    lines.on('close', () => {
      this.exited.then((status) => this.failAll(new RpcError(CODES.CONNECTION_CLOSED, `${name} closed its output (${describeExit(status)})`)));
    });
  }

  receive(line) {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (_) {
      process.stderr.write(`[${this.name}] not JSON on stdout, ignored: ${line.slice(0, 120)}\n`);
      return;
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return;
    if ('method' in msg) {
      if (!('id' in msg)) this.onNotification(this.name, msg.method, msg.params);
      return;
    }
    const waiter = this.pending.get(msg.id);
    if (!waiter) return; // a late reply after its timeout: dropped
    this.pending.delete(msg.id);
    clearTimeout(waiter.timer);
    if (msg.error) waiter.reject(new RpcError(msg.error.code, msg.error.message, msg.error.data));
    else waiter.resolve(msg.result);
  }

  failAll(err) {
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
      this.pending.delete(id);
    }
  }

  /** Send one request; the Promise holds its result or rejects with an RpcError. */
  request(method, params = {}, { timeout = 30000 } = {}) {
    if (this.closed) return Promise.reject(new RpcError(CODES.CONNECTION_CLOSED, `${this.name} was closed; start a new client`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RpcError(CODES.TIMEOUT, `${this.name}: no reply to ${method} within ${timeout} ms`));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      this.child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n', (err) => {
        if (!err || !this.pending.has(id)) return;
        this.pending.delete(id);
        clearTimeout(timer);
        // The pipe broke because the child is gone: say how it ended, once we know.
        this.exited.then((status) => reject(new RpcError(CODES.CONNECTION_CLOSED, `${this.name} is gone (${describeExit(status)}): cannot send ${method}`)));
      });
    });
  }

  /** Escalating, bounded stop: shutdown, close stdin, wait, SIGTERM the group, wait, SIGKILL. */
  async close({ grace = 2000 } = {}) {
    if (this.closed) return this.exited;
    if (this.child.exitCode === null && !this.spawnError) {
      await this.request('shutdown', {}, { timeout: grace }).catch(() => {});
    }
    this.closed = true;
    this.child.stdin.end();
    const within = (ms) => Promise.race([this.exited, new Promise((resolve) => setTimeout(() => resolve(null), ms).unref())]);
    let status = await within(grace);
    for (const signal of ['SIGTERM', 'SIGKILL']) {
      if (status) break;
      try { process.kill(-this.child.pid, signal); } catch (_) { /* already gone */ }
      status = await within(grace);
    }
    return status;
  }
}

module.exports = { CODES, MAX_LINE, RpcError, ServiceClient, describeExit, parseMessage, serveStdio };
