// Run a GitHub Actions workflow the way the engine would, on simulated runners of this machine:
//
// - every job (every matrix entry) on a runner of its own: a fresh clone of the repository at
//   the pushed commit, its own HOME, TMPDIR and container storage (buildah/podman read
//   CONTAINERS_STORAGE_CONF), so no working directory and no local image is shared;
// - jobs started in `needs` order, `if:` and every `${{ }}` evaluated by GitHub's own
//   expression library (@actions/expressions), the entries of a matrix run side by side;
// - only what a job uploads with actions/upload-artifact reaches another job, through
//   actions/download-artifact; job outputs only through `$GITHUB_OUTPUT` and `outputs:`.
//
// The actions a generated workflow uses are played by this runner: checkout (the clone), the
// mab action (`--action REF`: the mab binary given by `--mab` on PATH), login, QEMU and
// buildx setup (nothing to do against a loopback registry with buildah). Any other action
// fails the job: nothing is skipped silently.
//
//   node run-workflow.mjs --modules DIR --workflow FILE --repo DIR --work DIR \
//        --mab BIN [--engine github|gitlab] [--action REF] [--event push] [--kill NODE]
//
// `--engine gitlab` runs a GitLab CI pipeline instead (a `mab ci gitlab` child pipeline) as
// GitLab's runner would with a shell executor: jobs after their `needs` (or, without, after
// every job of the earlier stages), `parallel:matrix` expanded into one job per combination
// with its variables (`tags` resolved from them), `default.before_script` then `script` in
// one `bash -eo pipefail`, the artifacts of needed jobs (unless `artifacts: false`) extracted
// into the fresh clone first, and one job of a `resource_group` at a time.
//
// `--kill NODE`: the runner of the matrix entry whose `node` is NODE dies mid-build — once a
// `buildah`/`podman`/`docker` build runs under its step, every process of the step is killed.
// Prints one line per job (`JOB [runs-on] result`) and `run: success|failure`, then a JSON
// summary line `jobs=…`; exits 0 only when every job succeeded or was skipped by its `if`.

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
const engine = args.engine || "github";
for (const k of ["modules", "workflow", "repo", "work", "mab", ...(engine === "github" ? ["action"] : [])]) {
  if (!args[k]) throw new Error(`--${k} is required`);
}
const load = (p) => import(pathToFileURL(path.join(args.modules, p)).href);
const { Lexer, Parser, Evaluator, data } = await load("@actions/expressions/dist/index.js");
const { truthy } = await load("@actions/expressions/dist/result.js");
const YAML = (await load("yaml/dist/index.js")).default;

const workflow = YAML.parse(fs.readFileSync(args.workflow, "utf8"));
// (A GitLab pipeline has no `jobs:`; its jobs are its other top-level keys.)
const event = args.event || "push";
const sha = execFileSync("git", ["-C", args.repo, "rev-parse", "HEAD"]).toString().trim();
fs.mkdirSync(args.work, { recursive: true });
const artifacts = path.join(args.work, "artifacts");
fs.mkdirSync(artifacts, { recursive: true });

// ---- expressions ------------------------------------------------------------------------

const CONTEXTS = ["github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix", "needs", "inputs"];
function evaluate(src, ctx, status = {}) {
  const lexed = new Lexer(src).lex();
  const funcs = ["success", "failure", "cancelled", "always"].map((name) => ({ name, minArgs: 0, maxArgs: 0 }));
  const expr = new Parser(lexed.tokens, CONTEXTS, funcs).parse();
  const impl = new Map(
    Object.entries({
      success: () => !!status.success,
      failure: () => !!status.failure,
      cancelled: () => false,
      always: () => true,
    }).map(([name, f]) => [name, { name, minArgs: 0, maxArgs: 0, call: () => new data.BooleanData(f()) }]),
  );
  const dict = JSON.parse(JSON.stringify(ctx), data.reviver);
  return new Evaluator(expr, dict, impl).evaluate();
}
const plain = (d) => JSON.parse(JSON.stringify(d, data.replacer));
// A value with `${{ … }}`: the whole of it when it is one expression (keeps arrays), else text.
function interpolate(value, ctx) {
  if (typeof value !== "string") return value;
  const whole = value.match(/^\$\{\{(.*)\}\}$/s);
  if (whole && !whole[1].includes("}}")) return plain(evaluate(whole[1], ctx));
  return value.replace(/\$\{\{(.*?)\}\}/gs, (_, e) => evaluate(e, ctx).coerceString());
}
function condition(text, ctx, status) {
  if (text === undefined) return status.success;
  const src = String(text).replace(/^\s*\$\{\{(.*)\}\}\s*$/s, "$1");
  return truthy(evaluate(src, ctx, status));
}

// ---- processes --------------------------------------------------------------------------

function descendants(pid) {
  const all = [];
  const children = new Map();
  for (const p of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(p));
    } catch {}
  }
  const walk = (p) => (children.get(p) || []).forEach((c) => (all.push(c), walk(c)));
  walk(pid);
  return all;
}
const cmdline = (pid) => {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return "";
  }
};

// Run `script` with bash as GitHub does (`bash --noprofile --norc -eo pipefail FILE`).
function bash(script, cwd, env, log, kill) {
  return new Promise((resolve) => {
    const file = path.join(env.RUNNER_TEMP, `step-${Date.now()}-${Math.random().toString(36).slice(2)}.sh`);
    fs.writeFileSync(file, script);
    const child = spawn("bash", ["--noprofile", "--norc", "-eo", "pipefail", file], {
      cwd,
      env,
      detached: true,
    });
    child.stdout.on("data", (d) => log.write(d));
    child.stderr.on("data", (d) => log.write(d));
    let timer;
    let killed = false;
    if (kill) {
      let seen = 0;
      timer = setInterval(() => {
        const building = descendants(child.pid).some((p) => /\b(buildah|podman|docker)\b.*\b(bud|build)\b/.test(cmdline(p)));
        seen = building ? seen + 1 : seen;
        // Mid-build: a few polls after the builder started.
        if (seen >= 8) {
          killed = true;
          for (const p of [child.pid, ...descendants(child.pid)]) {
            try {
              process.kill(p, "SIGKILL");
            } catch {}
          }
          clearInterval(timer);
        }
      }, 250);
    }
    child.on("close", (code) => {
      clearInterval(timer);
      log.write(killed ? "\n[runner] killed mid-build\n" : "");
      resolve({ code: killed ? 137 : code, killed });
    });
  });
}

// ---- actions ----------------------------------------------------------------------------

function copyInto(from, to) {
  fs.mkdirSync(to, { recursive: true });
  fs.cpSync(from, to, { recursive: true });
}

async function action(uses, withs, runner, log) {
  const name = uses.replace(/@.*$/, "");
  if (uses === args.action) {
    runner.path.unshift(path.dirname(args.mab));
    return true;
  }
  switch (name) {
    case "actions/checkout": {
      execFileSync("git", ["clone", "-q", args.repo, runner.workspace]);
      execFileSync("git", ["-C", runner.workspace, "checkout", "-q", "--detach", sha]);
      return true;
    }
    case "docker/login-action":
    case "docker/setup-qemu-action":
    case "docker/setup-buildx-action":
      log.write(`[runner] ${name}: nothing to do on this machine\n`);
      return true;
    case "actions/upload-artifact": {
      const from = path.join(runner.workspace, withs.path);
      const files = fs.existsSync(from) ? fs.readdirSync(from) : [];
      if (files.length === 0 && withs["if-no-files-found"] === "error") {
        log.write(`[runner] upload-artifact: no files at ${withs.path}\n`);
        return false;
      }
      const to = path.join(artifacts, withs.name);
      if (fs.existsSync(to)) {
        log.write(`[runner] upload-artifact: an artifact named ${withs.name} exists already\n`);
        return false;
      }
      copyInto(from, to);
      return true;
    }
    case "actions/download-artifact": {
      const pattern = new RegExp("^" + withs.pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
      const to = path.join(runner.workspace, withs.path);
      for (const a of fs.readdirSync(artifacts).filter((a) => pattern.test(a)).sort()) {
        copyInto(path.join(artifacts, a), withs["merge-multiple"] ? to : path.join(to, a));
      }
      return true;
    }
    default:
      log.write(`[runner] unknown action ${uses}\n`);
      return false;
  }
}

// ---- runners ----------------------------------------------------------------------------

// A runner of its own: a directory with HOME, TMPDIR, a container storage and a log.
function prepare(name) {
  const dir = path.join(args.work, "runners", name);
  for (const d of ["home", "tmp", "storage", "run"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const storage = path.join(dir, "storage.conf");
  fs.writeFileSync(storage, `[storage]\ndriver = "vfs"\ngraphroot = "${dir}/storage"\nrunroot = "${dir}/run"\n`);
  return { dir, workspace: path.join(dir, "work"), storage, log: fs.createWriteStream(path.join(dir, "log")) };
}

// ---- GitHub -----------------------------------------------------------------------------

const github = { event_name: event, sha, ref: "refs/heads/main", base_ref: "", repository: "acme/images", actor: "mab" };
const results = {};

async function runInstance(id, job, matrix, index, needs) {
  const { dir, workspace, storage, log } = prepare(`${id}-${index}`);
  const runner = { workspace, path: [] };
  const ctx = { github, matrix, strategy: { "job-index": index }, needs, secrets: {}, steps: {}, env: {} };
  const label = interpolate(job["runs-on"], ctx);
  let ok = true;
  for (const [n, step] of (job.steps || []).entries()) {
    ctx.env = { ...workflow.env, ...job.env };
    const env = {};
    for (const [k, v] of Object.entries({ ...ctx.env, ...(step.env || {}) })) env[k] = String(interpolate(v, ctx));
    log.write(`[runner] step ${n}: ${step.name || step.uses || "run"}\n`);
    if (step.uses) {
      const withs = {};
      for (const [k, v] of Object.entries(step.with || {})) withs[k] = interpolate(v, ctx);
      ok = await action(step.uses, withs, runner, log);
    } else {
      const output = path.join(dir, `output-${n}`);
      fs.writeFileSync(output, "");
      const processEnv = {
        ...process.env,
        ...env,
        HOME: path.join(dir, "home"),
        TMPDIR: path.join(dir, "tmp"),
        RUNNER_TEMP: path.join(dir, "tmp"),
        CONTAINERS_STORAGE_CONF: storage,
        GITHUB_OUTPUT: output,
        GITHUB_ACTIONS: "true",
        CI: "true",
        PATH: [...runner.path, process.env.PATH].join(":"),
      };
      const kill = args.kill && matrix && matrix.node === args.kill;
      const r = await bash(interpolate(step.run, ctx), runner.workspace, processEnv, log, kill);
      ok = r.code === 0;
      if (step.id) {
        const outputs = {};
        for (const line of fs.readFileSync(output, "utf8").split("\n")) {
          const eq = line.indexOf("=");
          if (eq > 0) outputs[line.slice(0, eq)] = line.slice(eq + 1);
        }
        ctx.steps[step.id] = { outputs, outcome: ok ? "success" : "failure" };
      }
    }
    if (!ok) break;
  }
  await new Promise((r) => log.end(r));
  const outputs = {};
  for (const [k, v] of Object.entries(job.outputs || {})) outputs[k] = String(interpolate(v, ctx));
  return { ok, label, outputs, log: path.join(dir, "log") };
}

async function runJob(id) {
  const job = workflow.jobs[id];
  const needIds = [].concat(job.needs || []);
  const needs = Object.fromEntries(needIds.map((n) => [n, { result: results[n].result, outputs: results[n].outputs }]));
  const status = {
    success: needIds.every((n) => results[n].result === "success"),
    failure: needIds.some((n) => results[n].result === "failure"),
  };
  const ctx = { github, needs, secrets: {}, env: workflow.env || {} };
  if (!condition(job.if, ctx, status)) {
    results[id] = { result: "skipped", outputs: {}, instances: [] };
    console.log(`${id} skipped`);
    return;
  }
  let entries = [null];
  if (job.strategy && job.strategy.matrix) {
    entries = interpolate(job.strategy.matrix.include, ctx);
    if (!Array.isArray(entries) || entries.length === 0) {
      results[id] = { result: "failure", outputs: {}, instances: [], why: "empty matrix" };
      console.log(`${id} failure (no matrix entries)`);
      return;
    }
  }
  const instances = await Promise.all(entries.map((m, i) => runInstance(id, job, m, i, needs)));
  const result = instances.every((r) => r.ok) ? "success" : "failure";
  results[id] = {
    result,
    outputs: instances[0].outputs,
    instances: instances.map((r, i) => ({ node: entries[i] && entries[i].node, runsOn: r.label, ok: r.ok, log: r.log })),
  };
  for (const [i, r] of instances.entries()) {
    console.log(`${id}${entries[i] ? ` (${entries[i].node})` : ""} [${r.label}] ${r.ok ? "success" : "failure"}`);
  }
}

// Start every job whose needs (`needsOf`) have finished, until none is left; print the results.
async function schedule(ids, needsOf, runJob) {
  const pending = new Set(ids);
  const running = new Map();
  while (pending.size || running.size) {
    for (const id of [...pending]) {
      if (needsOf(id).every((n) => n in results)) {
        pending.delete(id);
        running.set(id, runJob(id).then(() => running.delete(id)));
      }
    }
    if (running.size === 0 && pending.size) {
      console.log(`run: failure (jobs that can never start: ${[...pending].join(", ")})`);
      process.exit(1);
    }
    await Promise.race(running.values());
  }
  const failed = Object.values(results).some((r) => r.result === "failure");
  console.log(`run: ${failed ? "failure" : "success"}`);
  console.log(`jobs=${JSON.stringify(results)}`);
  process.exit(failed ? 1 : 0);
}

// ---- GitLab -----------------------------------------------------------------------------

const RESERVED = new Set(["stages", "variables", "default", "include", "workflow", "image", "services", "cache", "before_script", "after_script"]);

// The combinations of one `parallel:matrix` entry: every value list crossed with the others.
function combinations(entry) {
  let out = [{}];
  for (const [k, v] of Object.entries(entry)) {
    const values = [].concat(v);
    out = out.flatMap((o) => values.map((x) => ({ ...o, [k]: String(x) })));
  }
  return out;
}
const expand = (text, vars) => String(text).replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (m, k) => (k in vars ? vars[k] : m));

const locks = new Map();
async function inResourceGroup(group, f) {
  if (!group) return f();
  const before = locks.get(group) || Promise.resolve();
  let release;
  const mine = new Promise((r) => (release = r));
  locks.set(group, before.then(() => mine));
  await before;
  try {
    return await f();
  } finally {
    release();
  }
}

async function gitlabInstance(id, job, vars, index) {
  const { dir, workspace, storage, log } = prepare(`${id}-${index}`);
  execFileSync("git", ["clone", "-q", args.repo, workspace]);
  execFileSync("git", ["-C", workspace, "checkout", "-q", "--detach", sha]);
  // The artifacts of the jobs it needs, as GitLab extracts them into the project directory.
  for (const need of [].concat(job.needs || [])) {
    const name = typeof need === "string" ? need : need.job;
    if (typeof need === "object" && need.artifacts === false) continue;
    for (const inst of results[name].instances) {
      if (inst.artifacts) fs.cpSync(inst.artifacts, workspace, { recursive: true });
    }
  }
  const defaults = workflow.default || {};
  const label = (job.tags || []).map((t) => expand(t, vars)).join(",") || "(untagged)";
  const lines = [...(job.before_script || defaults.before_script || []), ...[].concat(job.script)];
  const env = {
    ...process.env,
    ...vars,
    HOME: path.join(dir, "home"),
    TMPDIR: path.join(dir, "tmp"),
    RUNNER_TEMP: path.join(dir, "tmp"),
    CONTAINERS_STORAGE_CONF: storage,
    GITLAB_CI: "true",
    CI: "true",
    CI_PROJECT_DIR: workspace,
    CI_JOB_NAME: id,
    PATH: [path.dirname(args.mab), process.env.PATH].join(":"),
  };
  const kill = args.kill && vars.NODE === args.kill;
  const r = await inResourceGroup(job.resource_group, () => bash(lines.join("\n"), workspace, env, log, kill));
  let artifacts = null;
  if (r.code === 0 && job.artifacts && job.artifacts.paths) {
    artifacts = path.join(args.work, "artifacts", `${id}-${index}`);
    for (const p of job.artifacts.paths) {
      const from = path.join(workspace, p);
      if (fs.existsSync(from)) copyInto(from, path.join(artifacts, p));
    }
  }
  await new Promise((res) => log.end(res));
  return { ok: r.code === 0, label, artifacts, log: path.join(dir, "log"), node: vars.NODE };
}

async function gitlab() {
  const stages = workflow.stages || ["build", "test", "deploy"];
  const jobs = Object.fromEntries(Object.entries(workflow).filter(([k]) => !RESERVED.has(k) && !k.startsWith(".")));
  const needsOf = (id) => {
    const job = jobs[id];
    if (job.needs) return [].concat(job.needs).map((n) => (typeof n === "string" ? n : n.job));
    const stage = stages.indexOf(job.stage || "test");
    return Object.keys(jobs).filter((o) => stages.indexOf(jobs[o].stage || "test") < stage);
  };
  await schedule(Object.keys(jobs), needsOf, async (id) => {
    const job = jobs[id];
    const failed = needsOf(id).filter((n) => results[n].result !== "success");
    if (failed.length) {
      results[id] = { result: "skipped", instances: [] };
      console.log(`${id} skipped (after ${failed.join(", ")})`);
      return;
    }
    const base = { ...(workflow.variables || {}), ...(job.variables || {}) };
    const each = job.parallel && job.parallel.matrix ? job.parallel.matrix.flatMap(combinations) : [{}];
    const instances = await Promise.all(each.map((m, i) => gitlabInstance(id, job, { ...base, ...m }, i)));
    results[id] = {
      result: instances.every((r) => r.ok) ? "success" : "failure",
      instances: instances.map((r) => ({ node: r.node, runsOn: r.label, ok: r.ok, log: r.log, artifacts: r.artifacts })),
    };
    for (const r of instances) console.log(`${id}${r.node ? ` (${r.node})` : ""} [${r.label}] ${r.ok ? "success" : "failure"}`);
  });
}

if (engine === "gitlab") {
  await gitlab();
} else {
  await schedule(Object.keys(workflow.jobs), (id) => [].concat(workflow.jobs[id].needs || []), runJob);
}
