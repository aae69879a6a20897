'use strict';
// The planning rules, as pure functions (apart from reading the workspace):
//
//   decompose(objective, context)          -> { plan, report, notes }   or throws -32004
//                                             (the service's decompose answers plan.tasks,
//                                             its decompose_plan the whole object)
//   refine(plan, feedback, context, level) -> { plan, applied, report } or throws -32004
//   validate(tasks, options)               -> { valid, problems, risky } (never throws)
//
// decompose reads the workspace for its real test and build commands and its directories, then
// lays out a small DAG, ids t1..tn:  locate -> change(s) -> tests, docs -> verify.  Every plan
// handed out is risk-flagged and validated; a plan with errors is refused with every problem.

const fs = require('node:fs');
const path = require('node:path');

const { CODES, RpcError } = require('./jsonrpc');
const { packet } = require('./shapes');

// -- reading objectives ------------------------------------------------------------------------

const STOP_WORDS = new Set(`a an the it its this that these those to of in on for with and or but so be is are was
  were we our my your i you me us please just also all any some bit little lot lots very really much more less up
  out off again now then there here as at by from into about should could would can will let lets need needs want
  wants try whole entire everywhere way ways`.split(/\s+/));
const GENERIC_ACTIONS = new Set(`improve improved improves improving improvement improvements enhance enhanced
  enhancement optimize optimise optimized optimizing optimization refactor refactored refactoring restructure rework
  clean cleaned cleanup cleaning tidy polish update updated updates updating upgrade fix fixed fixes fixing change
  changed changes modify adjust tweak tweaks make makes making do doing done handle address work working add
  implement create write support better best faster quicker nicer cleaner simpler easier good great nice robust
  stable efficient smaller bigger proper properly correct correctly stuff various misc general overall etc`.split(/\s+/));
const GENERIC_NOUNS = new Set(`code codebase stuff thing things it everything something anything project app
  application system program software repo repository feature features bug bugs issue issues problem problems error
  errors performance speed quality ui ux logic implementation part parts place places area areas module modules file
  files function functions class classes method methods component components service services page pages design
  architecture structure readability maintainability`.split(/\s+/));
const NON_CONTENT = new Set([...STOP_WORDS, ...GENERIC_ACTIONS, ...GENERIC_NOUNS]);

// Signs that a text names something precise: a quoted thing, a number, a path, an identifier, a flag.
const SIGNALS = [
  /`[^`]+`|"[^"]+"|(?<![\w])'[^'\n]+'(?![\w])/,
  /\d/,
  /[\w.-]*\w\/[\w./-]*|(?<![\w.])[\w-]{2,}\.[A-Za-z][A-Za-z0-9]{0,5}\b/,
  /\b[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+\b|\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b\w+\(\)/,
  /(?<![\w-])--?[A-Za-z][\w-]*/,
];

function words(text) {
  return (text.match(/[A-Za-z0-9_][A-Za-z0-9_'./-]*/g) || [])
    .map((w) => w.replace(/[.'\-/]+$/, '').toLowerCase())
    .filter(Boolean);
}

/** Why `text` is too vague to act on, or null when it names something concrete. */
function vagueness(text) {
  if (!text.trim()) return 'it is empty';
  if (SIGNALS.some((re) => re.test(text)) || words(text).some((w) => !NON_CONTENT.has(w))) return null;
  return 'it names no file, module, identifier, number, quoted thing or specific noun';
}

/** The first run of content words (at most three): what docs about `text` must mention. */
function keyPhrase(text) {
  const run = [];
  for (const w of words(text)) {
    if (NON_CONTENT.has(w)) {
      if (run.length) break;
      continue;
    }
    run.push(w);
    if (run.length === 3) break;
  }
  return run.join(' ') || null;
}

const CLAUSE_VERBS = 'add|fix|update|remove|delete|rename|write|implement|create|document|refactor|improve|move|deploy|bump|upgrade|migrate|extract|introduce|enable|disable|expose|port|convert|release|publish|drop|support';
const CLAUSE_SPLIT = new RegExp(`\\s*(?:;|\\n)\\s*|\\s*,?\\s+(?:and|then|also|plus)\\s+(?=(?:${CLAUSE_VERBS})\\b)|\\s*,\\s*(?=(?:${CLAUSE_VERBS})\\b)`, 'i');

/** "add X and fix Y; document Z" -> three clauses; "add search and filters" stays whole. */
function splitClauses(objective) {
  const parts = objective.split(CLAUSE_SPLIT).map((p) => p.split(/\s+/).join(' ').replace(/[.!]+$/, '').trim()).filter(Boolean);
  return parts.length ? parts : [objective.trim()];
}

const isFeature = (clause) => /^(add|implement|create|introduce|support|enable|expose|build|write)\b/i.test(clause.trim());
const sentence = (text) => {
  const t = text.split(/\s+/).join(' ').replace(/\.+$/, '');
  return t.charAt(0).toUpperCase() + t.slice(1);
};
function shorten(text, limit = 60) {
  const t = text.split(/\s+/).join(' ');
  if (t.length <= limit) return t;
  const cut = t.slice(0, limit - 1);
  return cut.slice(0, cut.lastIndexOf(' ') > 0 ? cut.lastIndexOf(' ') : cut.length).replace(/[,;:]+$/, '') + '…';
}
const shellQuote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'"'"'`)}'`);

// -- risk ------------------------------------------------------------------------------------------

const RISK_RULES = [
  ['deploys', /\bdeploy(?:s|ed|ing|ment|ments)?\b/i],
  ['deletes data', /\bdelet(?:e|es|ed|ing|ion)\b/i],
  ['drops a table or database', /\bdrop\s+(?:the\s+)?(?:[\w.-]+\s+)?(?:table|database|schema|collection|index)e?s?\b/i],
  ['touches production', /\b(?:production|prod)\b/i],
  ['force-pushes', /\bpush\b[^;&|\n]*?\s(?:--force(?:-with-lease)?|-f)\b|\bforce[- ]push/i],
  ['removes files recursively (rm -rf)', /\brm\s+(?:-\w*r\w*f\w*|-\w*f\w*r\w*|-r\s+-f|-f\s+-r|--recursive\s+--force|--force\s+--recursive)\b/i],
  ['truncates data', /\btruncat(?:e|es|ed|ing)\b/i],
  ['rewrites git history (reset --hard)', /\breset\s+--hard\b/i],
  ['publishes a package', /\b(?:npm|cargo|twine|poetry|gem|pnpm|yarn)\s+(?:publish|upload|push)\b/i],
  ['destroys infrastructure', /\bterraform\s+(?:destroy|apply)\b|\bkubectl\s+(?:delete|drain)\b/i],
];

/** Why a task is risky ("deploys: 'deploy' in title"); empty when it is not. */
function riskReasons(task) {
  const fields = [['title', task.title], ['objective', task.objective], ...task.commands.map((c, i) => [`commands[${i}]`, c])];
  const reasons = [];
  for (const [reason, re] of RISK_RULES) {
    for (const [where, text] of fields) {
      const m = re.exec(text);
      if (m) {
        reasons.push(`${reason}: '${m[0]}' in ${where}`);
        break;
      }
    }
  }
  return reasons;
}

/** Copies of the tasks, risky ones set to risk "high" with their reasons (never lowered). */
function flagRisks(tasks) {
  return tasks.map((t) => {
    const found = riskReasons(t);
    if (!found.length) return { ...t };
    return { ...t, risk: 'high', risk_reasons: [...t.risk_reasons, ...found.filter((r) => !t.risk_reasons.includes(r))] };
  });
}

// -- the workspace -------------------------------------------------------------------------------

const NPM_PLACEHOLDER = 'no test specified';
const KNOWN_TOOLS = ['cargo', 'git', 'go', 'make', 'node', 'npm', 'python', 'python3'];

const isFile = (p) => { try { return fs.statSync(p).isFile(); } catch (_) { return false; } };
const isDir = (p) => { try { return fs.statSync(p).isDirectory(); } catch (_) { return false; } };
const read = (p) => { try { return fs.readFileSync(p, 'utf8'); } catch (_) { return null; } };
const firstOf = (root, names, test) => names.find((n) => test(path.join(root, n))) || null;

function insideGit(dir) {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, '.git'))) return true;
    if (path.dirname(d) === d) return false;
  }
}

/**
 * What the workspace offers a plan: test and build commands (each with where it came from),
 * its source, tests and docs directories, whether it is a git work tree, and notes on all that.
 */
function detectWorkspace(workspace) {
  const profile = { tests: [], builds: [], src: '.', testsDir: null, docsDir: null, readme: null, git: false, notes: [] };
  if (workspace === null || workspace === undefined) {
    profile.notes.push('no workspace given: commands and directories were not detected');
    return profile;
  }
  if (!isDir(workspace)) {
    profile.notes.push(`workspace '${workspace}' is not a directory`);
    return profile;
  }
  const at = (name) => path.join(workspace, name);
  const makefile = firstOf(workspace, ['GNUmakefile', 'makefile', 'Makefile'], isFile);
  const targets = makefile ? new Set([...read(at(makefile)).matchAll(/^([A-Za-z0-9_.-]+)\s*:(?!=)/gm)].map((m) => m[1])) : new Set();
  if (targets.has('test')) profile.tests.push({ cmd: 'make test', origin: `${makefile} target 'test'` });
  if (targets.has('build')) profile.builds.push({ cmd: 'make build', origin: `${makefile} target 'build'` });
  const makeOwnsTests = profile.tests.length > 0;
  if (isFile(at('package.json'))) {
    let scripts = {};
    try {
      scripts = JSON.parse(read(at('package.json'))).scripts || {};
    } catch (_) {
      profile.notes.push('package.json is not valid JSON: its scripts were not read');
    }
    const test = typeof scripts.test === 'string' ? scripts.test : '';
    if (test.includes(NPM_PLACEHOLDER)) profile.notes.push("package.json scripts.test is npm's placeholder (always fails): not used");
    else if (test.trim() && !makeOwnsTests) profile.tests.push({ cmd: 'npm test', origin: 'package.json scripts.test' });
    if (typeof scripts.build === 'string') profile.builds.push({ cmd: 'npm run build', origin: 'package.json scripts.build' });
  }
  const pyMarker = firstOf(workspace, ['pyproject.toml', 'setup.py', 'setup.cfg', 'pytest.ini', 'tox.ini'], isFile);
  if (pyMarker && !makeOwnsTests) profile.tests.push({ cmd: 'python -m pytest -q', origin: pyMarker });
  if (isFile(at('Cargo.toml'))) {
    if (!makeOwnsTests) profile.tests.push({ cmd: 'cargo test', origin: 'Cargo.toml' });
    profile.builds.push({ cmd: 'cargo build', origin: 'Cargo.toml' });
  }
  if (isFile(at('go.mod'))) {
    if (!makeOwnsTests) profile.tests.push({ cmd: 'go test ./...', origin: 'go.mod' });
    profile.builds.push({ cmd: 'go build ./...', origin: 'go.mod' });
  }
  profile.src = firstOf(workspace, ['src', 'lib', 'app', 'pkg'], isDir) || '.';
  profile.testsDir = firstOf(workspace, ['tests', 'test', 'spec', '__tests__'], isDir);
  profile.docsDir = firstOf(workspace, ['docs', 'doc'], isDir);
  profile.readme = firstOf(workspace, ['README.md', 'README.rst', 'README.txt', 'README'], isFile);
  profile.git = insideGit(workspace);
  profile.notes.unshift(...profile.tests.map((c) => `test command from ${c.origin}: ${c.cmd}`), ...profile.builds.map((c) => `build command from ${c.origin}: ${c.cmd}`));
  return profile;
}

/** A workspace-root command as seen from a task working in `scopePath`. */
function fromDir(cmd, scopePath) {
  const depth = path.normalize(scopePath).split(path.sep).filter((p) => p && p !== '.').length;
  return depth ? `cd ${Array(depth).fill('..').join('/')} && ${cmd}` : cmd;
}

const CHANGED_CHECK = 'test -n "$(git status --porcelain -- . \':(top,exclude).harness\')"';
const FALLBACK_CHECK = 'test -d .';

// -- validation ----------------------------------------------------------------------------------

/** Each knot of mutually dependent tasks as one cycle, ids in order, ending where it began. */
function findCycles(tasks) {
  const graph = new Map();
  for (const t of tasks) if (!graph.has(t.id)) graph.set(t.id, t.depends_on);
  for (const [id, deps] of graph) graph.set(id, [...new Set(deps)].filter((d) => graph.has(d) && d !== id));
  const reach = new Map();
  for (const start of graph.keys()) {
    const seen = new Set();
    const stack = [...graph.get(start)];
    while (stack.length) {
      const n = stack.pop();
      if (seen.has(n)) continue;
      seen.add(n);
      stack.push(...graph.get(n));
    }
    reach.set(start, seen);
  }
  const cycles = [];
  const placed = new Set();
  for (const start of graph.keys()) {
    if (placed.has(start) || !reach.get(start).has(start)) continue;
    const members = new Set([...graph.keys()].filter((n) => reach.get(start).has(n) && reach.get(n).has(start)));
    members.forEach((n) => placed.add(n));
    cycles.push(shortestCycle(start, members, graph));
  }
  return cycles;
}

function shortestCycle(start, members, graph) {
  const parent = new Map();
  let frontier = [start];
  while (frontier.length) {
    const next = [];
    for (const node of frontier) {
      for (const dep of graph.get(node)) {
        if (!members.has(dep)) continue;
        if (dep === start) {
          const back = [node];
          while (back[back.length - 1] !== start) back.push(parent.get(back[back.length - 1]));
          return [start, ...back.slice(0, -1).reverse(), start];
        }
        if (!parent.has(dep)) {
          parent.set(dep, node);
          next.push(dep);
        }
      }
    }
    frontier = next;
  }
  return [start, start];
}

/** The real path of `p`, resolving the part that exists (a missing tail is appended as is). */
function realish(p) {
  let head = path.resolve(p);
  const tail = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(head), ...tail.reverse());
    } catch (_) {
      if (path.dirname(head) === head) return path.resolve(p);
      tail.push(path.basename(head));
      head = path.dirname(head);
    }
  }
}

const inside = (child, parent) => child === parent || child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);

/** [code, message] when `scopePath` is not safely inside `workspace`, else null. */
function scopeProblem(scopePath, workspace) {
  const p = scopePath || '.';
  if (workspace === null) {
    if (path.isAbsolute(p)) return ['absolute_scope_path', `absolute scope path '${p}' cannot be checked without a workspace`];
    if (path.normalize(p).split(path.sep)[0] === '..') return ['scope_outside_workspace', `scope path '${p}' climbs out of the workspace with '..'`];
    return null;
  }
  const base = path.resolve(workspace);
  const target = path.resolve(base, p);
  if (!inside(target, base)) {
    const how = path.isAbsolute(p) ? 'is an absolute path outside' : "climbs with '..' out of";
    return ['scope_outside_workspace', `scope path '${p}' ${how} the workspace ${base}`];
  }
  const realBase = realish(base);
  const realTarget = realish(target);
  if (!inside(realTarget, realBase)) return ['scope_outside_workspace', `scope path '${p}' resolves through a symlink to ${realTarget}, outside the workspace`];
  return null;
}

const softLevel = (override, strictness) => (override === null || override === undefined ? (strictness === 'generated' ? 'error' : 'warning') : override === 'off' ? null : override);

/**
 * Every problem of a list of tasks at once. options: { workspace, strictness ('generated' |
 * 'file'), config: {min_tasks, max_tasks, size, vague}, objective (checked when given), root }.
 */
function validate(tasks, { workspace = null, strictness = 'file', config = {}, objective = null, root = 'packets' } = {}) {
  const cfg = { min_tasks: 3, max_tasks: 7, size: null, vague: null, ...config };
  const problems = [];
  const add = (severity, code, message, taskId = null, where = null) => problems.push({ severity, code, message, task_id: taskId, path: where });
  const at = (i, field) => `${root}[${i}]` + (field ? `.${field}` : '');
  const size = softLevel(cfg.size, strictness);
  const vague = softLevel(cfg.vague, strictness);
  let scopeRoot = workspace;
  if (workspace !== null && !isDir(workspace)) {
    add('error', 'workspace_not_found', `workspace '${workspace}' is not a directory`, null, 'workspace');
    scopeRoot = null;
  }
  if (!tasks.length) add('error', 'empty_plan', 'the plan has no tasks', null, root);
  else if (size && (tasks.length < cfg.min_tasks || tasks.length > cfg.max_tasks)) {
    add(size, 'plan_size', `the plan has ${tasks.length} tasks; expected ${cfg.min_tasks} to ${cfg.max_tasks}`, null, root);
  }
  let why;
  if (objective !== null && vague && (why = vagueness(objective))) add(vague, 'vague_objective', `the objective '${objective}' is vague: ${why}`, null, 'objective');
  const ids = new Set(tasks.map((t) => t.id));
  const firstIndex = new Map();
  tasks.forEach((t, i) => {
    if (firstIndex.has(t.id)) add('error', 'duplicate_id', `task id '${t.id}' is used again (first at ${at(firstIndex.get(t.id))})`, t.id, at(i, 'id'));
    else firstIndex.set(t.id, i);
    t.depends_on.forEach((dep, j) => {
      const where = at(i, `depends_on[${j}]`);
      if (dep === t.id) add('error', 'self_dependency', `task '${t.id}' depends on itself`, t.id, where);
      else if (!ids.has(dep)) add('error', 'unknown_dependency', `task '${t.id}' depends on '${dep}', which is not in the plan`, t.id, where);
      else if (t.depends_on.indexOf(dep) < j) add('warning', 'duplicate_dependency', `task '${t.id}' lists '${dep}' twice`, t.id, where);
    });
    if (!t.acceptance_tests.some((c) => c.trim())) {
      add('error', 'missing_acceptance_tests', `task '${t.id}' has no acceptance tests: nothing would decide whether it worked`, t.id, at(i, 'acceptance_tests'));
    }
    for (const field of ['commands', 'acceptance_tests']) {
      t[field].forEach((c, j) => { if (!c.trim()) add('error', 'empty_command', `task '${t.id}' has an empty entry in ${field}`, t.id, at(i, `${field}[${j}]`)); });
    }
    if (vague && (why = vagueness(t.objective))) add(vague, 'vague_objective', `task '${t.id}' objective '${t.objective}' is vague: ${why}`, t.id, at(i, 'objective'));
    const scope = scopeProblem(t.scope_path, scopeRoot);
    if (scope) add(scope[0] === 'absolute_scope_path' ? 'warning' : 'error', scope[0], `task '${t.id}': ${scope[1]}`, t.id, at(i, 'scope_path'));
  });
  for (const cycle of findCycles(tasks)) add('error', 'cycle', `dependency cycle: ${cycle.join(' -> ')}`, cycle[0]);
  const risky = [];
  tasks.forEach((t, i) => {
    const reasons = riskReasons(t);
    const all = reasons.length ? reasons : t.risk_reasons.length ? t.risk_reasons : t.risk === 'high' ? ['marked risk high'] : [];
    if (all.length) {
      add('warning', 'risky_task', `task '${t.id}' is risky: ${all.join('; ')}`, t.id, at(i));
      risky.push(t.id);
    }
  });
  return { valid: !problems.some((p) => p.severity === 'error'), problems, risky };
}

function refuse(report, what, data) {
  const errors = report.problems.filter((p) => p.severity === 'error');
  const summary = errors.slice(0, 3).map((p) => p.message).join('; ') + (errors.length > 3 ? `; and ${errors.length - 3} more` : '');
  return new RpcError(CODES.INVALID_PLAN, `${what} is not valid (${errors.length} error(s)): ${summary}`, { problems: report.problems, ...data });
}

function checkBackend(context) {
  if (context.backend !== 'heuristic') {
    throw new RpcError(CODES.INVALID_PARAMS, `unknown planner backend '${context.backend}'`, { backend: context.backend, available: ['heuristic'] });
  }
}

const toolsOf = (tasks) => {
  const found = new Set();
  for (const t of tasks) for (const c of [...t.commands, ...t.acceptance_tests]) {
    for (const m of c.matchAll(/(?:^|&&|\|\||;|\$\(|\|)\s*([A-Za-z0-9_.+-]+)/g)) found.add(m[1]);
  }
  return KNOWN_TOOLS.filter((t) => found.has(t));
};

// -- decompose -----------------------------------------------------------------------------------

/** The drafts of a plan before ids: what each task does, where, how it is checked, what it waits for. */
function layout(objective, profile, maxTasks) {
  const short = shorten(objective);
  const clauses = splitClauses(objective);
  const testsDir = profile.testsDir || '.';
  const root = (cmds, scope) => cmds.map((c) => fromDir(c.cmd, scope));
  const changed = profile.git ? [CHANGED_CHECK] : [];
  const orFallback = (checks) => ([...new Set(checks)].length ? [...new Set(checks)] : [FALLBACK_CHECK]);
  const budget = Math.min(Math.max(maxTasks, 3), 7);
  const feature = clauses.some(isFeature);
  const docsTarget = profile.docsDir ? `${profile.docsDir}/` : profile.readme || 'README.md';
  const phrase = keyPhrase(objective);

  let room = budget - 3; // change, tests and verify always stay
  const useLocate = room >= 1;
  room -= useLocate ? 1 : 0;
  const extraChanges = Math.min(clauses.length - 1, room);
  room -= extraChanges;
  const useDocs = feature && phrase !== null && room >= 1;
  const groups = [...clauses.slice(0, extraChanges).map((c) => [c]), clauses.slice(extraChanges)];

  const drafts = [];
  if (useLocate) {
    drafts.push({ key: 'locate', title: `Locate the code for: ${short}`, objective: `Find the files in ${profile.src === '.' ? 'the workspace' : profile.src + '/'} involved in: ${objective}. List them for the tasks that follow.`, scope: profile.src, acceptance: ['test -n "$(ls -A)"'], after: [] });
  }
  groups.forEach((group, i) => {
    const text = group.map(sentence).join('; ');
    drafts.push({ key: `change${i + 1}`, title: shorten(text, 80), objective: `${text}.`, scope: profile.src, acceptance: orFallback([...changed, ...root(profile.builds, profile.src), ...root(profile.tests, profile.src)]), after: useLocate ? ['locate'] : [] });
  });
  const changes = drafts.filter((d) => d.key.startsWith('change')).map((d) => d.key);
  drafts.push({ key: 'tests', title: `Add or update tests for: ${short}`, objective: `Add or update tests in ${testsDir === '.' ? 'the workspace' : testsDir + '/'} that cover: ${objective}.`, scope: testsDir, acceptance: orFallback([...changed, ...root(profile.tests, testsDir)]), after: changes });
  if (useDocs) {
    const grep = profile.docsDir ? `grep -rqiF -- ${shellQuote(phrase)} .` : `grep -qiF -- ${shellQuote(phrase)} ${shellQuote(docsTarget)}`;
    drafts.push({ key: 'docs', title: `Document: ${short}`, objective: `Document the change in ${docsTarget} (${objective}); the text must mention '${phrase}'.`, scope: profile.docsDir || '.', acceptance: [grep], after: changes });
  }
  const builds = root(profile.builds, '.');
  const tests = root(profile.tests, '.');
  const depended = new Set(drafts.flatMap((d) => d.after));
  drafts.push({ key: 'verify', title: 'Run the full verification', objective: `Run the workspace's build and tests on the finished work for: ${objective}.`, scope: '.', commands: [...new Set([...builds, ...tests])], acceptance: tests.length ? tests : builds.length ? builds : orFallback(changed), after: drafts.map((d) => d.key).filter((k) => !depended.has(k)) });
  return drafts;
}

/** Objective -> a validated, risk-flagged plan of 3..7 tasks; -32004 listing every problem otherwise. */
function decompose(objective, context) {
  checkBackend(context);
  const text = objective.split(/\s+/).join(' ');
  const profile = detectWorkspace(context.workspace);
  const notes = [...profile.notes];
  if (!profile.tests.length) notes.push(`no test command found: verification accepts ${profile.builds.length ? 'the build commands' : profile.git ? 'a change in the git work tree' : "'test -d .' only (no git, no tests)"}`);
  const drafts = layout(text, profile, context.max_tasks);
  const ids = new Map(drafts.map((d, i) => [d.key, `t${i + 1}`]));
  const tasks = flagRisks(drafts.map((d) => packet({
    id: ids.get(d.key),
    title: d.title,
    objective: d.objective,
    scope: d.scope === '.' ? 'workspace' : 'module',
    scope_path: d.scope,
    depends_on: d.after.map((k) => ids.get(k)),
    commands: d.commands || [],
    acceptance_tests: d.acceptance,
  })));
  const plan = { objective: text, tasks, revision: 1, source: 'generated', defaults: {}, requires: { env: [], tools: toolsOf(tasks), mcp: false } };
  const report = validate(tasks, { workspace: context.workspace, strictness: 'generated', config: { max_tasks: context.max_tasks }, objective: text, root: 'tasks' });
  if (!report.valid) throw refuse(report, 'the generated plan', { notes });
  return { plan, report, notes };
}

// -- refine --------------------------------------------------------------------------------------

const ID = '[A-Za-z0-9][\\w.\\-]*';
const IDS = `${ID}(?:(?:\\s*,\\s*|\\s+and\\s+|\\s+)${ID})*`;
const UNITS = { '': 1, s: 1, sec: 1, secs: 1, second: 1, seconds: 1, m: 60, min: 60, mins: 60, minute: 60, minutes: 60, h: 3600, hour: 3600, hours: 3600 };
const DIRECTIVES = {
  remove: new RegExp(`^(?:skip|remove|drop|delete)\\s+(?:the\\s+)?(?:tasks?\\s+)?(${IDS})$`, 'i'),
  add: /^add\s+(?:a\s+)?(?:new\s+)?(?:task|step)\s*(?:[:\-\u2014]\s*|\s)(.+)$/i,
  rename: new RegExp(`^rename\\s+(?:task\\s+)?(${ID})\\s+(?:to|as)\\s+(.+)$`, 'i'),
  unlink: new RegExp(`^(?:task\\s+)?(${ID})\\s+(?:no\\s+longer\\s+depends|does\\s*n[o']t\\s+depend)\\s+on\\s+(${IDS})$`, 'i'),
  before: new RegExp(`^(?:task\\s+)?(${ID})\\s+(?:should\\s+)?(?:run\\s+)?before\\s+(${ID})$`, 'i'),
  after: new RegExp(`^(?:task\\s+)?(${ID})\\s+(?:(?:should\\s+)?(?:run\\s+)?after|depends\\s+on|requires|waits\\s+for)\\s+(${IDS})$`, 'i'),
  timeout: new RegExp(`^(?:set\\s+)?(?:the\\s+)?timeout\\s+(?:of\\s+|for\\s+)?(?:task\\s+)?(${ID})\\s+(?:to\\s+|=\\s*)?(\\d+(?:\\.\\d+)?)\\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?)?$`, 'i'),
  scope: new RegExp(`^(?:scope|limit|restrict)\\s+(?:task\\s+)?(${ID})\\s+(?:to\\s+|in\\s+)?(\\S+)$`, 'i'),
};
const DIRECTIVE_START = /^(?:skip|remove|drop|delete|add\s+(?:a\s+)?(?:new\s+)?(?:task|step)|rename|(?:set\s+)?(?:the\s+)?timeout|scope|limit|restrict)\b|^(?:task\s+)?[A-Za-z0-9][\w.-]*\s+(?:should\s+|run\s+)*(?:after|before|depends|requires|waits|no\s+longer|does)\b/i;

/** Feedback cut into directives: new lines, ";" and full stops always cut; "," and "and" only before a directive. */
function segments(feedback) {
  const out = [];
  for (const hard of feedback.split(/\n|;|\.\s+/)) {
    const pieces = hard.split(/(,\s*|\s+and\s+|\s+then\s+)/i);
    let current = '';
    for (let i = 0; i < pieces.length; i += 2) {
      const piece = pieces[i];
      if (current && DIRECTIVE_START.test(piece.trim())) {
        out.push(current);
        current = piece;
      } else {
        current += (current ? pieces[i - 1] || '' : '') + piece;
      }
    }
    out.push(current);
  }
  return out.map((s) => s.trim().replace(/[.!]+$/, '').trim()).filter(Boolean);
}

const splitIds = (text) => text.split(/\s*,\s*|\s+and\s+|\s+/i).filter(Boolean);

/** Apply free-text feedback; returns the next revision and what each directive did, in order. */
function applyFeedback(plan, feedback, fallbackTests) {
  let tasks = plan.tasks.map((t) => ({ ...t, depends_on: [...t.depends_on] }));
  const applied = [];
  const unclear = [];
  const find = (id) => tasks.find((t) => t.id === id) || tasks.find((t) => t.id.toLowerCase() === id.toLowerCase());
  // A directive naming tasks that do not exist is reported; one whose "ids" are plain words
  // ("drop the tests task") was no directive at all and becomes a clarification (false).
  const looksLikeId = (name) => Boolean(find(name)) || /^t\d+$/i.test(name);
  const missing = (segment, names) => (names.every(looksLikeId) ? applied.push(`not applied '${segment}': no task ${names.map((n) => `'${n}'`).join(', ')}`) : false);
  const handlers = {
    remove(segment, [, ids]) {
      const names = splitIds(ids);
      if (!names.every(looksLikeId)) return false;
      const unknown = names.filter((n) => !find(n));
      if (unknown.length) missing(segment, unknown);
      for (const name of names) {
        const gone = find(name);
        if (!gone) continue;
        tasks = tasks.filter((t) => t.id !== gone.id);
        const rewired = [];
        for (const t of tasks) {
          if (!t.depends_on.includes(gone.id)) continue;
          const deps = t.depends_on.filter((d) => d !== gone.id);
          for (const d of gone.depends_on) if (!deps.includes(d) && d !== t.id) deps.push(d);
          t.depends_on = deps;
          rewired.push(t.id);
        }
        const note = rewired.length ? `; ${rewired.join(', ')} now ${rewired.length === 1 ? 'depends' : 'depend'} on ${gone.depends_on.join(', ') || 'nothing'} instead` : '';
        applied.push(`removed ${gone.id} (${gone.title})${note}`);
      }
    },
    add(segment, [, raw]) {
      const text = sentence(raw.trim().replace(/^["'`]+|["'`]+$/g, ''));
      const last = tasks[tasks.length - 1];
      const numbered = tasks.map((t) => /^t(\d+)$/.exec(t.id)).filter(Boolean).map((m) => Number(m[1]));
      let id = `t${Math.max(0, ...numbered) + 1}`;
      if (!numbered.length && tasks.length) {
        const base = text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40).replace(/-+$/, '') || 'task';
        id = base;
        for (let n = 2; find(id); n += 1) id = `${base}-${n}`;
      }
      if (!text) return false;
      tasks.push(packet({ id, title: text, objective: text, depends_on: last ? [last.id] : [], acceptance_tests: last && last.acceptance_tests.length ? [...last.acceptance_tests] : [...fallbackTests] }));
      applied.push(`added ${id} (${text})${last ? ` after ${last.id}` : ''}`);
    },
    rename(segment, [, id, rawTitle]) {
      const task = find(id);
      if (!task) return missing(segment, [id]);
      const title = rawTitle.trim().replace(/^["'`]+|["'`]+$/g, '');
      if (task.objective === task.title) task.objective = title;
      task.title = title;
      applied.push(`renamed ${task.id} to '${title}'`);
    },
    unlink(segment, [, id, ids]) {
      const task = find(id);
      if (!task) return missing(segment, [id]);
      const names = splitIds(ids);
      const gone = names.filter((n) => task.depends_on.includes(n));
      task.depends_on = task.depends_on.filter((d) => !gone.includes(d));
      applied.push(gone.length ? `${task.id} no longer depends on ${gone.join(', ')}` : `${task.id} did not depend on ${names.join(', ')}`);
    },
    before(segment, [, first, then]) {
      return link(segment, then, [first]);
    },
    after(segment, [, id, ids]) {
      return link(segment, id, splitIds(ids));
    },
    timeout(segment, [, id, n, unit]) {
      const task = find(id);
      if (!task) return missing(segment, [id]);
      const seconds = Number(n) * UNITS[(unit || '').toLowerCase()];
      if (!(seconds > 0)) return applied.push(`not applied '${segment}': a timeout must be more than 0 seconds`);
      task.timeout = seconds;
      applied.push(`timeout of ${task.id} set to ${seconds} s`);
    },
    scope(segment, [, id, raw]) {
      const task = find(id);
      if (!task) return missing(segment, [id]);
      const where = raw.replace(/^["'`]+|["'`]+$/g, '').replace(/\/+$/, '') || '.';
      task.scope_path = where;
      task.scope = where === '.' ? 'workspace' : 'module';
      applied.push(`${task.id} now works in ${where}`);
    },
  };
  function link(segment, id, deps) {
    const task = find(id);
    const unknown = [...(task ? [] : [id]), ...deps.filter((d) => !find(d))];
    if (unknown.length) return missing(segment, unknown);
    const real = deps.map((d) => find(d).id);
    task.depends_on = [...task.depends_on, ...real.filter((d) => !task.depends_on.includes(d))];
    return applied.push(`${task.id} now depends on ${real.join(', ')}`);
  }
  for (const segment of segments(feedback)) {
    const handled = Object.entries(DIRECTIVES).some(([name, re]) => {
      const m = re.exec(segment);
      return m !== null && handlers[name](segment, m) !== false;
    });
    if (!handled) unclear.push(segment);
  }
  if (unclear.length) {
    const text = unclear.join('; ');
    tasks = tasks.map((t) => ({ ...t, objective: `${t.objective.trimEnd()} Clarification: ${text}` }));
    applied.push(`clarification added to ${tasks.map((t) => t.id).join(', ') || 'no task (the plan is empty)'}: '${text}'`);
  }
  if (!feedback.trim()) applied.push('no feedback given: the tasks are unchanged');
  return { plan: { ...plan, tasks, revision: plan.revision + 1, source: 'refined' }, applied };
}

/** Plan + feedback -> the next revision, validated (size only warns); -32004 with applied and plan otherwise. */
function refine(plan, feedback, context, strictness) {
  checkBackend(context);
  const profile = detectWorkspace(context.workspace);
  const fallback = profile.tests.length ? profile.tests.map((c) => c.cmd) : [profile.git ? CHANGED_CHECK : FALLBACK_CHECK];
  const edited = applyFeedback(plan, feedback, fallback);
  const refined = { ...edited.plan, tasks: flagRisks(edited.plan.tasks) };
  refined.requires = { ...refined.requires, tools: [...new Set([...refined.requires.tools, ...toolsOf(refined.tasks)])].sort() };
  const level = strictness || (plan.source === 'file' ? 'file' : 'generated');
  const report = validate(refined.tasks, { workspace: context.workspace, strictness: level, config: { max_tasks: context.max_tasks, size: 'warning' }, objective: refined.objective, root: 'tasks' });
  if (!report.valid) throw refuse(report, 'the refined plan', { applied: edited.applied, plan: refined });
  return { plan: refined, applied: edited.applied, report };
}

module.exports = { decompose, detectWorkspace, findCycles, refine, riskReasons, segments, validate, vagueness };
