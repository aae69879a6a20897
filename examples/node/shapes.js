'use strict';
// Params checking for the planning service: small declarative shapes that validate a value,
// fill in defaults and collect every problem at once (as the reference service's -32602 data:
// [{loc, msg, type}]). The shapes mirror schemas/DecomposeParams.json and friends.

const { CODES, RpcError } = require('./jsonrpc');

const describe = (value) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);

/** Run `shape` on `value`; returns the normalized value, or throws -32602 listing every problem. */
function parse(shape, value) {
  const errors = [];
  const out = shape(value, [], errors);
  if (errors.length) {
    throw new RpcError(CODES.INVALID_PARAMS, `Invalid params: ${errors.length} validation error(s)`, errors);
  }
  return out;
}

const fail = (errors, loc, msg, type) => {
  errors.push({ loc, msg, type });
  return undefined;
};

const string = ({ minLength = 0, pattern = null, trim = false } = {}) => (value, loc, errors) => {
  if (typeof value !== 'string') return fail(errors, loc, `Input should be a valid string, not ${describe(value)}`, 'string_type');
  const text = trim ? value.trim() : value;
  if (text.length < minLength) return fail(errors, loc, `String should have at least ${minLength} character(s)`, 'string_too_short');
  if (pattern && !pattern.test(text)) return fail(errors, loc, `String should match pattern '${pattern.source}'`, 'string_pattern_mismatch');
  return text;
};

const integer = ({ min = -Infinity, max = Infinity } = {}) => (value, loc, errors) => {
  if (!Number.isInteger(value)) return fail(errors, loc, `Input should be a valid integer, not ${describe(value)}`, 'int_type');
  if (value < min) return fail(errors, loc, `Input should be greater than or equal to ${min}`, 'greater_than_equal');
  if (value > max) return fail(errors, loc, `Input should be less than or equal to ${max}`, 'less_than_equal');
  return value;
};

const positiveNumber = () => (value, loc, errors) => {
  if (typeof value !== 'number' || !Number.isFinite(value)) return fail(errors, loc, `Input should be a valid number, not ${describe(value)}`, 'float_type');
  if (value <= 0) return fail(errors, loc, 'Input should be greater than 0', 'greater_than');
  return value;
};

const nonNegativeNumber = () => (value, loc, errors) => {
  if (typeof value !== 'number' || !Number.isFinite(value)) return fail(errors, loc, `Input should be a valid number, not ${describe(value)}`, 'float_type');
  if (value < 0) return fail(errors, loc, 'Input should be greater than or equal to 0', 'greater_than_equal');
  return value;
};

const boolean = () => (value, loc, errors) =>
  typeof value === 'boolean' ? value : fail(errors, loc, `Input should be a valid boolean, not ${describe(value)}`, 'bool_type');

const oneOf = (...values) => (value, loc, errors) =>
  values.includes(value) ? value : fail(errors, loc, `Input should be ${values.map((v) => `'${v}'`).join(' or ')}`, 'enum');

const any = () => (value) => value;

const nullable = (inner) => (value, loc, errors) => (value === null ? null : inner(value, loc, errors));

const array = (items) => (value, loc, errors) => {
  if (!Array.isArray(value)) return fail(errors, loc, `Input should be a valid array, not ${describe(value)}`, 'list_type');
  return value.map((item, i) => items(item, [...loc, i], errors));
};

const mapOf = (values) => (value, loc, errors) => {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail(errors, loc, `Input should be a valid object, not ${describe(value)}`, 'dict_type');
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, values(v, [...loc, k], errors)]));
};

/**
 * An object with named fields: fields = { name: [shape, defaultFactory] } (no default: required).
 * extra: 'forbid' (unknown fields are errors) or 'allow' (kept as they are). `check(obj, fail)`
 * runs on the filled-in object for rules that span fields.
 */
const object = (fields, { extra = 'forbid', check = null } = {}) => (value, loc, errors) => {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail(errors, loc, `Input should be a valid object, not ${describe(value)}`, 'model_type');
  }
  const out = {};
  const before = errors.length;
  for (const [name, [shape, makeDefault]] of Object.entries(fields)) {
    if (value[name] === undefined) {
      if (makeDefault === undefined) fail(errors, [...loc, name], 'Field required', 'missing');
      else out[name] = makeDefault();
    } else {
      out[name] = shape(value[name], [...loc, name], errors);
    }
  }
  for (const name of Object.keys(value)) {
    if (Object.prototype.hasOwnProperty.call(fields, name)) continue;
    if (extra === 'forbid') fail(errors, [...loc, name], 'Extra inputs are not permitted', 'extra_forbidden');
    else if (name !== '__proto__') out[name] = value[name];
  }
  if (check && errors.length === before) {
    const problem = check(out);
    if (problem) fail(errors, loc, `Value error, ${problem}`, 'value_error');
  }
  return out;
};

// -- the planning types (schemas/TaskPacket.json, Plan.json, ...) ------------------------------

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const strings = () => array(string());
const list = () => [];

const Budget = object({
  usd: [nullable(positiveNumber()), () => null],
  tokens: [nullable(integer({ min: 1 })), () => null],
  turns: [nullable(integer({ min: 1 })), () => null],
  minutes: [nullable(positiveNumber()), () => null],
});

const AgentSpec = object({
  name: [nullable(string()), () => null],
  command: [nullable(strings()), () => null],
  model: [nullable(string()), () => null],
  max_turns: [nullable(integer({ min: 1 })), () => null],
  budget: [nullable(Budget), () => null],
  permission: [nullable(string()), () => null],
  extra_args: [strings(), list],
  allowed_tools: [strings(), list],
  denied_tools: [strings(), list],
  channel: [nullable(boolean()), () => null],
  env: [strings(), list],
});

const Resources = object({
  cpus: [nullable(nonNegativeNumber()), () => null],
  memory_mb: [nullable(integer({ min: 1 })), () => null],
  custom: [mapOf(nonNegativeNumber()), () => ({})],
});

const TaskPacket = object(
  {
    id: [string({ pattern: ID })],
    title: [string(), () => ''],
    objective: [string(), () => ''],
    scope: [oneOf('workspace', 'module', 'single_file', 'custom'), () => 'workspace'],
    scope_path: [string(), () => '.'],
    depends_on: [strings(), list],
    commands: [strings(), list],
    acceptance_tests: [strings(), list],
    confirmation: [nullable(string()), () => null],
    risk: [oneOf('low', 'high'), () => 'low'],
    risk_reasons: [strings(), list],
    timeout: [nullable(positiveNumber()), () => null],
    commit_policy: [string(), () => 'none'],
    escalation_policy: [string(), () => 'ask'],
    env: [mapOf(string()), () => ({})],
    agent: [nullable(AgentSpec), () => null],
    network: [nullable(boolean()), () => null],
    resources: [nullable(Resources), () => null],
  },
  {
    check: (task) => {
      if (!task.title.trim() && !task.objective.trim()) return 'a task needs a title or an objective';
      if (!task.title.trim()) task.title = task.objective;
      if (!task.objective.trim()) task.objective = task.title;
      return null;
    },
  },
);

const Requirements = object({ env: [strings(), list], tools: [strings(), list], mcp: [boolean(), () => false] });

const Plan = object({
  objective: [string()],
  tasks: [array(TaskPacket)],
  revision: [integer(), () => 1],
  source: [string(), () => 'generated'],
  defaults: [mapOf(any()), () => ({})],
  requires: [Requirements, () => ({ env: [], tools: [], mcp: false })],
  budget: [nullable(Budget), () => null],
});

const PlanningContext = object(
  {
    workspace: [nullable(string()), () => null],
    max_tasks: [integer({ min: 3, max: 50 }), () => 7],
    backend: [string(), () => 'heuristic'],
  },
  { extra: 'allow' },
);
const defaultContext = () => ({ workspace: null, max_tasks: 7, backend: 'heuristic' });

const Strictness = oneOf('generated', 'file');
const Level = oneOf('error', 'warning', 'off');

const ValidationConfig = object(
  {
    min_tasks: [integer({ min: 1 }), () => 3],
    max_tasks: [integer({ min: 1 }), () => 7],
    size: [nullable(Level), () => null],
    vague: [nullable(Level), () => null],
    vacuous: [nullable(Level), () => null],
    scope_escape: [nullable(Level), () => null],
  },
  { check: (c) => (c.min_tasks > c.max_tasks ? `min_tasks (${c.min_tasks}) is larger than max_tasks (${c.max_tasks})` : null) },
);

const DecomposeParams = object({
  objective: [string({ minLength: 1, trim: true })],
  context: [PlanningContext, defaultContext],
});

const RefineParams = object(
  {
    plan: [nullable(Plan), () => null],
    packets: [nullable(array(TaskPacket)), () => null],
    objective: [nullable(string()), () => null],
    feedback: [string()],
    context: [PlanningContext, defaultContext],
    strictness: [nullable(Strictness), () => null],
  },
  {
    check: (p) => {
      if ((p.plan === null) === (p.packets === null)) return 'give either plan, or packets together with objective';
      if (p.packets !== null && !(p.objective || '').trim()) return 'packets need their objective';
      return null;
    },
  },
);

const ValidateParams = object(
  {
    packets: [nullable(array(TaskPacket)), () => null],
    plan: [nullable(Plan), () => null],
    workspace: [nullable(string()), () => null],
    strictness: [Strictness, () => 'file'],
    config: [ValidationConfig, () => ({ min_tasks: 3, max_tasks: 7, size: null, vague: null })],
  },
  { check: (p) => ((p.plan === null) === (p.packets === null) ? 'give either packets or plan' : null) },
);

/** A task packet with every field present, in the schema's order (as results carry them). */
function packet(fields) {
  return parse(TaskPacket, fields);
}

module.exports = { DecomposeParams, RefineParams, ValidateParams, packet, parse };
