// The live page: frames of a local video file (at the model's frame rate, seeked one by one)
// or of the webcam go over the /v1/stream WebSocket as JPEG; each answer redraws the top-5
// bars, the frame counter and the timeline. Protocol: docs/serve.md.
"use strict";

const TOP_K = 5;
const $ = (id) => document.getElementById(id);
const video = $("video");
const canvas = document.createElement("canvas");
const timeline = [];
let model = null;
let current = null;  // {session, stopped}

function endpoint(path, ws = false) {
  const url = new URL(path, location.href);
  if (ws) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// A WebSocket session; frame(blob) resolves with the server's prediction for that frame.
function openSession(width, height) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(endpoint("v1/stream", true));
    const waiting = [];
    let ready = false;
    const session = {
      frame(blob) {
        return new Promise((res, rej) => { waiting.push({ res, rej }); ws.send(blob); });
      },
      stop() { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stop" })); },
    };
    ws.onopen = () => ws.send(JSON.stringify(
      { type: "start", format: "jpeg", width, height, every: 1, top_k: TOP_K }));
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "ready") { ready = true; resolve(session); }
      else if (msg.type === "prediction") waiting.shift()?.res(msg);
    };
    ws.onclose = (event) => {
      const why = `session closed: ${event.code} ${event.reason}`;
      if (event.code !== 1000) status(why, true);
      waiting.splice(0).forEach((w) => w.rej(new Error(why)));
      if (!ready) reject(new Error(why));
    };
  });
}

function grab(width, height) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(video, 0, 0, width, height);
  return new Promise((res) => canvas.toBlob(res, "image/jpeg", 0.92));
}

function seek(t) {
  return new Promise((res) => {
    video.addEventListener("seeked", res, { once: true });
    video.currentTime = t;
  });
}

function render(msg) {
  $("frames").textContent = msg.frames;
  $("latency").textContent = msg.latency_ms.toFixed(0);
  const rows = $("bars").children;
  msg.top_k.forEach((item, i) => {
    rows[i].querySelector(".label").textContent = item.label;
    rows[i].querySelector(".fill").style.width = `${(item.score * 100).toFixed(1)}%`;
    rows[i].querySelector(".score").textContent = `${(item.score * 100).toFixed(1)}%`;
  });
  timeline.push(msg.top_k[0]);
  drawTimeline();
}

function drawTimeline() {
  const c = $("timeline");
  const ctx = c.getContext("2d");
  const w = 4;
  const shown = timeline.slice(-Math.floor(c.width / w));
  ctx.clearRect(0, 0, c.width, c.height);
  shown.forEach((top, i) => {
    ctx.fillStyle = `hsl(${(top.index * 137.508) % 360}, 65%, 50%)`;
    const h = top.score * (c.height - 14);
    ctx.fillRect(i * w, c.height - h, w - 1, h);
  });
  const last = shown[shown.length - 1];
  if (last) {
    ctx.fillStyle = "#222";
    ctx.font = "12px system-ui";
    ctx.fillText(last.label, 2, 11);
  }
}

async function start(run) {
  if (current) current.stopped = true;
  const job = { stopped: false, session: null };
  current = job;
  $("stop").disabled = false;
  status("");
  timeline.length = 0;
  try {
    await run(job);
  } catch (err) {
    status(String(err.message || err), true);
  } finally {
    job.session?.stop();
    if (current === job) $("stop").disabled = true;
  }
}

// A file: seek to k / fps for every k (the server decodes files the same way) and wait for
// each answer before the next frame, so the file streams as fast as the server answers.
async function streamFile(job, file) {
  video.srcObject = null;
  video.src = URL.createObjectURL(file);
  await new Promise((res, rej) => {
    video.onloadeddata = res;
    video.onerror = () => rej(new Error(`cannot play ${file.name} in this browser`));
  });
  const { videoWidth: w, videoHeight: h } = video;
  job.session = await openSession(w, h);
  const fps = model.fps || 5;
  for (let k = 0; !job.stopped && k / fps < video.duration; k++) {
    await seek(k / fps + 1e-3);
    render(await job.session.frame(await grab(w, h)));
  }
  status(job.stopped ? "stopped" : `done: ${file.name}`);
}

// The webcam: one frame every 1/fps s; a frame is skipped while the previous is unanswered.
async function streamWebcam(job) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true });
  video.src = "";
  video.srcObject = stream;
  await video.play();
  const { videoWidth: w, videoHeight: h } = video;
  job.session = await openSession(w, h);
  const fps = model.fps || 5;
  let busy = false;
  await new Promise((res) => {
    const timer = setInterval(async () => {
      if (job.stopped) { clearInterval(timer); stream.getTracks().forEach((t) => t.stop()); res(); return; }
      if (busy) return;
      busy = true;
      try { render(await job.session.frame(await grab(w, h))); }
      catch (err) { job.stopped = true; status(String(err.message || err), true); }
      busy = false;
    }, 1000 / fps);
  });
}

async function init() {
  for (let i = 0; i < TOP_K; i++) {
    const row = document.createElement("div");
    row.className = "row";
    row.innerHTML = '<span class="label">-</span><div class="bar"><div class="fill"></div></div>' +
      '<span class="score"></span>';
    $("bars").appendChild(row);
  }
  model = await (await fetch(endpoint("v1/model"))).json();
  $("model").textContent = `${model.name} v${model.version} (${model.variant}, ` +
    `${model.num_classes} classes, ${model.input_size[0]}px, ${model.fps || "native"} fps)`;
  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) start((job) => streamFile(job, file));
  });
  $("webcam").addEventListener("click", () => start(streamWebcam));
  $("stop").addEventListener("click", () => { if (current) current.stopped = true; });
}

init().catch((err) => status(`cannot load the model description: ${err}`, true));
