// mediabot's web console: live calls (server-sent events), recordings, transcript search. One page, hash routes:
//   #/live · #/recordings · #/recordings/<key>?t=<seconds> · #/search?q=<words>
// Everything comes from the /v1 API with the console session cookie; a 401 sends the browser to the login page.
// The DOM is built with textContent and properties only (never innerHTML): nothing the API returns is parsed as HTML.

const LIVE = "/v1/live";
const LIVE_EVENTS = "/v1/live/events";
const RECORDINGS = "/v1/recordings";
const PAGE_SIZE = 50;
const LIST_REFRESH_MS = 3000;
const RECONNECT_MS = [1000, 2000, 5000, 10000]; // backoff of the live stream after an error
const METER_FLOOR_DB = -60;
const METER_HOT_DB = -6; // the meter turns amber above this: close to clipping
const TRANSCRIPT_LINES = 8; // latest lines shown on a live card
const MAIN_SOURCE = "main";
const COLOR = /^#[0-9a-f]{3,8}$/i;

// -- small helpers ---------------------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

// h("span", {class: "x", text: "hi", dataset: {testid: "y"}, title: "..."}, child, …): an element, built safely.
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "on") for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function setText(el, text) {
  const value = String(text ?? "");
  if (el.textContent !== value) el.textContent = value;
}

function setData(el, name, value) {
  const text = String(value);
  if (el.dataset[name] !== text) el.dataset[name] = text;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// Seconds as m:ss (h:mm:ss past an hour); with tenths, m:ss.s (cut, not rounded, like a player's clock).
function clock(seconds, tenths = false) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const count = Math.floor(Math.max(0, seconds) * 10 + 1e-6); // in tenths; the epsilon keeps 7.6 from being 7.5999…
  const whole = Math.floor(count / 10);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = whole % 60;
  const fraction = tenths ? `.${count % 10}` : "";
  return hours ? `${hours}:${pad(minutes)}:${pad(secs)}${fraction}` : `${minutes}:${pad(secs)}${fraction}`;
}

function seconds(value) {
  return Number.isFinite(value) ? `${value.toFixed(1)} s` : "–";
}

// An ISO timestamp as local "YYYY-MM-DD HH:MM:SS".
function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function bytes(n) {
  if (!Number.isFinite(n)) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// Who said a line: their name, else what is known of them. A standalone session's "main" source is its publisher.
function speakerName(displayName, participantId, sourceId) {
  if (displayName) return displayName;
  if (participantId) return participantId;
  if (sourceId === MAIN_SOURCE) return "Publisher";
  return sourceId ? `source ${sourceId}` : "Unnamed speaker";
}

const short = (id) => (id && id.length > 12 ? id.slice(0, 8) : id || "");

function badge(text, tone = "neutral", testid) {
  return h("span", {class: `badge badge-${tone}`, text, dataset: testid ? {testid} : {}});
}

const STATE_TONES = {
  established: "ok", establishing: "warn", incoming: "warn", notifying: "warn", transferring: "warn",
  hold: "warn", terminating: "muted", terminated: "muted",
};

// -- the API ---------------------------------------------------------------------------------------------------------

class SignedOut extends Error {}

let leaving = false;

function toLogin() {
  if (leaving) return; // one navigation: a second one would abort the first
  leaving = true;
  const here = location.pathname + location.search + location.hash;
  location.assign("/console/login?next=" + encodeURIComponent(here));
}

async function problem(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  } catch {
    // not JSON: the status line says it
  }
  return `HTTP ${response.status} ${response.statusText}`;
}

async function api(path, options = {}) {
  const response = await fetch(path, {credentials: "same-origin", headers: {Accept: "application/json"}, ...options});
  if (response.status === 401) {
    toLogin();
    throw new SignedOut();
  }
  if (!response.ok) {
    const error = new Error(await problem(response));
    error.status = response.status;
    throw error;
  }
  return response.json();
}

const banner = $("banner");

function showError(error) {
  if (error instanceof SignedOut) return;
  banner.textContent = error.message || String(error);
  banner.hidden = false;
}

function clearError() {
  banner.hidden = true;
  banner.textContent = "";
}

// -- live ------------------------------------------------------------------------------------------------------------

// Keeps a container's children in step with a list of items, by key: new items get an element, gone ones lose it.
class KeyedList {
  constructor(container, create) {
    this.container = container;
    this.create = create;
    this.items = new Map();
  }

  update(list, keyOf) {
    const seen = new Set();
    let previous = null;
    for (const data of list) {
      const key = keyOf(data);
      seen.add(key);
      let item = this.items.get(key);
      if (!item) {
        item = this.create(data);
        this.items.set(key, item);
      }
      item.update(data);
      const expected = previous ? previous.nextSibling : this.container.firstChild;
      if (item.root !== expected) this.container.insertBefore(item.root, expected);
      previous = item.root;
    }
    for (const [key, item] of this.items) {
      if (!seen.has(key)) {
        item.root.remove();
        this.items.delete(key);
      }
    }
  }
}

// One person (or media source) of a live call or session: who, speaking now, level, speaking time, segments.
class SourceRow {
  constructor(key) {
    this.dot = h("span", {class: "speak-dot", dataset: {testid: "speaking", speaking: "false"}, title: "silent"});
    this.name = h("span", {class: "name", dataset: {testid: "participant-name"}});
    this.flags = h("span", {class: "flags"});
    this.bar = h("span", {class: "meter-bar"});
    this.meter = h("span", {class: "meter", dataset: {testid: "level", dbfs: ""}, title: "level"}, this.bar);
    this.time = h("span", {class: "stat", dataset: {testid: "speaking-time"}, title: "speaking time"});
    this.segments = h("span", {class: "stat", dataset: {testid: "segments"}, title: "speech segments"});
    this.root = h("li", {class: "source", dataset: {testid: "participant", key}},
      this.dot, h("span", {class: "who"}, this.name, this.flags), this.meter, this.time, this.segments);
  }

  update(row) {
    const speaking = Boolean(row.source && row.source.speaking);
    setData(this.dot, "speaking", speaking);
    this.dot.title = speaking ? "speaking" : "silent";
    this.root.classList.toggle("speaking", speaking);
    setText(this.name, row.name);
    if (row.participantId) setData(this.root, "participantId", row.participantId);
    if (row.source) setData(this.root, "sourceId", row.source.source_id);
    const flags = [];
    if (row.muted) flags.push(badge("muted", "warn"));
    if (row.source && !row.source.connected) flags.push(badge("disconnected", "muted"));
    const source = row.source;
    if (source && source.codec) flags.push(h("span", {class: "codec", text: source.codec.replace("audio/", "")}));
    if (source && source.packets_lost) flags.push(h("span", {class: "codec", text: `${source.packets_lost} lost`}));
    this.flags.replaceChildren(...flags);
    const dbfs = row.source ? row.source.level_dbfs : null;
    const fraction = Number.isFinite(dbfs) ? Math.min(1, Math.max(0, (dbfs - METER_FLOOR_DB) / -METER_FLOOR_DB)) : 0;
    this.bar.style.width = `${(fraction * 100).toFixed(1)}%`;
    setData(this.meter, "dbfs", Number.isFinite(dbfs) ? dbfs.toFixed(1) : "");
    setData(this.meter, "hot", Number.isFinite(dbfs) && dbfs > METER_HOT_DB);
    this.meter.title = Number.isFinite(dbfs) ? `${dbfs.toFixed(1)} dBFS` : "no audio";
    setText(this.time, row.source ? seconds(row.source.speaking_s) : "–");
    setText(this.segments, row.source ? `${row.source.segments} seg` : "–");
  }
}

// The people of a call: its roster joined with the media sources (by participant), then sources nobody was named for.
function callRows(call) {
  const sources = call.media ? call.media.sources : [];
  const rows = [];
  const used = new Set();
  for (const person of call.roster) {
    const source = sources.find((s) => s.participant_id === person.id) || null;
    if (source) used.add(source.source_id);
    rows.push({key: `p:${person.id}`, participantId: person.id, name: person.display_name || person.id,
      muted: person.is_muted, source});
  }
  for (const source of sources) {
    if (used.has(source.source_id)) continue;
    if (source.source_id === MAIN_SOURCE && !source.frames_received) continue; // the bot's own send leg
    rows.push(sourceRow(source, false));
  }
  return rows;
}

function sourceRow(source, standalone) {
  let name = source.display_name;
  if (!name && source.source_id === MAIN_SOURCE) name = standalone ? "Publisher" : "main";
  if (!name) name = `source ${source.source_id}`;
  return {key: `s:${source.source_id}`, participantId: source.participant_id, name, muted: false, source};
}

function sessionRows(session) {
  return session.sources
    .filter((s) => !(s.source_id === MAIN_SOURCE && !s.frames_received && !s.connected))
    .map((s) => sourceRow(s, true));
}

function transcriptItems(lines) {
  return lines.slice(-TRANSCRIPT_LINES).map((line) =>
    h("li", {dataset: {testid: "live-transcript-line"}},
      h("span", {class: "time", text: clock(line.start)}),
      h("span", {class: "speaker", text: speakerName(line.display_name, line.participant_id, line.source_id)}),
      h("span", {class: "text", text: line.text})));
}

function transcriptKey(lines) {
  const last = lines[lines.length - 1];
  return last ? `${lines.length}:${last.start}:${last.text}` : "";
}

// A live card: a call or a standalone session, updated in place on every snapshot.
class LiveCard {
  constructor(kind, id) {
    const testid = kind === "call" ? "live-call" : "live-session";
    this.kind = kind;
    this.title = h("h3", {class: "card-title", dataset: {testid: "card-title"}});
    this.id = h("span", {class: "mono muted", text: id, title: id});
    this.badges = h("span", {class: "badges"});
    this.duration = h("span", {class: "duration", dataset: {testid: "duration"}});
    this.recording = h("a", {class: "recording-link", text: "Open recording →", hidden: true,
      href: `#/recordings/${encodeURIComponent(id)}`, dataset: {testid: "recording-link"}});
    this.sources = h("ul", {class: "sources", dataset: {testid: "sources"}});
    this.noSources = h("p", {class: "empty small-text", text: "No audio yet."});
    this.summary = h("p", {class: "summary muted"});
    this.transcript = h("ol", {class: "live-transcript", dataset: {testid: "live-transcript"}});
    this.noTranscript = h("p", {class: "empty small-text", text: "Nothing transcribed yet."});
    this.transcriptShown = null;
    this.rows = new KeyedList(this.sources, (row) => new SourceRow(row.key));
    this.root = h("article", {class: `card live-card live-${kind}`, dataset: {testid, id}},
      h("header", {class: "card-head"},
        h("div", {class: "card-heading"}, this.title, this.id),
        h("div", {class: "card-meta"}, this.badges, this.duration, this.recording)),
      h("div", {class: "card-body"},
        h("div", {class: "card-col"}, h("h4", {text: kind === "call" ? "Participants" : "Sources"}),
          this.sources, this.noSources, this.summary),
        h("div", {class: "card-col"}, h("h4", {text: "Live transcript"}), this.transcript, this.noTranscript)));
  }

  update(item) {
    if (this.kind === "call") this.updateCall(item);
    else this.updateSession(item);
    const key = transcriptKey(item.transcript);
    if (key !== this.transcriptShown) {
      this.transcript.replaceChildren(...transcriptItems(item.transcript));
      this.transcriptShown = key;
    }
    this.noTranscript.hidden = item.transcript.length > 0;
  }

  updateCall(call) {
    setText(this.title, call.subject || `Call ${short(call.id)}`);
    const state = call.state;
    const badges = [badge(state, STATE_TONES[state] || "neutral", "call-state"), badge(call.direction || "?")];
    if (call.media) badges.push(recordingBadge(call.media.recording));
    this.badges.replaceChildren(...badges);
    setData(this.root, "state", state);
    this.root.classList.toggle("ended", Boolean(call.ended));
    this.recording.hidden = !call.ended; // its folder is complete and indexed once the call has ended
    const start = Date.parse(call.established || call.created);
    const end = call.ended ? Date.parse(call.ended) : Date.now();
    setText(this.duration, Number.isFinite(start) ? clock((end - start) / 1000) : "–");
    const rows = callRows(call);
    this.rows.update(rows, (row) => row.key);
    this.noSources.hidden = rows.length > 0;
    const parts = [];
    if (call.media) parts.push(`${call.media.segments} segments`);
    if (call.tones) parts.push(`DTMF ${call.tones}`);
    setText(this.summary, parts.join(" · "));
  }

  updateSession(session) {
    setText(this.title, "Browser join");
    this.badges.replaceChildren(badge("browser join", "accent"), recordingBadge(session.recording));
    setText(this.duration, clock(session.position_s));
    const rows = sessionRows(session);
    this.rows.update(rows, (row) => row.key);
    this.noSources.hidden = rows.length > 0;
    const parts = [`${session.segments} segments`];
    if (session.tones) parts.push(`DTMF ${session.tones}`);
    setText(this.summary, parts.join(" · "));
    setData(this.root, "segments", session.segments);
  }
}

function recordingBadge(state) {
  const tone = state === "on" ? "rec" : state === "refused" ? "danger" : "warn";
  const text = state === "on" ? "recording" : state === "refused" ? "not recorded" : "recording pending";
  return badge(text, tone, "recording-state");
}

const liveView = {
  source: null,
  retry: 0,
  timer: null,
  calls: new KeyedList($("live-calls"), (call) => new LiveCard("call", call.id)),
  sessions: new KeyedList($("live-sessions"), (session) => new LiveCard("session", session.session_id)),

  enter() {
    this.active = true;
    this.retry = 0;
    streamStatus("connecting", "connecting…");
    // One plain request first: it renders at once and finds out whether we are signed in (a stream cannot tell).
    api(LIVE).then((snapshot) => {
      this.render(snapshot);
      this.connect();
    }, (error) => {
      showError(error);
      if (!(error instanceof SignedOut)) this.reconnectLater();
    });
  },

  leave() {
    this.active = false;
    clearTimeout(this.timer);
    this.close();
    streamStatus("idle", "");
  },

  connect() {
    this.close();
    if (!this.active || leaving) return;
    streamStatus("connecting", "connecting…");
    const source = new EventSource(LIVE_EVENTS, {withCredentials: true});
    source.onopen = () => {
      this.retry = 0;
      streamStatus("live", "live");
    };
    source.onmessage = (event) => {
      streamStatus("live", "live");
      this.render(JSON.parse(event.data));
    };
    source.onerror = () => {
      // The browser retries by itself only after a network error, not after a refused request: retry here, and
      // find out first whether we were signed out (an EventSource cannot see the status).
      this.close();
      api(LIVE).then((snapshot) => this.render(snapshot), () => {});
      this.reconnectLater();
    };
    this.source = source;
  },

  reconnectLater() {
    if (!this.active || leaving) return;
    streamStatus("reconnecting", "reconnecting…");
    const delay = RECONNECT_MS[Math.min(this.retry, RECONNECT_MS.length - 1)];
    this.retry += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  },

  close() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  },

  render(snapshot) {
    if (!this.active) return;
    const calls = snapshot.calls || [];
    const sessions = snapshot.sessions || [];
    this.calls.update(calls, (call) => call.id);
    this.sessions.update(sessions, (session) => session.session_id);
    const live = calls.filter((call) => !call.ended).length;
    setText($("live-calls-count"), calls.length ? `${live} live · ${calls.length - live} ended` : "");
    setText($("live-sessions-count"), sessions.length ? `${sessions.length} open` : "");
    $("live-calls-empty").hidden = calls.length > 0;
    $("live-sessions-empty").hidden = sessions.length > 0;
  },
};

function streamStatus(state, text) {
  const el = $("stream-status");
  setData(el, "state", state);
  setText(el, text);
}

// -- recordings ------------------------------------------------------------------------------------------------------

function statusBadge(recording) {
  if (recording.recovered) return badge("recovered", "warn");
  return recording.complete ? badge("complete", "ok") : badge("in progress", "warn");
}

const recordingsView = {
  offset: 0,
  timer: null,

  enter() {
    this.active = true;
    this.load();
  },

  leave() {
    this.active = false;
    clearTimeout(this.timer);
  },

  async load() {
    clearTimeout(this.timer);
    try {
      const page = await api(`${RECORDINGS}?limit=${PAGE_SIZE}&offset=${this.offset}`);
      if (!this.active) return;
      this.render(page);
      clearError();
    } catch (error) {
      showError(error);
    }
    // New recordings arrive as calls end: keep the list fresh while it is shown.
    if (this.active) this.timer = setTimeout(() => this.load(), LIST_REFRESH_MS);
  },

  render(page) {
    const rows = page.recordings.map((rec) => {
      const href = `#/recordings/${encodeURIComponent(rec.key)}`;
      const kind = rec.standalone ? badge("browser join", "accent") : badge("call", "neutral");
      const people = rec.participants.length ? rec.participants.join(", ") : rec.standalone ? "Publisher" : "–";
      const transcript = rec.segments ? `${rec.transcribed}/${rec.segments}` : "–";
      const row = h("tr", {class: "clickable", dataset: {testid: "recording-row", key: rec.key}},
        h("td", {}, h("a", {href, text: when(rec.created)}),
          h("div", {class: "mono muted small-text", text: short(rec.key)})),
        h("td", {class: "num", text: clock(rec.duration_s)}),
        h("td", {}, kind),
        h("td", {class: "people", text: people, title: people}),
        h("td", {class: "num", text: transcript, title: "transcribed / speech segments"}),
        h("td", {}, statusBadge(rec)));
      row.addEventListener("click", (event) => {
        if (!(event.target instanceof HTMLAnchorElement)) location.hash = href;
      });
      return row;
    });
    $("recordings-body").replaceChildren(...rows);
    $("recordings-empty").hidden = page.total > 0;
    const first = page.recordings.length ? page.offset + 1 : 0;
    const last = page.offset + page.recordings.length;
    setText($("recordings-count"), page.total ? `${page.total} recording${page.total === 1 ? "" : "s"}` : "");
    setText($("page-info"), page.total ? `${first}–${last} of ${page.total}` : "");
    $("page-prev").disabled = page.offset === 0;
    $("page-next").disabled = last >= page.total;
  },
};

$("recordings-refresh").addEventListener("click", () => recordingsView.load());
$("page-prev").addEventListener("click", () => {
  recordingsView.offset = Math.max(0, recordingsView.offset - PAGE_SIZE);
  recordingsView.load();
});
$("page-next").addEventListener("click", () => {
  recordingsView.offset += PAGE_SIZE;
  recordingsView.load();
});

// -- one recording ---------------------------------------------------------------------------------------------------

const recordingView = {
  key: null,
  mixed: null,
  lines: [],

  async enter(params) {
    const key = params.key;
    const t = Number.parseFloat(params.query.get("t"));
    if (key === this.key) {
      if (Number.isFinite(t)) this.seek(t, false);
      return;
    }
    this.key = key;
    this.reset();
    setText($("recording-title"), "Loading…");
    setText($("recording-key"), key);
    try {
      const detail = await api(`${RECORDINGS}/${encodeURIComponent(key)}`);
      if (this.key !== key) return;
      this.render(detail);
      clearError();
      if (Number.isFinite(t)) this.seek(t, false);
    } catch (error) {
      if (this.key !== key) return;
      setText($("recording-title"), error.status === 404 ? "No such recording" : "Recording");
      showError(error);
    }
  },

  leave() {
    if (this.mixed) this.mixed.pause();
    for (const audio of $("audio-list").querySelectorAll("audio")) audio.pause();
  },

  reset() {
    this.mixed = null;
    this.lines = [];
    $("timeline").removeAttribute("src");
    for (const id of ["recording-badges", "recording-facts", "transcript", "audio-list", "tones", "files-body"]) {
      $(id).replaceChildren();
    }
  },

  render(detail) {
    const call = detail.call || {};
    const standalone = call.call_id === null || call.call_id === undefined;
    setText($("recording-title"), standalone ? `Browser join ${short(detail.key)}` : `Call ${short(detail.key)}`);
    const badges = [standalone ? badge("browser join", "accent") : badge("call", "neutral")];
    badges.push(statusBadge(call));
    $("recording-badges").replaceChildren(...badges);

    const names = {};
    const colors = {};
    for (const p of call.participants || []) names[p.id] = p.display_name || p.id;
    for (const lane of detail.timeline.lanes || []) {
      if (lane.participant_id) colors[lane.participant_id] = lane.color;
      for (const source of lane.source_ids) colors[`source:${source}`] = lane.color;
    }
    const duration = detail.timeline.duration;
    const facts = [
      ["Started", when(call.created)], ["Ended", when(call.ended)], ["Duration", clock(duration, true)],
      ["Participants", Object.values(names).join(", ") || (standalone ? "Publisher" : "–")],
      ["Speech segments", String(detail.segments.length)], ["Transcript lines", String(detail.transcript.length)],
    ];
    if (call.call_id) facts.push(["Call id", call.call_id]);
    if (call.session_id) facts.push(["Media session", call.session_id]);
    const pairs = facts.map(([term, value]) => h("div", {}, h("dt", {text: term}), h("dd", {text: value})));
    $("recording-facts").replaceChildren(...pairs);

    $("timeline").src = detail.timeline_url;

    const wavs = detail.audio.filter((a) => a.format === "wav");
    $("audio-list").replaceChildren(...wavs.map((file) => {
      const testid = file.kind === "mixed" ? "audio-mixed" : "audio-participant";
      const audio = h("audio", {controls: true, preload: "metadata", src: file.url,
        dataset: {testid, kind: file.kind, participantId: file.participant_id || ""}});
      if (file.kind === "mixed") this.mixed = audio;
      const swatch = h("span", {class: "swatch"});
      const color = file.participant_id ? colors[file.participant_id] : colors[`source:${file.source_ids[0]}`];
      if (color && COLOR.test(color)) swatch.style.backgroundColor = color;
      return h("figure", {class: `audio-item audio-${file.kind}`, dataset: {testid: "audio-item"}},
        h("figcaption", {}, swatch, h("span", {class: "name", text: file.label}),
          h("span", {class: "muted small-text", text: `${clock(file.seconds, true)} · ${bytes(file.bytes)}`})),
        audio);
    }));
    if (this.mixed) this.mixed.addEventListener("timeupdate", () => this.follow());

    this.lines = detail.transcript.map((line) => {
      const speaker = speakerName(line.display_name || names[line.participant_id], line.participant_id, line.source_id);
      const swatch = h("span", {class: "swatch"});
      const color = colors[line.participant_id] || colors[`source:${line.source_id}`];
      if (color && COLOR.test(color)) swatch.style.backgroundColor = color;
      const play = () => this.seek(line.start, true);
      const onKey = (event) => {
        if (event.key !== "Enter" && event.key !== " ") return;
        event.preventDefault();
        play();
      };
      const el = h("li", {class: "line", tabindex: "0", title: "Play from here",
        dataset: {testid: "transcript-line", start: line.start, end: line.end}, on: {click: play, keydown: onKey}},
        h("span", {class: "time", text: clock(line.start, true)}),
        h("span", {class: "speaker", dataset: {testid: "transcript-speaker"}}, swatch, speaker),
        h("span", {class: "text", dataset: {testid: "transcript-text"}, text: line.text}));
      return {start: line.start, end: line.end, el};
    });
    $("transcript").replaceChildren(...this.lines.map((line) => line.el));
    $("transcript-empty").hidden = this.lines.length > 0;

    $("tones").replaceChildren(...detail.tones.map((tone) => {
      const who = names[tone.participant_id] || (tone.source_id ? `source ${tone.source_id}` : "?");
      const at = Number.isFinite(tone.start) ? tone.start : tone.t;
      return h("li", {dataset: {testid: "tone"}}, h("span", {class: "digit", text: tone.digit}),
        h("span", {text: who}), h("span", {class: "time", text: clock(at, true)}));
    }));
    $("tones-empty").hidden = detail.tones.length > 0;

    const audioFiles = detail.audio.map((file) => ({name: `audio/${file.name}`, bytes: file.bytes, url: file.url}));
    const files = [...audioFiles, ...detail.files];
    $("files-body").replaceChildren(...files.map((file) =>
      h("tr", {dataset: {testid: "file"}},
        h("td", {}, h("a", {href: file.url, text: file.name, target: "_blank", rel: "noopener"})),
        h("td", {class: "num muted", text: bytes(file.bytes)}))));
  },

  // Put the mix at ``t`` seconds (and play it, after a click), and show the line being said.
  seek(t, play) {
    const audio = this.mixed;
    if (!audio) return;
    audio.currentTime = t;
    if (play) audio.play().catch(() => {});
    const target = this.lines.find((line) => line.start <= t + 0.05 && t < line.end) ||
      this.lines.find((line) => line.start >= t);
    for (const line of this.lines) line.el.classList.toggle("target", line === target);
    if (target) target.el.scrollIntoView({block: "nearest"});
  },

  follow() {
    const t = this.mixed.currentTime;
    for (const line of this.lines) line.el.classList.toggle("playing", line.start <= t && t < line.end);
  },
};

// -- search ----------------------------------------------------------------------------------------------------------

// A snippet with its matches between the API's marks, as text and <mark> elements.
function highlighted(snippet, [open, close]) {
  const parts = [];
  let rest = snippet;
  while (rest.includes(open)) {
    const [before, after] = [rest.slice(0, rest.indexOf(open)), rest.slice(rest.indexOf(open) + open.length)];
    const end = after.indexOf(close);
    parts.push(before, h("mark", {text: end < 0 ? after : after.slice(0, end)}));
    rest = end < 0 ? "" : after.slice(end + close.length);
  }
  parts.push(rest);
  return parts;
}

const searchView = {
  async enter(params) {
    const q = params.query.get("q") || "";
    const input = $("search-input");
    if (input.value !== q) input.value = q;
    const status = $("search-status");
    const results = $("search-results");
    if (!q.trim()) {
      results.replaceChildren();
      setText(status, "Search what was said in every recorded call.");
      input.focus();
      return;
    }
    setText(status, "Searching…");
    try {
      const found = await api(`${RECORDINGS}/search?q=${encodeURIComponent(q)}&limit=100`);
      if ((new URLSearchParams(location.hash.split("?")[1] || "")).get("q") !== q) return; // a newer search began
      setData(status, "state", "ok");
      const count = found.hits.length;
      setText(status, count ? `${count} line${count === 1 ? "" : "s"} match` : "No line matches.");
      results.replaceChildren(...found.hits.map((hit) =>
        h("li", {dataset: {testid: "search-result", key: hit.key, start: hit.start}},
          h("a", {href: `#/recordings/${encodeURIComponent(hit.key)}?t=${hit.start}`},
            h("span", {class: "result-head"},
              h("span", {class: "speaker", text: speakerName(hit.display_name, hit.participant_id, null)}),
              h("span", {class: "time", text: clock(hit.start, true)}),
              h("span", {class: "mono muted", text: short(hit.key), title: hit.key})),
            h("span", {class: "snippet"}, ...highlighted(hit.snippet, found.marks))))));
    } catch (error) {
      if (error instanceof SignedOut) return;
      results.replaceChildren();
      setData(status, "state", "error");
      setText(status, error.message);
    }
  },

  leave() {},
};

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("search-input").value.trim();
  location.hash = q ? `#/search?q=${encodeURIComponent(q)}` : "#/search";
});

// -- routing and chrome ----------------------------------------------------------------------------------------------

const VIEWS = {live: liveView, recordings: recordingsView, recording: recordingView, search: searchView};
let current = null;

function route() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = {query: new URLSearchParams(query)};
  let name = "live";
  if (parts[0] === "recordings" && parts.length > 1) {
    name = "recording";
    params.key = decodeURIComponent(parts.slice(1).join("/"));
  } else if (parts[0] in VIEWS) {
    name = parts[0];
  }
  return {name, params};
}

function show() {
  const {name, params} = route();
  const view = VIEWS[name];
  if (current && current !== view) current.leave();
  if (name !== "recording") recordingView.key = null;
  clearError();
  for (const section of document.querySelectorAll("[data-view]")) section.hidden = section.dataset.view !== name;
  const tab = name === "recording" ? "recordings" : name;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.route === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `mediabot · ${tab}`;
  const entering = current !== view || name !== "live";
  current = view;
  if (entering) view.enter(params);
}

$("logout").addEventListener("click", async () => {
  try {
    await fetch("/console/logout", {method: "POST", credentials: "same-origin"});
  } finally {
    location.assign("/console/login");
  }
});

window.addEventListener("hashchange", show);
if (!location.hash) history.replaceState(null, "", "#/live");
show();
