// The classroom page: polls GET /api/state (RoomState, classroom/state.py) about once a second
// and draws one lane per mode; posts the rate and the scenarios. Plain JS, nothing fetched
// but this server's own API, every text set with textContent (no HTML from the server).
"use strict";

const POLL_MS = 1000;
const CHART_SLOTS = 60; // the backend keeps about a minute of one-per-second points
const COLORS = { blue: "#0072b2", purple: "#cc79a7", orange: "#e69f00", line: "#8a8a8a" };
// Status words and icons: the colour is never the only signal (colour-blind viewers, projectors).
const STATUS_WORDS = {
  ok: "\u2714 OK",
  busy: "\u25b2 BUSY",
  down: "\u21bb DOWN",
  red: "\u2716 FAILING",
};
const WRONG_ANSWERS = "\u2716 WRONG ANSWERS";

const $ = (id) => document.getElementById(id);
const lanes = new Map(); // mode -> {root, fields: {name: element}}
let scenarioNames = [];
let posting = false; // a scenario POST in flight: no second click meanwhile
let lastState = null;
let rateDirty = false; // the instructor is typing a rate: polling must not overwrite it

// ---- formatting ----

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

function count(value) {
  return value === null || value === undefined ? "\u2013" : integer.format(value);
}

function perSecond(value) {
  if (value === null || value === undefined) return "\u2013";
  return value < 10 ? oneDecimal.format(value) : integer.format(value);
}

function millis(value) {
  if (value === null || value === undefined) return "\u2013";
  if (value >= 10000) return `${integer.format(value / 1000)} s`;
  if (value >= 1000) return `${oneDecimal.format(value / 1000)} s`;
  return `${value < 10 ? oneDecimal.format(value) : integer.format(value)} ms`;
}

function seconds(value) {
  if (value === null || value === undefined) return "\u2013";
  const s = Math.floor(value);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function clock(value) {
  const s = Math.floor(value || 0);
  const pad = (n) => String(n).padStart(2, "0");
  return s >= 3600
    ? `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`
    : `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

function rideRate(value) {
  return oneDecimal.format(value);
}

function shortVersion(version, length = 12) {
  return version ? String(version).slice(0, length) : "\u2013";
}

function shardName(key) {
  // "shardId-000000000001" and "shard 000000000001" read "shard 1" from the back row.
  const match = /^shard(?:Id-| )0*(\d+)$/.exec(key);
  return match ? `shard ${match[1]}` : key;
}

function setText(element, text, value) {
  if (element.textContent !== text) element.textContent = text;
  if (value !== undefined) element.dataset.value = value === null ? "" : String(value);
}

/** Split a latency into a number for the big figure and its unit for the label. */
function latencyParts(value) {
  if (value === null || value === undefined) return ["\u2013", "ms"];
  const text = millis(value);
  const space = text.lastIndexOf(" ");
  return [text.slice(0, space), text.slice(space + 1)];
}

function setBig(element, text, value) {
  setText(element, text, value);
  // Long figures shrink instead of spilling into the next column.
  element.dataset.long = String(text.length > 5);
}

// ---- charts ----

function drawChart(canvas, values, format) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  const numbers = values.filter((v) => v !== null && v !== undefined);
  const top = Math.max(1, ...numbers);
  const pad = 4 * ratio;
  const slots = Math.max(CHART_SLOTS, values.length);
  const step = (width - 2 * pad) / (slots - 1);
  const x = (i) => width - pad - (values.length - 1 - i) * step;
  const labelHeight = 22 * ratio; // the plot starts below the "max" label
  const y = (v) => height - pad - (v / top) * (height - 2 * pad - labelHeight);
  // Zero line: an empty chart still shows where "nothing" is.
  ctx.strokeStyle = COLORS.line;
  ctx.lineWidth = ratio;
  ctx.beginPath();
  ctx.moveTo(0, y(0));
  ctx.lineTo(width, y(0));
  ctx.stroke();
  ctx.strokeStyle = COLORS[canvas.dataset.color] || "#000000";
  ctx.lineWidth = 3 * ratio;
  ctx.lineJoin = "round";
  ctx.fillStyle = ctx.strokeStyle;
  ctx.beginPath();
  const missing = (i) => i < 0 || i >= values.length || values[i] === null || values[i] === undefined;
  values.forEach((v, i) => {
    if (missing(i)) return; // a gap: no prediction in that second
    if (missing(i - 1)) ctx.moveTo(x(i), y(v));
    else ctx.lineTo(x(i), y(v));
    // A point alone (a batch run's second) is a dot: a line needs two.
    if (missing(i - 1) && missing(i + 1)) ctx.fillRect(x(i) - 2 * ratio, y(v) - 2 * ratio, 4 * ratio, 4 * ratio);
  });
  ctx.stroke();
  if (numbers.length) {
    // The scale: a dotted line at the highest value shown, labelled with it.
    ctx.strokeStyle = COLORS.line;
    ctx.lineWidth = ratio;
    ctx.setLineDash([3 * ratio, 3 * ratio]);
    ctx.beginPath();
    ctx.moveTo(0, y(top));
    ctx.lineTo(width, y(top));
    ctx.stroke();
    ctx.setLineDash([]);
    const label = format(Math.max(...numbers));
    ctx.font = `700 ${18 * ratio}px "DejaVu Sans", Arial, sans-serif`;
    ctx.textBaseline = "top";
    const textWidth = ctx.measureText(label).width;
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.fillRect(pad, pad, textWidth + 4 * ratio, 20 * ratio);
    ctx.fillStyle = "#000000";
    ctx.fillText(label, pad + 2 * ratio, pad + ratio);
  }
}

// ---- lanes ----

function makeLane(mode) {
  const root = $("lane-template").content.firstElementChild.cloneNode(true);
  root.dataset.testid = `lane-${mode}`;
  root.id = `lane-${mode}`;
  root.dataset.mode = mode;
  const fields = {};
  root.querySelectorAll("[data-field]").forEach((element) => {
    const name = element.dataset.field;
    element.dataset.testid = `lane-${mode}-${name}`;
    fields[name] = element;
  });
  return { root, fields };
}

function renderLane(lane, state) {
  const { root, fields } = lane;
  const wrong = state.mismatches > 0;
  const red = wrong || state.status === "red";
  root.dataset.status = state.status;
  root.dataset.red = String(red);
  setText(fields.title, state.title);
  const word = wrong
    ? WRONG_ANSWERS
    : STATUS_WORDS[state.status] || `? ${String(state.status).toUpperCase()}`;
  setText(fields.status, word, state.status);
  setText(fields["status-text"], state.status_text);
  setBig(fields.predictions, count(state.predictions_out), state.predictions_out);
  setBig(fields.throughput, perSecond(state.throughput), state.throughput);
  const [p99, unit] = latencyParts(state.p99_ms);
  setBig(fields.p99, p99, state.p99_ms);
  setText(fields["p99-unit"], unit);
  setText(fields.rides, count(state.rides_in), state.rides_in);
  setText(fields.p50, millis(state.p50_ms), state.p50_ms);
  setText(fields.errors, count(state.errors), state.errors);
  setText(fields.checked, count(state.checked), state.checked);
  const mismatchText = wrong ? `\u2716 ${count(state.mismatches)}` : count(state.mismatches);
  setText(fields.mismatches, mismatchText, state.mismatches);
  setText(fields.processes, count(state.processes), state.processes);
  setText(fields["processes-word"], state.processes === 1 ? "process" : "processes");
  setText(fields.version, shortVersion(state.version, 8), state.version);
  // After a roll-out the class sees which version answered how often, lane by lane.
  const versions = Object.entries(state.versions || {});
  const perVersion = versions
    .map(([version, answers]) => `${shortVersion(version, 8)}: ${count(answers)}`)
    .join(" \u00b7 ");
  setText(
    fields.versions,
    versions.length > 1 ? `answers ${perVersion}` : `\u00b7 ${versions.length} version`,
    versions.length,
  );
  setText(fields.memory, `${integer.format(state.memory_mb)} MB`, state.memory_mb);
  setText(fields.detail, state.detail);
  setText(fields.backlog, count(state.backlog), state.backlog);
  setText(fields["backlog-label"], state.backlog_label);
  const detail = Object.entries(state.backlog_detail || {})
    .map(([key, value]) => `${shardName(key)}: ${count(value)}`)
    .join(" \u00b7 ");
  setText(fields["backlog-detail"], detail);
  const series = state.series || {};
  drawChart(fields["chart-throughput"], series.throughput || [], perSecond);
  drawChart(fields["chart-p99"], series.p99_ms || [], millis);
  drawChart(fields["chart-backlog"], series.backlog || [], count);
}

function renderLanes(states) {
  const container = $("lanes");
  const seen = new Set();
  states.forEach((state, index) => {
    seen.add(state.mode);
    let lane = lanes.get(state.mode);
    if (!lane) {
      lane = makeLane(state.mode);
      lanes.set(state.mode, lane);
    }
    if (container.children[index] !== lane.root) {
      container.insertBefore(lane.root, container.children[index] || null);
    }
    renderLane(lane, state);
  });
  for (const [mode, lane] of lanes) {
    if (!seen.has(mode)) {
      lane.root.remove();
      lanes.delete(mode);
    }
  }
}

// ---- scenarios ----

function renderScenarioButtons(names, running) {
  const container = $("scenario-buttons");
  if (names.join("\n") !== scenarioNames.join("\n")) {
    scenarioNames = names.slice();
    container.replaceChildren(
      ...names.map((name) => {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = name;
        button.dataset.testid = `scenario-${name}`;
        button.id = `scenario-${name}`;
        button.dataset.name = name;
        button.addEventListener("click", () => startScenario(name));
        return button;
      }),
    );
  }
  for (const button of container.querySelectorAll("button")) {
    button.disabled = posting || Boolean(running);
    button.dataset.running = String(Boolean(running) && running.name === button.dataset.name);
  }
}

function scenarioKind(scenario) {
  if (!scenario) return "idle";
  if (scenario.running) return "running";
  return scenario.ok ? "ok" : "failed";
}

function renderScenarioPanel(scenario) {
  const panel = $("scenario-panel");
  const kind = scenarioKind(scenario);
  panel.dataset.state = kind;
  panel.dataset.name = scenario ? scenario.name : "";
  const badges = {
    idle: "NO SCENARIO YET",
    running: "\u25b6 RUNNING",
    ok: "\u2714 OK",
    failed: "\u2716 FAILED",
  };
  setText($("scenario-badge"), badges[kind], kind);
  if (!scenario) return;
  setText($("scenario-name"), scenario.name);
  let phase = scenario.phase || "";
  if (!scenario.running && scenario.finished_s !== null && scenario.finished_s !== undefined) {
    phase = `finished after ${seconds(scenario.finished_s - scenario.started_s)}`;
  }
  setText($("scenario-phase"), phase);
  setText($("scenario-explanation"), scenario.running ? "" : scenario.explanation || "");
  const numbers = $("scenario-numbers");
  const entries = scenario.running ? [] : Object.entries(scenario.numbers || {});
  const key = JSON.stringify(entries);
  if (numbers.dataset.key !== key) {
    numbers.dataset.key = key;
    numbers.replaceChildren(
      ...entries.map(([name, value]) => {
        const row = document.createElement("div");
        const dt = document.createElement("dt");
        const dd = document.createElement("dd");
        dt.textContent = name.replaceAll("_", " ");
        dd.textContent = typeof value === "number" ? oneDecimal.format(value) : String(value);
        row.append(dt, dd);
        return row;
      }),
    );
  }
}

function renderHistory(history) {
  const list = $("history");
  const key = history.map((s) => `${s.name}@${s.started_s}:${s.ok}`).join("|");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  // Newest first: the one just run is where the eye already is.
  list.replaceChildren(
    ...history
      .slice()
      .reverse()
      .map((scenario) => {
        const item = document.createElement("li");
        item.dataset.testid = "history-item";
        item.dataset.name = scenario.name;
        item.dataset.ok = String(Boolean(scenario.ok));
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = scenario.ok ? "\u2714 OK" : "\u2716 FAILED";
        const name = document.createElement("b");
        name.textContent = scenario.name;
        const text = document.createElement("p");
        text.textContent = scenario.explanation || "";
        item.append(badge, name, text);
        return item;
      }),
  );
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let payload = {};
  try {
    payload = await response.json();
  } catch {
    payload = { error: `the server answered ${response.status} without JSON` };
  }
  return { status: response.status, payload };
}

async function startScenario(name) {
  if (posting) return;
  posting = true;
  setText($("scenario-message"), "");
  renderScenarioButtons(scenarioNames, null);
  try {
    const { status, payload } = await postJson(`/api/scenario/${encodeURIComponent(name)}`);
    if (status === 202) {
      renderScenarioPanel(payload);
      renderScenarioButtons(scenarioNames, payload);
    } else {
      setText($("scenario-message"), `\u2716 ${name}: ${payload.error || `HTTP ${status}`}`);
    }
  } catch (error) {
    setText($("scenario-message"), `\u2716 ${name}: ${error.message}`);
  } finally {
    posting = false;
  }
  await poll(false);
}

// ---- rate ----

function setRateControls(rate, maxRate) {
  const slider = $("rate-slider");
  // The server owns the limit (it refuses more with a 400 the page shows); without a
  // max_rate in the state the slider just leaves room above the current rate.
  slider.max = String(maxRate ?? Math.max(10, Math.ceil(rate * 2.5)));
  slider.value = String(rate);
  $("rate-input").value = String(rate);
}

function renderRate(state) {
  const input = $("rate-input");
  if (!rateDirty && document.activeElement !== input) {
    setRateControls(state.base_rate, state.max_rate);
  }
  const spiking = Math.abs(state.rate - state.base_rate) > 1e-9;
  const text = spiking
    ? `${rideRate(state.rate)}/s (set ${rideRate(state.base_rate)})`
    : `${rideRate(state.rate)}/s`;
  setText($("room-rate"), text, state.rate);
}

async function applyRate(event) {
  event.preventDefault();
  const message = $("rate-message");
  const rate = Number.parseFloat($("rate-input").value);
  if (!Number.isFinite(rate)) {
    message.dataset.kind = "error";
    setText(message, "\u2716 type a number of rides per second");
    return;
  }
  try {
    const { status, payload } = await postJson("/api/rate", { rate });
    if (status === 200) {
      message.dataset.kind = "ok";
      // Short, and gone after a while: the controls stay on one row at 1280 px.
      const text = `\u2714 ${rideRate(payload.rate)}/s`;
      setText(message, text);
      setTimeout(() => message.textContent === text && setText(message, ""), 5000);
      rateDirty = false;
      setRateControls(payload.rate, lastState && lastState.max_rate);
    } else {
      message.dataset.kind = "error";
      setText(message, `\u2716 ${payload.error || `HTTP ${status}`}`);
    }
  } catch (error) {
    message.dataset.kind = "error";
    setText(message, `\u2716 ${error.message}`);
  }
}

// ---- polling ----

function render(state) {
  lastState = state;
  setText($("room-model"), shortVersion(state.model_version, 8), state.model_version);
  setText($("room-sent"), count(state.sent), state.sent);
  setText($("room-elapsed"), clock(state.elapsed_s), state.elapsed_s);
  renderRate(state);
  // current may be the scenario that just finished (running false): the buttons are free again.
  const running = state.current && state.current.running ? state.current : null;
  renderScenarioButtons(state.scenarios || [], running);
  const history = state.history || [];
  renderScenarioPanel(state.current || history[history.length - 1] || null);
  renderLanes(state.lanes || []);
  renderHistory(history);
}

let timer = null;
let failures = 0;

async function poll(schedule = true) {
  const connection = $("connection");
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    failures = 0;
    connection.dataset.ok = "true";
    setText(connection, "\u2714 live");
  } catch (error) {
    failures += 1;
    connection.dataset.ok = "false";
    setText(connection, `\u2716 no answer from the server (${error.message}), retrying`);
  }
  if (schedule) {
    clearTimeout(timer);
    // Back off a little while the server is away, never beyond 5 s.
    timer = setTimeout(poll, Math.min(POLL_MS * (1 + failures), 5000));
  }
}

function start() {
  $("rate-form").addEventListener("submit", applyRate);
  $("rate-slider").addEventListener("input", (event) => {
    rateDirty = true;
    $("rate-input").value = event.target.value;
  });
  $("rate-input").addEventListener("input", (event) => {
    rateDirty = true;
    const value = Number.parseFloat(event.target.value);
    if (Number.isFinite(value)) $("rate-slider").value = String(value);
  });
  // Redraw the charts at the new width at once, not at the next poll.
  window.addEventListener("resize", () => lastState && renderLanes(lastState.lanes || []));
  poll();
}

start();
