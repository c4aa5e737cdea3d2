// mfruntime character page: one WebRTC connection to `mf serve --web` (docs/WEB.md). No build step, no
// third-party code. Query: ?character=ID &token=T &obs=1 &bg=transparent|RRGGBB &check=1 &scale=N
"use strict";
(() => {
  const q = new URLSearchParams(location.search);
  const character = q.get("character") || "default";
  const token = q.get("token") || "";
  const $ = (id) => document.getElementById(id);
  const face = $("face"), status = $("status"), sayBtn = $("say"), stopBtn = $("interrupt"), text = $("text");
  if (q.get("obs") === "1") {
    document.body.classList.add("obs");
    const bg = q.get("bg") || "transparent";
    document.documentElement.style.setProperty("--bg", /^[0-9a-fA-F]{6}$/.test(bg) ? "#" + bg : "transparent");
  }

  let pc = null, channel = null, stream = null, nextId = 1;
  const pending = new Map();
  const listeners = new Set();  // line events (started / ended) for the self-check

  function setStatus(msg, kind) {
    status.textContent = msg;
    status.className = kind || "";
  }

  function enable(on) {
    sayBtn.disabled = stopBtn.disabled = !on;
  }

  // A request over the data channel, answered with the server's reply (status ok / error).
  function request(op, fields) {
    return new Promise((resolve, reject) => {
      if (!channel || channel.readyState !== "open") return reject(new Error("not connected"));
      const id = nextId++;
      pending.set(id, { resolve, reject });
      channel.send(JSON.stringify(Object.assign({ id, op }, fields || {})));
      setTimeout(() => { if (pending.delete(id)) reject(new Error(op + ": no reply in 30 s")); }, 30000);
    });
  }

  function onMessage(e) {
    let msg;
    try { msg = JSON.parse(e.data); } catch (err) { return; }
    if (msg.id != null && pending.has(msg.id)) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.status === "ok") p.resolve(msg); else p.reject(new Error(msg.error || "error"));
    } else if (msg.event) {
      listeners.forEach((fn) => fn(msg));
      if (msg.event === "started") setStatus("connected: speaking (line " + msg.utterance + ")", "ok");
      if (msg.event === "ended") setStatus("connected: listening", "ok");
    }
  }

  function gathered(conn) {
    if (conn.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (conn.iceGatheringState === "complete") { conn.removeEventListener("icegatheringstatechange", done); resolve(); } };
      conn.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 5000);  // offer what was gathered so far
    });
  }

  async function connect() {
    if (pc) { pc.close(); pc = null; }
    enable(false);
    setStatus("connecting…", "wait");
    const conn = new RTCPeerConnection();
    pc = conn;
    conn.addTransceiver("audio", { direction: "recvonly" });
    conn.addTransceiver("video", { direction: "recvonly" });
    channel = conn.createDataChannel("control");
    channel.onmessage = onMessage;
    channel.onopen = () => { enable(true); setStatus("connected: listening", "ok"); };
    channel.onclose = () => enable(false);
    conn.ontrack = (e) => {
      stream = e.streams[0] || stream || new MediaStream();
      if (!e.streams[0]) stream.addTrack(e.track);
      if (face.srcObject !== stream) face.srcObject = stream;
    };
    conn.onconnectionstatechange = () => {
      const s = conn.connectionState;
      if (s === "failed") setStatus("connection failed: the server is not reachable from this browser (docs/WEB.md, troubleshooting)", "bad");
      else if (s === "disconnected" || s === "closed") setStatus("disconnected — press Reconnect", "bad");
    };
    await conn.setLocalDescription(await conn.createOffer());
    await gathered(conn);
    let resp, body;
    try {
      resp = await fetch("offer", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: conn.localDescription.sdp, type: "offer", character, token }) });
      body = await resp.json();
    } catch (err) {
      setStatus("cannot reach the server: " + err.message, "bad");
      return false;
    }
    if (!resp.ok) {
      setStatus("refused: " + (body.error || resp.status), "bad");
      return false;
    }
    const fit = Math.floor(Math.min(512, window.innerWidth - 32) / body.width);
    const scale = Math.max(1, parseInt(q.get("scale"), 10) || fit);
    face.width = body.width * scale;
    face.height = body.height * scale;
    await conn.setRemoteDescription({ type: "answer", sdp: body.sdp });
    return true;
  }

  $("say-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const line = text.value.trim();
    if (!line) return;
    try { await request("say", { text: line }); text.value = ""; }
    catch (err) { setStatus("say refused: " + err.message, "bad"); }
  });
  stopBtn.addEventListener("click", () => request("interrupt").catch((err) => setStatus(err.message, "bad")));
  $("volume").addEventListener("input", (e) => { face.volume = Number(e.target.value); });
  $("connect").addEventListener("click", () => connect());

  // ---- ?check=1: a self-check of this browser's setup, shown on the page and posted to the server ----
  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
  function waitFor(pred, ms, what) {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      (function poll() {
        if (pred()) return resolve();
        if (performance.now() - t0 > ms) return reject(new Error("timed out waiting for " + what));
        setTimeout(poll, 20);
      })();
    });
  }
  function nextEvent(kind, utterance, ms) {
    return new Promise((resolve, reject) => {
      const fn = (m) => { if (m.event === kind && m.utterance === utterance) { listeners.delete(fn); resolve(performance.now()); } };
      listeners.add(fn);
      setTimeout(() => { if (listeners.delete(fn)) reject(new Error("no '" + kind + "' event for line " + utterance)); }, ms);
    });
  }

  // Audio level (RMS) of the received track every 10 ms, and every video frame shown (with a change measure).
  function meters() {
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(stream);
    const an = ctx.createAnalyser();
    an.fftSize = 512;
    src.connect(an);
    const buf = new Float32Array(an.fftSize);
    const levels = [], frames = [];
    const timer = setInterval(() => {
      an.getFloatTimeDomainData(buf);
      let s = 0;
      for (const v of buf) s += v * v;
      levels.push([performance.now(), Math.sqrt(s / buf.length)]);
    }, 10);
    const canvas = document.createElement("canvas");
    const g = canvas.getContext("2d", { willReadFrequently: true });
    let prev = null, stop = false;
    const onFrame = (now) => {
      if (stop) return;
      canvas.width = face.videoWidth || 1; canvas.height = face.videoHeight || 1;
      g.drawImage(face, 0, 0);
      const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
      let diff = 0;
      if (prev && prev.length === px.length) for (let i = 0; i < px.length; i += 4) diff += Math.abs(px[i] - prev[i]);
      frames.push([now, prev ? diff / (px.length / 4) : 0]);
      prev = px;
      face.requestVideoFrameCallback(onFrame);
    };
    face.requestVideoFrameCallback(onFrame);
    return { levels, frames, ctx, close() { stop = true; clearInterval(timer); ctx.close(); } };
  }

  async function avOffsets(ms) {
    // The A/V offset the browser's own timing gives: at the same instant, the sender-clock (NTP) time of the
    // audio being played minus that of the video frame shown (inbound-rtp estimatedPlayoutTimestamp).
    const out = [], t0 = performance.now();
    while (performance.now() - t0 < ms) {
      const stats = await pc.getStats();
      let a = null, v = null;
      stats.forEach((r) => {
        if (r.type === "inbound-rtp" && r.estimatedPlayoutTimestamp) {
          if (r.kind === "audio") a = r.estimatedPlayoutTimestamp; else if (r.kind === "video") v = r.estimatedPlayoutTimestamp;
        }
      });
      if (a !== null && v !== null) out.push(v - a);
      await sleep(50);
    }
    return out;
  }

  function median(xs) { const s = xs.slice().sort((a, b) => a - b); return s.length ? s[s.length >> 1] : null; }

  async function selfCheck() {
    const report = { character, userAgent: navigator.userAgent, steps: [] };
    const show = () => { $("report").hidden = false; $("report").textContent = JSON.stringify(report, null, 1); };
    try {
      const tConnect = performance.now();
      if (!(await connect())) throw new Error(status.textContent);
      await waitFor(() => channel && channel.readyState === "open" && stream && face.readyState >= 2, 20000, "media and the data channel");
      report.connect_ms = Math.round(performance.now() - tConnect);
      const m = meters();
      await sleep(600);
      // 1. A line: speech energy while it plays, silence after, frames at ~25 fps.
      const tSay = performance.now();
      const r1 = await request("say", { text: "Hello from the browser. Can you hear me clearly?" });
      const started = await nextEvent("started", r1.utterance, 30000);
      const ended = await nextEvent("ended", r1.utterance, 60000);
      const offsets = [];
      await sleep(700);
      const during = m.levels.filter(([t]) => t > started + 200 && t < ended - 100).map(([, v]) => v);
      const after = m.levels.filter(([t]) => t > ended + 300).map(([, v]) => v);
      const lineFrames = m.frames.filter(([t]) => t > started && t < ended);
      const firstLoud = m.levels.find(([t, v]) => t > tSay && v > 0.01);
      report.line = {
        say_to_first_sound_ms: firstLoud ? Math.round(firstLoud[0] - tSay) : null,
        rms_during: Math.max(...during, 0), rms_after: Math.max(...after, 0),
        fps: lineFrames.length > 1 ? (lineFrames.length - 1) / ((lineFrames[lineFrames.length - 1][0] - lineFrames[0][0]) / 1000) : 0,
        frames: lineFrames.length, seconds: (ended - started) / 1000,
      };
      // 2. The A/V offset during a second line.
      const r2 = await request("say", { text: "One, two, three, four, five, six, seven, eight, nine, ten." });
      await nextEvent("started", r2.utterance, 30000);
      offsets.push(...(await avOffsets(1500)));
      await nextEvent("ended", r2.utterance, 60000);
      report.av_offset_ms = { median: median(offsets), samples: offsets.length, min: Math.min(...offsets), max: Math.max(...offsets) };
      // 3. Interrupt: how long after the button sound and picture stop.
      const r3 = await request("say", { text: "This line is long, and it will be interrupted before it can reach its end, so stop now." });
      await nextEvent("started", r3.utterance, 30000);
      await sleep(800);
      const tCut = performance.now();
      await request("interrupt");
      await sleep(1200);
      const lastLoud = m.levels.filter(([t, v]) => t > tCut && v > 0.01).pop();
      const lastMove = m.frames.filter(([t, d]) => t > tCut && d > 0.5).pop();
      report.interrupt = { sound_stopped_ms: lastLoud ? Math.round(lastLoud[0] - tCut) : 0,
                           picture_stopped_ms: lastMove ? Math.round(lastMove[0] - tCut) : 0 };
      m.close();
      // 4. Reconnect and speak again.
      if (!(await connect())) throw new Error("reconnect: " + status.textContent);
      await waitFor(() => channel && channel.readyState === "open" && face.readyState >= 2, 20000, "the reconnected media");
      const m2 = meters();
      const r4 = await request("say", { text: "Back again." });
      const s4 = await nextEvent("started", r4.utterance, 30000);
      const e4 = await nextEvent("ended", r4.utterance, 30000);
      report.reconnect = { rms_during: Math.max(...m2.levels.filter(([t]) => t > s4 && t < e4).map(([, v]) => v), 0) };
      m2.close();
      report.ok = true;
    } catch (err) {
      report.ok = false;
      report.error = String(err && err.message || err);
    }
    show();
    await fetch("check", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token, result: report }) }).catch(() => {});
  }

  if (q.get("check") === "1") selfCheck(); else connect();
})();
