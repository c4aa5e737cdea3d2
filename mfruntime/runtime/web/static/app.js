// mfruntime character page: one WebRTC connection to `mf serve --web` (docs/WEB.md). No build step; the 3D rig
// preview (preview.js) uses three.js, served from ./vendor/three/ when the server has it.
// Query: ?character=ID &token=T &obs=1 &bg=transparent|RRGGBB &check=1 &scale=N &upscale=N &preview=1 &view=3d
// &drive=visemes
"use strict";
(() => {
  const q = new URLSearchParams(location.search);
  const character = q.get("character") || "default";
  const token = q.get("token") || "";
  // The server sends the video this many times larger, each pixel a block, so a small face stays crisp through
  // VP8 (default 4: a 64-px face travels as 256 px; 1 for the native size, which costs the server least).
  const upscale = Math.min(4, Math.max(1, parseInt(q.get("upscale"), 10) || 4));
  const $ = (id) => document.getElementById(id);
  const face = $("face"), status = $("status"), sayBtn = $("say"), stopBtn = $("interrupt"), text = $("text");
  if (q.get("obs") === "1") {
    document.body.classList.add("obs");
    const bg = q.get("bg") || "transparent";
    document.documentElement.style.setProperty("--bg", /^[0-9a-fA-F]{6}$/.test(bg) ? "#" + bg : "transparent");
  }

  let pc = null, channel = null, stream = null, nextId = 1, answer = null;
  let preview = null, previewClock = null, previewLoading = null;  // the 3D preview, the clock it follows
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
    } else if (msg.event === "rig") {
      if (preview) preview.push(msg.frames);
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
        body: JSON.stringify({ sdp: conn.localDescription.sdp, type: "offer", character, token, upscale }) });
      body = await resp.json();
    } catch (err) {
      setStatus("cannot reach the server: " + err.message, "bad");
      return false;
    }
    if (!resp.ok) {
      setStatus("refused: " + (body.error || resp.status), "bad");
      return false;
    }
    answer = body;
    if (preview) { preview.setNames(body.rig_controls || []); preview.rest(); }
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

  // ---- the 3D rig preview ----
  // The audio clock: the sender-clock time (ms) of the sound playing now, from the audio track's
  // estimatedPlayoutTimestamp (refreshed every 100 ms, extrapolated between), converted from NTP to Unix ms.
  function startClock() {
    let base = null;
    const timer = setInterval(async () => {
      if (!pc) return;
      try {
        const stats = await pc.getStats();
        stats.forEach((r) => {
          if (r.type === "inbound-rtp" && r.kind === "audio" && r.estimatedPlayoutTimestamp) {
            const e = r.estimatedPlayoutTimestamp;
            base = [e > 3e12 ? e - 2208988800000 : e, performance.now()];
          }
        });
      } catch (err) { base = null; }
    }, 100);
    return { now: () => (base ? base[0] + (performance.now() - base[1]) : null), stop: () => clearInterval(timer) };
  }

  async function showPreview(on) {
    const canvas = $("preview"), note = $("preview-status");
    $("preview-on").checked = on;
    canvas.hidden = !on;
    if (!on || preview) return preview;
    if (answer && answer.preview === false) {
      note.hidden = false;
      note.textContent = "3D preview unavailable: three.js is not installed on the server (run python -m mfruntime.runtime.web.vendor there).";
      canvas.hidden = true;
      return null;
    }
    try {
      // One preview per page, however often the box is ticked while it loads.
      previewLoading = previewLoading || import("./preview.js").then((mod) => mod.createPreview(canvas));
      const made = await previewLoading;
      if (preview) return preview;
      preview = made;
      window.mfPreview = preview;  // for the console (and the docs' screenshot command)
    } catch (err) {
      previewLoading = null;
      note.hidden = false;
      note.textContent = "3D preview unavailable: " + (err && err.message || err);
      canvas.hidden = true;
      return null;
    }
    previewClock = startClock();
    preview.setClock(previewClock.now);
    preview.setMode($("preview-mode").value);
    if (answer) preview.setNames(answer.rig_controls || []);
    if (answer && !answer.rig) { note.hidden = false; note.textContent = "this character's stream carries no rig frames"; }
    return preview;
  }
  $("preview-on").addEventListener("change", (e) => showPreview(e.target.checked));
  $("preview-mode").addEventListener("change", (e) => { if (preview) preview.setMode(e.target.value); });
  if (q.get("drive") === "visemes") $("preview-mode").value = "visemes";
  if (q.get("view") === "3d") document.body.classList.add("view-3d");

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

  // The lag (ms) that best lines up a mouth track with the sound: both on a 10-ms grid from t0 to t1, the lag in
  // ±300 ms maximising the correlation of jaw(t) with level(t + lag). (tests/web_scenario.py does the same on the
  // server's own chunks.)
  function bestLag(jaw, levels, t0, t1) {
    const grid = (pts) => {
      const out = [];
      let k = 0, last = 0;
      for (let t = t0; t < t1; t += 10) {
        while (k < pts.length && pts[k][0] <= t) last = pts[k++][1];
        out.push(last);
      }
      return out;
    };
    const a = grid(jaw), b = grid(levels);
    let best = null;
    for (let lag = -30; lag <= 30; lag++) {
      const x = [], y = [];
      for (let i = 0; i < a.length; i++) if (i + lag >= 0 && i + lag < b.length) { x.push(a[i]); y.push(b[i + lag]); }
      const mx = x.reduce((s, v) => s + v, 0) / x.length, my = y.reduce((s, v) => s + v, 0) / y.length;
      let sxy = 0, sxx = 0, syy = 0;
      for (let i = 0; i < x.length; i++) { sxy += (x[i] - mx) * (y[i] - my); sxx += (x[i] - mx) ** 2; syy += (y[i] - my) ** 2; }
      const r = sxy / Math.sqrt(sxx * syy || 1);
      if (!best || r > best.r) best = { lag_ms: lag * 10, r };
    }
    return best;
  }

  async function checkPreview(m, report) {
    // The 3D preview: the head's morph targets, the rig on the audio clock during a line, rest after, the head pose.
    const p = await showPreview(true);
    if (!p) throw new Error("3D preview: " + $("preview-status").textContent);
    const r = await request("say", { text: "Open wide, say ah, and close your mouth again." });
    const started = await nextEvent("started", r.utterance, 30000);
    const ended = await nextEvent("ended", r.utterance, 60000);
    await sleep(600);
    const during = p.log.filter(([t]) => t > started && t < ended);
    const late = during.map(([, , d]) => d).filter((d) => d !== null);
    const levels = m.levels.filter(([t]) => t > started - 300 && t < ended + 300);
    const jaw = p.log.filter(([t]) => t > started - 300 && t < ended + 300).map(([t, j]) => [t, j]);
    const info = p.info();  // 600 ms after the line ended: the head is back at rest
    const pose = {};
    for (const [name, k] of [["headYaw", "forward"], ["headPitch", "forward"], ["headRoll", "up"]]) {
      const values = answer.rig_controls.map((n) => (n === name ? 0.3 : 0));
      p.apply(values);
      pose[name] = p.info()[k];
    }
    p.rest();
    report.preview = {
      utterance: r.utterance, targets: info.targets, frames: during.length,
      jaw_max: Math.max(...during.map(([, j]) => j), 0), jaw_after: info.jawOpen,
      on_audio_clock: during.length ? late.length / during.length : 0, applied_late_ms: median(late),
      lag: bestLag(jaw, levels, started - 200, ended + 200), pose,
    };
  }

  async function selfCheck() {
    const report = { character, userAgent: navigator.userAgent, steps: [] };
    const show = () => { $("report").hidden = false; $("report").textContent = JSON.stringify(report, null, 1); };
    try {
      const tConnect = performance.now();
      if (!(await connect())) throw new Error(status.textContent);
      await waitFor(() => channel && channel.readyState === "open" && stream && face.readyState >= 2, 20000, "media and the data channel");
      report.connect_ms = Math.round(performance.now() - tConnect);
      report.video_size = [face.videoWidth, face.videoHeight];
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
      // 2b. The 3D rig preview (?preview=1).
      if (q.get("preview") === "1") await checkPreview(m, report);
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

  if (q.get("check") === "1") selfCheck();
  else connect().then(() => { if (q.get("preview") === "1" || q.get("view") === "3d") showPreview(true); });
})();
