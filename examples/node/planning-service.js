#!/usr/bin/env node
'use strict';
// The harness planning service in plain Node: a drop-in replacement for `harness-planning`.
//
//   node examples/node/planning-service.js          (speaks JSON-RPC 2.0, one JSON per line)
//   harness conformance planning -- node examples/node/planning-service.js
//
// Methods (contracts/planning.yaml): decompose (the task packets, a list), decompose_plan (the
// whole plan with its report and notes), refine, validate, plus initialize, ping and shutdown.
// All four are pure: no state is kept between calls. Logs go to stderr only.

const { serveStdio } = require('./jsonrpc');
const planner = require('./planner');
const { DecomposeParams, RefineParams, ValidateParams, parse } = require('./shapes');

const VERSION = '0.1.0-node';

const methods = {
  decompose(params) {
    const p = parse(DecomposeParams, params);
    return planner.decompose(p.objective, p.context).plan.tasks;
  },

  decompose_plan(params) {
    const p = parse(DecomposeParams, params);
    return planner.decompose(p.objective, p.context);
  },

  refine(params) {
    const p = parse(RefineParams, params);
    const plan = p.plan || { objective: p.objective, tasks: p.packets, revision: 1, source: 'generated', defaults: {}, requires: { env: [], tools: [], mcp: false } };
    return planner.refine(plan, p.feedback, p.context, p.strictness);
  },

  validate(params) {
    const p = parse(ValidateParams, params);
    const options = { workspace: p.workspace, strictness: p.strictness, config: p.config };
    if (p.plan) return planner.validate(p.plan.tasks, { ...options, objective: p.plan.objective, root: 'tasks' });
    return planner.validate(p.packets, options);
  },
};

if (require.main === module) {
  process.stderr.write(`planning (node ${process.version}) ready, pid ${process.pid}\n`);
  serveStdio({ name: 'planning', version: VERSION, contract: 'planning', notifications: [], methods });
}

module.exports = { methods };
