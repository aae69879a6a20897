#!/usr/bin/env node
'use strict';
// Drive two harness services from Node: plan an objective, then run one worker behind its trust gate.
//
//   node examples/node/client.js [WORKSPACE]
//
// It starts `harness-planning` and `harness-worker-manager` (override each with a JSON array in
// HARNESS_PLANNING_CMD / HARNESS_WORKER_MANAGER_CMD), initializes both at once, asks the planner
// for a plan (decompose_plan: the plan with its notes; decompose would answer only the tasks),
// then spawns a worker for a task packet that writes hello.txt in WORKSPACE (default: a new
// temporary directory), checks its trust, marks it trusted and runs it, with get_worker and
// ping in flight at the same time. Every notification is printed on one line as it arrives;
// the final worker is printed as JSON. Both services are shut down at the end, also on
// failure. Exit status 0 when the worker finished and hello.txt says hello.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { ServiceClient, describeExit } = require('./jsonrpc');

const TIMEOUT_MS = 20000;
const OBJECTIVE = 'write a hello.txt greeting file';

function commandFrom(variable, fallback) {
  const raw = process.env[variable];
  if (!raw) return fallback;
  let argv;
  try {
    argv = JSON.parse(raw);
  } catch (err) {
    throw new Error(`${variable} must be a JSON array of strings: ${err.message}`);
  }
  if (!Array.isArray(argv) || !argv.length || !argv.every((a) => typeof a === 'string')) {
    throw new Error(`${variable} must be a non-empty JSON array of strings`);
  }
  return argv;
}

const say = (text) => process.stdout.write(text + '\n');

function printNotification(service, method, params) {
  say(`notification ${service} ${method} ${JSON.stringify(params)}`);
}

async function plan(planning, workspace) {
  const { plan: made, notes } = await planning.request('decompose_plan', { objective: OBJECTIVE, context: { workspace, max_tasks: 5 } }, { timeout: TIMEOUT_MS });
  say(`plan: ${made.tasks.length} tasks for '${made.objective}' (revision ${made.revision})`);
  for (const t of made.tasks) say(`  ${t.id} ${t.title}${t.depends_on.length ? ` (after ${t.depends_on.join(', ')})` : ''}`);
  for (const note of notes || []) say(`  note: ${note}`);
  return made;
}

async function runWorker(wm, workspace, runDir) {
  const key = `node-client/${process.pid}`;
  const packet = {
    id: 'hello',
    title: 'Write hello.txt',
    commands: ['echo hello > hello.txt'],
    acceptance_tests: ['grep -qx hello hello.txt'],
    timeout: 30,
  };
  const spawned = await wm.request('spawn_worker', { task_packet: packet, workspace, run_dir: runDir, idempotency_key: `${key}/spawn` }, { timeout: TIMEOUT_MS });
  say(`spawn_worker: ${spawned.worker_id} is ${spawned.state}`);
  const id = spawned.worker_id;
  // No trusted roots given: the policy cannot decide, so a person (here: this client) must.
  const trust = await wm.request('check_trust', { worker_id: id, trusted_roots: [] }, { timeout: TIMEOUT_MS });
  say(`check_trust: trusted=${trust.trusted} (${trust.reason})`);
  const marked = await wm.request('mark_trusted', { worker_id: id, approval_source: 'node-client', approver: process.env.USER || 'node-client' }, { timeout: TIMEOUT_MS });
  say(`mark_trusted: ${marked.state}, trusted by ${marked.trust_source}`);
  // Three requests in flight on one pipe; each reply finds its caller by id, in any order.
  const [finished, seen, pong] = await Promise.all([
    wm.request('run_worker', { worker_id: id, idempotency_key: `${key}/run` }, { timeout: TIMEOUT_MS }),
    wm.request('get_worker', { worker_id: id }, { timeout: TIMEOUT_MS }),
    wm.request('ping', {}, { timeout: TIMEOUT_MS }),
  ]);
  say(`while run_worker was in flight: get_worker said ${seen.state}, ping answered ${JSON.stringify(pong)}`);
  return finished;
}

async function main() {
  const planningCmd = commandFrom('HARNESS_PLANNING_CMD', ['harness-planning']);
  const wmCmd = commandFrom('HARNESS_WORKER_MANAGER_CMD', ['harness-worker-manager']);
  const workspace = path.resolve(process.argv[2] || fs.mkdtempSync(path.join(os.tmpdir(), 'harness-node-client-')));
  fs.mkdirSync(workspace, { recursive: true });
  const runDir = path.join(workspace, '.harness', 'node-client');
  say(`workspace: ${workspace}`);

  const services = [
    new ServiceClient('planning', planningCmd, { onNotification: printNotification }),
    new ServiceClient('worker-manager', wmCmd, { onNotification: printNotification }),
  ];
  const [planning, wm] = services;
  try {
    const infos = await Promise.all(services.map((s) => s.request('initialize', { client: 'node-client' }, { timeout: TIMEOUT_MS })));
    for (const info of infos) say(`initialize: ${info.name} ${info.version}, contract ${info.contract} v${info.protocol_version}, pid ${info.pid}`);
    await plan(planning, workspace);
    const worker = await runWorker(wm, workspace, runDir);
    say(`result ${JSON.stringify(worker)}`);
    const written = fs.readFileSync(path.join(workspace, 'hello.txt'), 'utf8').trim();
    if (worker.state !== 'finished' || written !== 'hello') {
      throw new Error(`the worker ended ${worker.state} and hello.txt holds ${JSON.stringify(written)}`);
    }
    say('done: the worker finished and hello.txt says hello');
    return 0;
  } finally {
    const statuses = await Promise.all(services.map((s) => s.close()));
    services.forEach((s, i) => say(`stopped ${s.name}: ${describeExit(statuses[i])}`));
  }
}

main().then(
  (code) => { process.exitCode = code; },
  (err) => {
    process.stderr.write(`node-client: ${err.code !== undefined ? `error ${err.code}: ` : ''}${err.message}\n`);
    process.exitCode = 1;
  },
);
