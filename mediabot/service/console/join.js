// The join page: publish this browser's microphone to the bot over WHIP (RFC 9725) as a standalone recorded session.
//
// Join: getUserMedia → POST /v1/sessions (WHIP URL + bearer) → offer with every ICE candidate gathered (WHIP is
// non-trickle) → POST the offer to the WHIP URL → set the answer, keep its Location. The bot's own audio (prompts)
// comes back on the same connection and plays through the <audio> element. While joined, the bot's view of the
// session (GET /v1/sessions/{id}) is polled. Leave: DELETE the Location; the bot then finishes the recording.
"use strict";

const ICE_GATHER_MS = 3000; // gather candidates for at most this long, then offer what we have
const CONNECT_MS = 20000; // ICE + DTLS must be up within this long after the answer
const POLL_MS = 500;
const FINISH_MS = 10000; // after leaving, wait at most this long for the bot to close the session's files
const METER_MS = 100;
const METER_FLOOR_DB = -60;
const SOURCE = "main";

const $ = (id) => document.getElementById(id);
const ui = {
  join: $("join"),
  leave: $("leave"),
  status: $("status"),
  error: $("error"),
  panel: $("panel"),
  meter: $("meter"),
  elapsed: $("elapsed"),
  speaking: $("speaking"),
  botLevel: $("bot-level"),
  segments: $("segments"),
  speakingTime: $("speaking-time"),
  sessionId: $("session-id"),
  transcript: $("transcript"),
  noTranscript: $("no-transcript"),
  done: $("done"),
  doneSession: $("done-session"),
  doneFolder: $("done-folder"),
  recordingLink: $("recording-link"),
  remote: $("remote"),
};

const LOGIN = "/console/login?next=" + encodeURIComponent("/join");
let current = null; // the attempt in progress: {session, pc, stream, resource, connected, timers…}

class Stop extends Error {} // thrown inside join() once the attempt was left or replaced

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
}

// The message of a refused request: FastAPI's {"detail": …}, WHIP's text/plain, or the status line.
async function reason(response) {
  const text = (await response.text().catch(() => "")).trim();
  try {
    const detail = JSON.parse(text).detail;
    if (typeof detail === "string") return detail;
    if (detail !== undefined) return JSON.stringify(detail);
  } catch (_) {
    // not JSON: the text itself
  }
  return text || response.statusText || "no details";
}

// The WHIP URL on this page's origin: the session lives in the instance that served POST /v1/sessions, and the
// page's Content-Security-Policy allows connections to its own origin only.
function whipUrl(endpoint) {
  const url = new URL(endpoint, location.href);
  const local = new URL(url.pathname, location.origin);
  local.searchParams.set("source", SOURCE);
  return local.href;
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") finish();
    };
    const timer = setTimeout(finish, ms);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function formatTime(seconds) {
  const s = Math.floor(seconds);
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

// -- the local level meter (WebAudio) ---------------------------------------------------------------------------------

function startMeter(attempt) {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  const context = new Context();
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  context.createMediaStreamSource(attempt.stream).connect(analyser);
  const buffer = new Float32Array(analyser.fftSize);
  attempt.audioContext = context;
  attempt.meterTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(buffer);
    let sum = 0;
    for (let i = 0; i < buffer.length; i++) sum += buffer[i] * buffer[i];
    const rms = Math.sqrt(sum / buffer.length);
    const db = rms > 0 ? Math.max(20 * Math.log10(rms), METER_FLOOR_DB) : METER_FLOOR_DB;
    ui.meter.style.width = `${Math.round((1 - db / METER_FLOOR_DB) * 100)}%`;
    ui.meter.dataset.dbfs = db.toFixed(1);
  }, METER_MS);
}

// -- the bot's view of the session ------------------------------------------------------------------------------------

function render(view) {
  const source = (view.sources || []).find((s) => s.source_id === SOURCE) || (view.sources || [])[0];
  const speaking = Boolean(source && source.speaking);
  ui.speaking.dataset.speaking = String(speaking);
  ui.speaking.textContent = speaking ? "speaking" : "silent";
  ui.botLevel.textContent = source ? `${source.level_dbfs} dBFS` : "";
  ui.segments.textContent = String(view.segments ?? 0);
  ui.speakingTime.textContent = `${(source ? source.speaking_s : 0).toFixed(1)} s`;
  const lines = view.transcript || [];
  const last = lines.length ? lines[lines.length - 1] : null;
  const key = `${lines.length}:${last ? last.start + last.text : ""}`;
  if (ui.transcript.dataset.key !== key) {
    ui.transcript.dataset.key = key;
    ui.transcript.replaceChildren(
      ...lines.map((line) => {
        const item = document.createElement("li");
        const at = document.createElement("span");
        at.className = "join-muted";
        at.textContent = `${formatTime(line.start)} `;
        item.append(at, document.createTextNode(line.text));
        return item;
      }),
    );
    ui.noTranscript.hidden = lines.length > 0;
  }
}

function schedulePoll(attempt) {
  attempt.pollTimer = setTimeout(() => poll(attempt), POLL_MS);
}

async function poll(attempt) {
  if (attempt !== current) return;
  try {
    const response = await fetch(`/v1/sessions/${encodeURIComponent(attempt.session.session_id)}`);
    if (attempt !== current) return;
    if (response.status === 401) {
      location.assign(LOGIN);
      return;
    }
    if (response.status === 404) {
      // The bot ended the session (DELETE /v1/sessions from elsewhere, or the connection dropped on its side).
      end(attempt, "The bot ended the session.");
      return;
    }
    if (response.ok) render(await response.json());
  } catch (_) {
    // a dropped poll is retried on the next tick
  }
  if (attempt === current) schedulePoll(attempt);
}

// -- join / leave ------------------------------------------------------------------------------------------------------

async function join() {
  clearError();
  ui.done.hidden = true;
  ui.join.disabled = true;
  ui.leave.disabled = false;
  const attempt = {session: null, pc: null, stream: null, resource: null, connected: false};
  current = attempt;
  const check = () => {
    if (attempt !== current) throw new Stop();
  };
  try {
    setStatus("connecting", "asking for the microphone…");
    try {
      attempt.stream = await navigator.mediaDevices.getUserMedia({
        audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1},
        video: false,
      });
    } catch (err) {
      throw new Error(`The microphone is not available (${err.name}): ${err.message || "permission denied"}.`);
    }
    check();
    startMeter(attempt);

    setStatus("connecting", "opening a session…");
    const created = await fetch("/v1/sessions", {method: "POST"});
    if (created.status === 401) {
      location.assign(LOGIN);
      throw new Stop();
    }
    if (!created.ok) throw new Error(`The bot could not open a session (HTTP ${created.status}): ${await reason(created)}`);
    attempt.session = await created.json();
    ui.sessionId.textContent = attempt.session.session_id;
    ui.panel.hidden = false;
    check();

    setStatus("connecting", "connecting…");
    const pc = (attempt.pc = new RTCPeerConnection({iceServers: []}));
    const [track] = attempt.stream.getAudioTracks();
    pc.addTransceiver(track, {direction: "sendrecv", streams: [attempt.stream]});
    pc.addEventListener("track", (event) => {
      ui.remote.srcObject = event.streams[0] || new MediaStream([event.track]);
      ui.remote.play().catch(() => {}); // autoplay may be refused; the prompts are not essential
    });
    pc.addEventListener("connectionstatechange", () => connectionChanged(attempt));
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, ICE_GATHER_MS);
    check();

    const url = whipUrl(attempt.session.whip_url);
    const answer = await fetch(url, {
      method: "POST",
      headers: {"Content-Type": "application/sdp", Authorization: `Bearer ${attempt.session.token}`},
      body: pc.localDescription.sdp,
    });
    if (!answer.ok) throw new Error(`The bot refused the connection (HTTP ${answer.status}): ${await reason(answer)}`);
    const resource = answer.headers.get("Location");
    if (resource) attempt.resource = new URL(resource, url).href;
    const sdp = await answer.text();
    check();
    await pc.setRemoteDescription({type: "answer", sdp});
    check();
    attempt.connectTimer = setTimeout(() => {
      if (attempt === current && !attempt.connected) {
        fail(attempt, `The media connection did not come up within ${CONNECT_MS / 1000} s (ICE state: ${pc.iceConnectionState}).`);
      }
    }, CONNECT_MS);
    schedulePoll(attempt);
  } catch (err) {
    if (err instanceof Stop) {
      // Left while joining: release what arrived after leave() cleaned up (the microphone, a session just opened).
      teardown(attempt);
      if (!attempt.hungUp) await hangUp(attempt);
      return;
    }
    fail(attempt, err.message || String(err));
  }
}

function connectionChanged(attempt) {
  if (attempt !== current) return;
  const state = attempt.pc.connectionState;
  if (state === "connected") {
    attempt.connected = true;
    clearTimeout(attempt.connectTimer);
    setStatus("connected", "connected");
    if (!attempt.started) {
      attempt.started = performance.now();
      const tick = () => (ui.elapsed.textContent = formatTime((performance.now() - attempt.started) / 1000));
      tick();
      attempt.clockTimer = setInterval(tick, 250);
    }
  } else if (state === "disconnected") {
    setStatus("connecting", "reconnecting…");
  } else if (state === "failed") {
    fail(attempt, `The media connection failed (ICE state: ${attempt.pc.iceConnectionState}).`);
  }
}

// Stop everything local: timers, meter, peer connection, microphone.
function teardown(attempt) {
  clearTimeout(attempt.pollTimer);
  clearTimeout(attempt.connectTimer);
  clearInterval(attempt.clockTimer);
  clearInterval(attempt.meterTimer);
  if (attempt.audioContext) attempt.audioContext.close().catch(() => {});
  if (attempt.pc) attempt.pc.close();
  if (attempt.stream) attempt.stream.getTracks().forEach((track) => track.stop());
  if (current === null) {
    ui.speaking.dataset.speaking = "false";
    ui.speaking.textContent = "silent";
    ui.botLevel.textContent = "";
    ui.remote.srcObject = null;
    ui.meter.style.width = "0%";
    ui.leave.disabled = true;
    ui.join.disabled = false;
  }
}

// End the bot's side: the WHIP resource if we have one (the session then ends by itself), else the session.
async function hangUp(attempt, keepalive = false) {
  const session = attempt.session;
  if (!session) return;
  attempt.hungUp = true;
  try {
    if (attempt.resource) {
      await fetch(attempt.resource, {method: "DELETE", headers: {Authorization: `Bearer ${session.token}`}, keepalive});
    } else {
      await fetch(`/v1/sessions/${encodeURIComponent(session.session_id)}`, {method: "DELETE", keepalive});
    }
  } catch (_) {
    // the bot also ends the session when the peer connection fails or nobody publishes
  }
}

// Wait (bounded) until the bot no longer lists the session: it closed it and is finishing its files.
async function finished(attempt) {
  const deadline = performance.now() + FINISH_MS;
  while (performance.now() < deadline) {
    try {
      const response = await fetch(`/v1/sessions/${encodeURIComponent(attempt.session.session_id)}`);
      if (response.status === 404) return true;
    } catch (_) {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return false;
}

// Where the recording went; `ended`: the bot confirmed it closed the session (its files are being finished).
function showDone(attempt, ended) {
  const session = attempt.session;
  ui.doneSession.textContent = session.session_id;
  ui.doneFolder.textContent = session.folder;
  ui.recordingLink.href = `/console#/recordings/${encodeURIComponent(session.session_id)}`;
  ui.done.dataset.ended = String(ended);
  ui.done.hidden = false;
}

async function fail(attempt, message) {
  if (attempt !== current) return;
  current = null;
  showError(message);
  setStatus("failed", "failed");
  teardown(attempt);
  await hangUp(attempt);
}

function end(attempt, message) {
  if (attempt !== current) return;
  current = null;
  teardown(attempt);
  if (message) showError(message);
  setStatus("left", "left");
  if (attempt.connected) showDone(attempt, true);
}

async function leave() {
  const attempt = current;
  if (!attempt) return;
  current = null;
  ui.leave.disabled = true;
  setStatus("leaving", "leaving…");
  await hangUp(attempt);
  teardown(attempt);
  if (attempt.connected) {
    setStatus("leaving", "finishing the recording…");
    const ended = await finished(attempt);
    if (current !== null) return; // joined again meanwhile: that attempt owns the page now
    showDone(attempt, ended);
  }
  setStatus("left", "left");
}

// -- start ------------------------------------------------------------------------------------------------------------

async function start() {
  try {
    const response = await fetch("/v1/live");
    if (response.status === 401) {
      location.replace(LOGIN);
      return;
    }
    if (!response.ok) throw new Error(`The bot did not answer (HTTP ${response.status}): ${await reason(response)}`);
  } catch (err) {
    showError(err.message || String(err));
  }
  if (!window.RTCPeerConnection || !navigator.mediaDevices) {
    showError("This browser cannot send audio here: it needs WebRTC and microphone access (HTTPS).");
    setStatus("failed", "unsupported");
    return;
  }
  setStatus("idle", "not joined");
  ui.join.disabled = false;
}

ui.join.addEventListener("click", join);
ui.leave.addEventListener("click", leave);
window.addEventListener("pagehide", () => {
  const attempt = current;
  if (!attempt) return;
  current = null;
  hangUp(attempt, true);
  teardown(attempt);
});
start();
