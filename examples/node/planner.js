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
//
// The plans follow the rules of the Python heuristic (services/planning/heuristic.py): every
// acceptance test can fail (never `test -d .` or `ls -A`), and no command leaves its task's
// directory (never `cd ..`). A task that runs a rooted command (pytest, make, go's ./...) works
// from the workspace root and its objective names the directory the change belongs in. Where a
// step has no check that can fail (locating code is reading; without git, tests or a build a
// change leaves nothing to run), it is a manual step with no acceptance tests and a
// `confirmation` saying what a person confirms, and the notes say so.

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

// -- reading shell commands ----------------------------------------------------------------------
//
// An acceptance test is its task's verdict, so one that cannot fail proves nothing. vacuousReason
// names those with the rules of services/planning/vacuous.py, read the shell's way, each a
// certainty: `true`, `:`, `echo`, `printf` of text, `pwd`, `exit 0`, an assignment alone,
// `cd`/`pushd`/`popd` (they only move); `ls` of the working directory (no path, or `.`);
// `test`/`[ ]` true by construction (`-d .`, `-n "$(ls -A)"`, a constant). In `a && b` b runs
// after a succeeded, in `a || b` after it failed; after `;`, `&` or a new line the last list
// decides, `!` inverts and a pipeline's status is its last command's. So `X || true`,
// `X; exit 0` and `cd src && ls` cannot fail. Anything else is a real check. scopeEscape is
// lexical: `cd ..`, `cd /abs`, `cd ~`, and any argument that climbs out (`../x`, `--root=..`).

/** `text` quoted as Python's repr quotes it, so messages read as the Python service's do. */
function quote(text) {
  const body = text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
  return body.includes("'") && !body.includes('"') ? `"${body}"` : `'${body.replace(/'/g, "\\'")}'`;
}

/** The operator at `text[i]`, or null (`>&2`, `&>f` and `>|f` are redirections). */
function operatorAt(text, i, buf) {
  const ch = text[i];
  const prev = buf.slice(-1);
  if (ch === '\n' || ch === ';') return ch;
  if (ch === '&') {
    if (text.startsWith('&&', i)) return '&&';
    return prev === '<' || prev === '>' || text.startsWith('&>', i) ? null : '&';
  }
  if (ch === '|') {
    if (text.startsWith('||', i)) return '||';
    if (prev === '>') return null;
    return text.startsWith('|&', i) ? '|&' : '|';
  }
  return null;
}

/**
 * `text` cut at its top-level operators (`&&`, `||`, `|`, `;`, `&`, new lines) as [parts, ops];
 * quotes, `( )`, `$( )`, backquotes and comments are respected. null when they do not balance.
 */
function splitOperators(text) {
  const parts = [];
  const ops = [];
  const stack = []; // open contexts: ', ", (, `
  let buf = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    const top = stack[stack.length - 1];
    if (top === "'" || (top === '`' && ch !== '\\')) {
      buf += ch;
      if (ch === top) stack.pop();
      i += 1;
    } else if (ch === '\\' && i + 1 < text.length) {
      buf += text.slice(i, i + 2);
      i += 2;
    } else if (top === '"') {
      buf += ch;
      if (ch === '"') stack.pop();
      else if (ch === '`') stack.push('`');
      else if (text.startsWith('$(', i)) {
        buf += '(';
        stack.push('(');
        i += 1;
      }
      i += 1;
    } else if (ch === "'" || ch === '"' || ch === '`' || ch === '(') {
      stack.push(ch);
      buf += ch;
      i += 1;
    } else if (ch === ')') {
      if (top !== '(') return null;
      stack.pop();
      buf += ch;
      i += 1;
    } else if (ch === '#' && /(^|[\s();|&])$/.test(buf)) {
      while (i < text.length && text[i] !== '\n') i += 1;
    } else {
      const op = top === undefined ? operatorAt(text, i, buf) : null;
      if (op) {
        parts.push(buf.trim());
        ops.push(op === '|&' ? '|' : op);
        buf = '';
        i += op.length;
      } else {
        buf += ch;
        i += 1;
      }
    }
  }
  if (stack.length) return null;
  parts.push(buf.trim());
  return [parts, ops];
}

/** The words of one simple command with the shell's quoting removed; null on an open quote or a trailing backslash. */
function shellWords(part) {
  const out = [];
  let word = null;
  for (let i = 0; i < part.length; i += 1) {
    const ch = part[i];
    if (/\s/.test(ch)) {
      if (word !== null) out.push(word);
      word = null;
      continue;
    }
    if (word === null) word = '';
    if (ch === "'") {
      const end = part.indexOf("'", i + 1);
      if (end < 0) return null;
      word += part.slice(i + 1, end);
      i = end;
    } else if (ch === '"') {
      let j = i + 1;
      for (; j < part.length && part[j] !== '"'; j += 1) {
        if (part[j] === '\\' && '$`"\\\n'.includes(part[j + 1])) j += 1;
        word += part[j];
      }
      if (j >= part.length) return null;
      i = j;
    } else if (ch === '\\') {
      if (i + 1 === part.length) return null; // nothing left to escape
      word += part[i + 1];
      i += 1;
    } else {
      word += ch;
    }
  }
  if (word !== null) out.push(word);
  return out;
}

const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=/;
const REDIRECT = /^(\d*)(>>|>\||>&|<&|&>>|&>|<>|<<<|<<|<|>)(.*)$/;
const HARMLESS_TARGETS = new Set(['/dev/null', '/dev/stdout', '/dev/stderr', '&1', '&2', '&-', '1', '2', '-']);

/** [words without redirections, whether every one was harmless (never input from a file)]. */
function stripRedirections(words) {
  const out = [];
  let harmless = true;
  for (let k = 0; k < words.length; k += 1) {
    const m = REDIRECT.exec(words[k]);
    if (!m) {
      out.push(words[k]);
      continue;
    }
    let target = m[3];
    if (!target && k + 1 < words.length) target = words[++k];
    if (m[2].startsWith('<') && m[2] !== '<&') harmless = harmless && target === '/dev/null';
    else harmless = harmless && (HARMLESS_TARGETS.has(target) || !target.includes('/'));
  }
  return [out, harmless];
}

const HERE = new Set(['.', './', '$PWD', '${PWD}', '$(pwd)']);
const ALWAYS_THERE = new Set([...HERE, '..', '../', '/']);
const constant = (word) => !/[$`*?[~]/.test(word);
const listsHere = (words) => words.length > 0 && words[0] === 'ls' && words.slice(1).every((w) => w.startsWith('-') || HERE.has(w));
/** printf arguments whose conversions cannot fail (%s, %b, %q, %%). */
const printsText = (arg) => [...arg.matchAll(/%(%|[-+ #0-9.*]*[A-Za-z]?)/g)].every((m) => m[1] === '%' || /[sbq]$/.test(m[1]));

/** The command of a word that is exactly one `$( ... )`, else null. */
function substitution(word) {
  if (!word.startsWith('$(') || !word.endsWith(')')) return null;
  const parsed = splitOperators(word.slice(1));
  return parsed && parsed[0].length === 1 ? word.slice(2, -1).trim() : null;
}

/** Why the command of a `$( )` always prints something, or null. */
function alwaysPrints(inner) {
  const words = shellWords(inner);
  if (!words || !words.length) return null;
  if (words.length === 1 && words[0] === 'pwd') return '$(pwd) is never empty';
  if (listsHere(words)) return `$(${inner}) lists the working directory, which has files in it before any work is done`;
  if (words[0] === 'echo' && words.slice(1).some((w) => w && constant(w) && !w.startsWith('-'))) return `$(${inner}) prints constant text`;
  return null;
}

/** Why `test args` is always true, or null. */
function testReason(args, shown) {
  if (args.length === 2 && (args[0] === '-d' || args[0] === '-e') && ALWAYS_THERE.has(args[1])) {
    return `${quote(shown)} is always true: ${quote(args[1])} always exists`;
  }
  if (args.length === 1 || (args.length === 2 && args[0] === '-n')) {
    const operand = args[args.length - 1];
    if (operand && constant(operand) && !(args.length === 1 && operand.startsWith('-'))) return `${quote(shown)} tests a constant, non-empty string`;
    const inner = substitution(operand);
    const why = inner === null ? null : alwaysPrints(inner);
    if (why) return `${quote(shown)} is always true: ${why}`;
  }
  if (args.length === 2 && args[0] === '-z' && args[1] === '') return `${quote(shown)} tests a constant, empty string`;
  if (args.length === 3 && ['=', '==', '-eq'].includes(args[1]) && args[0] === args[2] && constant(args[0])) return `${quote(shown)} compares a constant with itself`;
  return null;
}

// How a piece of shell can end: a status the script goes on from ('ok', 'failed'), or an exit
// of the shell ('exit_ok', 'exit_failed'). A verdict is { ends: Set, why }.
const verdict = (ends, why = null) => ({ ends: new Set(ends), why });
const UNKNOWN = verdict(['ok', 'failed']);
const alwaysOk = (v) => [...v.ends].every((e) => e === 'ok' || e === 'exit_ok');
/** Ends of a subshell or a pipe's part, seen from outside: an exit there ends only it. */
const contained = (ends) => [...ends].map((e) => ({ exit_ok: 'ok', exit_failed: 'failed' })[e] || e);

/** A simple command (or a subshell): how it can end. */
function simpleCommand(part) {
  if (part.startsWith('(') && part.endsWith(')')) {
    const inner = script(part.slice(1, -1));
    return verdict(contained(inner.ends), inner.why);
  }
  let words = shellWords(part);
  if (words === null) return UNKNOWN;
  let harmless;
  [words, harmless] = stripRedirections(words);
  if (!harmless) return UNKNOWN;
  const k = words.findIndex((w) => !ASSIGNMENT.test(w));
  const assignments = k < 0 ? words : words.slice(0, k);
  words = k < 0 ? [] : words.slice(k);
  if (!words.length) {
    return assignments.length && !assignments.some((a) => a.includes('$(') || a.includes('`')) ? verdict(['ok'], `${quote(part)} only sets variables`) : UNKNOWN;
  }
  const [name, ...args] = words;
  if (name === 'true') return verdict(['ok'], "'true' always succeeds");
  if (name === ':' && !args.some((a) => a.includes('${'))) return verdict(['ok'], "':' does nothing and succeeds");
  if (name === 'false') return verdict(['failed']);
  if (name === 'exit') {
    if (args.length === 1 && /^\d+$/.test(args[0])) {
      return Number(args[0]) % 256 === 0 ? verdict(['exit_ok'], `${quote(part)} ends the shell with success`) : verdict(['exit_failed']);
    }
    return verdict(['exit_ok', 'exit_failed']); // 'exit' alone passes on the last status
  }
  if (name === 'echo' || (name === 'printf' && args.every(printsText))) return verdict(['ok'], `${quote(name)} only prints`);
  if (name === 'pwd') return verdict(['ok'], "'pwd' only prints the working directory");
  if (['cd', 'pushd', 'popd'].includes(name)) return verdict(['ok'], `${quote(name)} only changes the directory, it checks nothing`);
  if (listsHere(words)) return verdict(['ok'], `${quote(part)} lists the working directory, which always exists`);
  if (name === 'test' || name === '[') {
    let operands = args;
    if (name === '[') {
      if (args[args.length - 1] !== ']') return UNKNOWN;
      operands = args.slice(0, -1);
    }
    if (!operands.length) return verdict(['failed']);
    const why = testReason(operands, part);
    return why ? verdict(['ok'], why) : UNKNOWN;
  }
  return UNKNOWN;
}

/** The last command decides (no pipefail); `!` inverts; exits inside a pipe stay inside. */
function pipeline(parts) {
  const negated = /^!\s/.test(parts[0]);
  const cmds = negated ? [parts[0].slice(1).trim(), ...parts.slice(1)] : parts;
  let v = simpleCommand(cmds[cmds.length - 1]);
  if (cmds.length > 1) v = verdict(contained(v.ends), v.why);
  if (!negated) return v;
  const flipped = [...v.ends].map((e) => ({ ok: 'failed', failed: 'ok' })[e] || e);
  return verdict(flipped, `${quote(cmds.join(' | '))} always fails, and '!' turns that into success`);
}

/** `p0 op p1 op p2 ...` with && and ||, left to right as the shell reads it. */
function andOr(pipes, chain) {
  const first = pipeline(pipes[0]);
  let { ends, why } = first;
  chain.forEach((op, k) => {
    const goesOn = op === '&&' ? 'ok' : 'failed';
    if (!ends.has(goesOn)) return; // this part never runs
    const next = pipeline(pipes[k + 1]);
    ends = new Set([...ends].filter((e) => e !== goesOn).concat([...next.ends]));
    if (alwaysOk({ ends })) {
      if (op === '||') {
        const before = pipes.slice(0, k + 1).map((p) => p.join(' | ')).join(' ');
        why = `it ends in '|| ${pipes[k + 1].join(' | ')}', so it succeeds whether or not ${quote(before)} does`;
      } else {
        why = `${why}, and ${next.why}`;
      }
    }
  });
  return { ends, why };
}

/** Parts grouped as the shell groups them: [pipes, and-or operators, background] lists; null on a syntax error. */
function shellLists(parts, ops) {
  const lists = [];
  let pipes = [[]];
  let chain = [];
  for (let k = 0; k < parts.length; k += 1) {
    const before = k ? ops[k - 1] : null;
    const after = k < ops.length ? ops[k] : null;
    if (!parts[k]) {
      if ((before === null || [';', '\n', '&'].includes(before)) && (after === null || after === '\n')) continue;
      return null; // '&& ||', '| ;', a leading ';': the shell refuses them
    }
    pipes[pipes.length - 1].push(parts[k]);
    if (after === '|') continue;
    if (after === '&&' || after === '||') {
      chain.push(after);
      pipes.push([]);
      continue;
    }
    lists.push([pipes, chain, after === '&']);
    pipes = [[]];
    chain = [];
  }
  return lists;
}

/** A whole command line: the last list that runs decides its status, unless an earlier one exited. */
function script(text) {
  const parsed = splitOperators(text);
  const lists = parsed && shellLists(...parsed);
  if (!lists) return UNKNOWN;
  if (!lists.length) return verdict(['ok'], 'it is empty');
  let ends = new Set(['ok']);
  let why = null;
  let ran = 0;
  for (const [pipes, chain, background] of lists) {
    if (![...ends].some((e) => e === 'ok' || e === 'failed')) break; // every way here has exited already
    ran += 1;
    const v = background
      ? verdict(['ok'], `${quote(pipes.map((p) => p.join(' | ')).join(' '))} runs in the background, so its status is always 0`)
      : andOr(pipes, chain);
    ends = new Set([...ends].filter((e) => e.startsWith('exit_')).concat([...v.ends]));
    why = v.why;
  }
  if (ran > 1 && why) why = `only its last command decides its status, and ${why}`;
  return { ends, why };
}

/** Why `command` cannot fail as an acceptance test, or null when it is a real check. Never throws. */
function vacuousReason(command) {
  if (!command.trim()) return null;
  const v = script(command);
  return alwaysOk(v) ? v.why || 'it always succeeds' : null;
}

const HOME = new Set(['~', '$HOME', '${HOME}']);
/** True when `p`, normalised, starts above the directory it is read from. */
function climbs(p) {
  if (!p || p.startsWith('/')) return false;
  const norm = path.posix.normalize(p);
  return norm === '..' || norm.startsWith('../');
}

/** The commands of the outermost `$( )` and backquotes in `word`. */
function substitutions(word) {
  const found = [];
  for (let i = 0; i < word.length; i += 1) {
    if (word.startsWith('$(', i)) {
      let depth = 1;
      let j = i + 2;
      for (; j < word.length && depth; j += 1) depth += word[j] === '(' ? 1 : word[j] === ')' ? -1 : 0;
      found.push(word.slice(i + 2, j - 1));
      i = j - 1;
    } else if (word[i] === '`') {
      const j = word.indexOf('`', i + 1);
      if (j < 0) break;
      found.push(word.slice(i + 1, j));
      i = j;
    }
  }
  return found;
}

function escapeOfPart(part) {
  if (part.startsWith('(') && part.endsWith(')')) return scopeEscape(part.slice(1, -1));
  const words = shellWords(part) || part.split(/\s+/);
  for (const word of words) {
    for (const inner of substitutions(word)) {
      const found = scopeEscape(inner);
      if (found) return found;
    }
  }
  const k = words.findIndex((w) => !ASSIGNMENT.test(w));
  if (k >= 0 && (words[k] === 'cd' || words[k] === 'pushd')) {
    const name = words[k];
    const targets = words.slice(k + 1).filter((w) => !(w.startsWith('-') && w !== '-'));
    if (!targets.length) return `${quote(name)} with no directory goes to the home directory`;
    const move = `${name} ${targets[0]}`;
    if (targets[0] === '-') return `${quote(move)} goes back to wherever the shell was before`;
    if (HOME.has(targets[0]) || /^(~|\$HOME|\$\{HOME\})\//.test(targets[0])) return `${quote(move)} goes to the home directory`;
    if (targets[0].startsWith('/')) return `${quote(move)} goes to an absolute path`;
  }
  for (const word of words) {
    for (const piece of [word, ...word.split(/[=:]/).slice(1)]) {
      if (climbs(piece)) return `${quote(piece)} climbs out of the task's directory`;
    }
  }
  return null;
}

/** Why `command` reaches outside its task's directory, or null. Lexical, never throws. */
function scopeEscape(command) {
  const parsed = splitOperators(command);
  for (const part of parsed ? parsed[0] : [command]) {
    const found = part ? escapeOfPart(part) : null;
    if (found) return found;
  }
  return null;
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
  const profile = { tests: [], builds: [], python: false, src: '.', testsDir: null, docsDir: null, readme: null, git: false, notes: [] };
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
  if (targets.has('test')) profile.tests.push({ cmd: 'make test', origin: `${makefile} target 'test'`, rooted: true });
  if (targets.has('build')) profile.builds.push({ cmd: 'make build', origin: `${makefile} target 'build'`, rooted: true });
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
  profile.python = pyMarker !== null;
  // The workspace's own virtualenv, else python3 (a bare `python` is missing on many systems).
  const interpreter = ['.venv', 'venv'].map((v) => `${v}/bin/python`).find((p) => isFile(at(p))) || 'python3';
  if (pyMarker && !makeOwnsTests) profile.tests.push({ cmd: `${interpreter} -m pytest -q`, origin: pyMarker, rooted: true });
  if (isFile(at('Cargo.toml'))) {
    if (!makeOwnsTests) profile.tests.push({ cmd: 'cargo test', origin: 'Cargo.toml' });
    profile.builds.push({ cmd: 'cargo build', origin: 'Cargo.toml' });
  }
  if (isFile(at('go.mod'))) {
    if (!makeOwnsTests) profile.tests.push({ cmd: 'go test ./...', origin: 'go.mod', rooted: true });
    profile.builds.push({ cmd: 'go build ./...', origin: 'go.mod', rooted: true });
  }
  profile.src = firstOf(workspace, ['src', 'lib', 'app', 'pkg'], isDir) || '.';
  profile.testsDir = firstOf(workspace, ['tests', 'test', 'spec', '__tests__'], isDir);
  profile.docsDir = firstOf(workspace, ['docs', 'doc'], isDir);
  profile.readme = firstOf(workspace, ['README.md', 'README.rst', 'README.txt', 'README'], isFile);
  profile.git = insideGit(workspace);
  profile.notes.unshift(...profile.tests.map((c) => `test command from ${c.origin}: ${c.cmd}`), ...profile.builds.map((c) => `build command from ${c.origin}: ${c.cmd}`));
  return profile;
}

/**
 * A check that something changed under `dir`, relative to where it runs (git work trees). It
 * fails on a no-op, which is the point. Python bytecode the other checks leave behind and, for
 * `.`, the run log under .harness/ are not a change.
 */
function changedCheck(dir = '.') {
  const spec = dir === '.' || dir === '' ? ". ':(exclude).harness'" : shellQuote(dir);
  return `test -n "$(git status --porcelain -- ${spec} ':(exclude)*.pyc')"`;
}

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
 * 'file'), config: {min_tasks, max_tasks, size, vague, vacuous, scope_escape}, objective (checked
 * when given), root }. Soft rules (plan size, vague objectives, acceptance tests that cannot fail,
 * commands that leave their task's directory) are errors for generated plans and warnings for
 * file plans unless the config sets their level. A manual step with a confirmation needs no
 * acceptance tests: a person's word is its verdict.
 */
function validate(tasks, { workspace = null, strictness = 'file', config = {}, objective = null, root = 'packets' } = {}) {
  const cfg = { min_tasks: 3, max_tasks: 7, size: null, vague: null, vacuous: null, scope_escape: null, ...config };
  const problems = [];
  const add = (severity, code, message, taskId = null, where = null) => problems.push({ severity, code, message, task_id: taskId, path: where });
  const at = (i, field) => `${root}[${i}]` + (field ? `.${field}` : '');
  const size = softLevel(cfg.size, strictness);
  const vague = softLevel(cfg.vague, strictness);
  const vacuous = softLevel(cfg.vacuous, strictness);
  const leaves = softLevel(cfg.scope_escape, strictness);
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
    const manual = !t.commands.length && !t.agent;
    if (!t.acceptance_tests.some((c) => c.trim()) && !(manual && (t.confirmation || '').trim())) {
      const what = manual ? 'no acceptance tests and no confirmation' : 'no acceptance tests';
      add('error', 'missing_acceptance_tests', `task '${t.id}' has ${what}: nothing would decide whether it worked`, t.id, at(i, 'acceptance_tests'));
    }
    for (const field of ['commands', 'acceptance_tests']) {
      t[field].forEach((c, j) => { if (!c.trim()) add('error', 'empty_command', `task '${t.id}' has an empty entry in ${field}`, t.id, at(i, `${field}[${j}]`)); });
    }
    if (vague && (why = vagueness(t.objective))) add(vague, 'vague_objective', `task '${t.id}' objective '${t.objective}' is vague: ${why}`, t.id, at(i, 'objective'));
    const scope = scopeProblem(t.scope_path, scopeRoot);
    if (scope) add(scope[0] === 'absolute_scope_path' ? 'warning' : 'error', scope[0], `task '${t.id}': ${scope[1]}`, t.id, at(i, 'scope_path'));
  });
  tasks.forEach((t, i) => {
    if (vacuous) {
      t.acceptance_tests.forEach((test, j) => {
        if ((why = vacuousReason(test))) add(vacuous, 'vacuous_acceptance_test', `task '${t.id}': acceptance test ${quote(test)} cannot fail, so it proves nothing: ${why}`, t.id, at(i, `acceptance_tests[${j}]`));
      });
    }
    if (leaves) {
      for (const [field, what] of [['commands', 'command'], ['acceptance_tests', 'acceptance test']]) {
        t[field].forEach((c, j) => {
          if ((why = scopeEscape(c))) add(leaves, 'command_leaves_scope', `task '${t.id}': ${what} ${quote(c)} leaves the task's directory: ${why}`, t.id, at(i, `${field}[${j}]`));
        });
      }
    }
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

const where = (dir) => (dir === '.' ? 'the workspace' : `${dir}/`);

/**
 * Where a task about directory `target` works and the checks it gets there, when it runs `runs`
 * as acceptance tests. A rooted command must run at the workspace root, so such a task works from
 * there, its git check names `target` and `remark` (for its objective) says "{what} in target/";
 * otherwise it works in `target` itself. Never `cd`.
 */
function place(profile, target, runs, { what, compile = false }) {
  const rooted = runs.find((c) => c.rooted);
  const scope = rooted ? '.' : target;
  const here = scope === '.' ? target : '.'; // target, seen from where the checks run
  const checks = profile.git ? [changedCheck(here)] : [];
  if (compile && profile.python && target !== '.') checks.push(`python3 -m compileall -q ${shellQuote(here)}`);
  checks.push(...runs.map((c) => c.cmd));
  const remark = rooted && target !== '.' ? ` ${what} in ${target}/; the task works from the workspace root, where \`${rooted.cmd}\` must run.` : '';
  return { scope, checks: [...new Set(checks)], remark };
}

/**
 * The drafts of a plan before ids: what each task does, where, how it is checked (acceptance
 * tests, else a person's confirmation), what it waits for.
 */
function layout(objective, profile, maxTasks) {
  const short = shorten(objective);
  const clauses = splitClauses(objective);
  const testsDir = profile.testsDir || '.';
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
    // Reading leaves nothing a command could check, so a person confirms the list.
    drafts.push({
      key: 'locate',
      title: `Locate the code for: ${short}`,
      objective: `Find the files and sections in ${where(profile.src)} involved in: ${objective}. List them for the tasks that follow.`,
      scope: profile.src,
      acceptance: [],
      confirmation: `The files and sections in ${where(profile.src)} involved in this work are listed for the tasks that follow.`,
      after: [],
    });
  }
  groups.forEach((group, i) => {
    const text = group.map(sentence).join('; ');
    const placed = place(profile, profile.src, [...profile.builds, ...profile.tests], { what: 'The change belongs', compile: true });
    drafts.push({
      key: `change${i + 1}`,
      title: shorten(text, 80),
      objective: `${text}.${placed.remark}`,
      scope: placed.scope,
      acceptance: placed.checks,
      confirmation: placed.checks.length ? null : `The change is made in ${where(profile.src)}: ${text}.`,
      after: useLocate ? ['locate'] : [],
    });
  });
  const changes = drafts.filter((d) => d.key.startsWith('change')).map((d) => d.key);
  const tests = place(profile, testsDir, profile.tests, { what: 'The tests belong' });
  drafts.push({
    key: 'tests',
    title: `Add or update tests for: ${short}`,
    objective: `Add or update tests in ${where(testsDir)} that cover: ${objective}.${tests.remark}`,
    scope: tests.scope,
    acceptance: tests.checks,
    confirmation: tests.checks.length ? null : `Tests in ${where(testsDir)} cover the change, and they pass when run by hand.`,
    after: changes,
  });
  if (useDocs) {
    const grep = profile.docsDir ? `grep -rqiF -- ${shellQuote(phrase)} .` : `grep -qiF -- ${shellQuote(phrase)} ${shellQuote(docsTarget)}`;
    drafts.push({ key: 'docs', title: `Document: ${short}`, objective: `Document the change in ${docsTarget} (${objective}); the text must mention '${phrase}'.`, scope: profile.docsDir || '.', acceptance: [grep], after: changes });
  }
  const depended = new Set(drafts.flatMap((d) => d.after));
  const after = drafts.map((d) => d.key).filter((k) => !depended.has(k));
  drafts.push({ key: 'verify', after, ...verification(objective, profile) });
  return drafts;
}

/** The last task: the workspace's build and tests, else a check that the work changed something, else a person's word. */
function verification(objective, profile) {
  const builds = profile.builds.map((c) => c.cmd);
  const tests = profile.tests.map((c) => c.cmd);
  const commands = [...new Set([...builds, ...tests])];
  if (commands.length) {
    return { title: 'Run the full verification', objective: `Run the workspace's build and tests on the finished work for: ${objective}.`, scope: '.', commands, acceptance: tests.length ? tests : builds };
  }
  const changed = profile.git ? [changedCheck()] : [];
  const lacking = changed.length ? 'build or test command; the check is that the work changed something.' : 'build or test command and no git history to compare with.';
  return {
    title: 'Check the finished work',
    objective: `Check by hand that the finished work does what was asked: ${objective}. The workspace has no ${lacking}`,
    scope: '.',
    acceptance: changed,
    confirmation: changed.length ? null : `The finished work does what was asked: ${objective}.`,
  };
}

/** Objective -> a validated, risk-flagged plan of 3..7 tasks; -32004 listing every problem otherwise. */
function decompose(objective, context) {
  checkBackend(context);
  const text = objective.split(/\s+/).join(' ');
  const profile = detectWorkspace(context.workspace);
  const notes = [...profile.notes];
  if (!profile.tests.length) notes.push(`no test command found: verification accepts ${profile.builds.length ? 'the build commands' : profile.git ? 'a change in the git work tree' : "a person's confirmation only (no git, no build, no tests)"}`);
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
    confirmation: d.confirmation || null,
  })));
  for (const t of tasks) {
    if (t.confirmation) notes.push(`${t.id} has no check that can fail here: it is a manual step a person confirms (${t.confirmation})`);
  }
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

/** `task` with a confirmation when it is a manual step that nothing else could verify. */
function confirmed(task) {
  if (task.commands.length || task.agent || task.confirmation || task.acceptance_tests.some((c) => c.trim())) return task;
  return { ...task, confirmation: `Done as described: ${task.objective}` };
}

/** Plan + feedback -> the next revision, validated (size only warns); -32004 with applied and plan otherwise. */
function refine(plan, feedback, context, strictness) {
  checkBackend(context);
  const profile = detectWorkspace(context.workspace);
  // An added task borrows the last task's tests; with none to borrow, these (never a check that
  // cannot fail), or with nothing real at all, a person's confirmation.
  const fallback = profile.tests.length ? profile.tests.map((c) => c.cmd) : profile.git ? [changedCheck()] : [];
  const edited = applyFeedback(plan, feedback, fallback);
  const before = new Set(plan.tasks.map((t) => t.id));
  const tasks = edited.plan.tasks.map((t) => (before.has(t.id) ? t : confirmed(t)));
  const refined = { ...edited.plan, tasks: flagRisks(tasks) };
  refined.requires = { ...refined.requires, tools: [...new Set([...refined.requires.tools, ...toolsOf(refined.tasks)])].sort() };
  const level = strictness || (plan.source === 'file' ? 'file' : 'generated');
  const report = validate(refined.tasks, { workspace: context.workspace, strictness: level, config: { max_tasks: context.max_tasks, size: 'warning' }, objective: refined.objective, root: 'tasks' });
  if (!report.valid) throw refuse(report, 'the refined plan', { applied: edited.applied, plan: refined });
  return { plan: refined, applied: edited.applied, report };
}

module.exports = { decompose, detectWorkspace, findCycles, refine, riskReasons, scopeEscape, segments, vacuousReason, validate, vagueness };
