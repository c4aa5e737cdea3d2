// The 3D rig preview (docs/WEB.md): the project's own head (/head.glb, made by head.py) whose morph targets follow
// the rig stream on the audio's clock. three.js is served from ./vendor/three/ (python -m mfruntime.runtime.web.vendor).
import * as THREE from "three";
import { GLTFLoader } from "./vendor/three/examples/jsm/loaders/GLTFLoader.js";

const FACE_WIDTH = 1.56;  // the head's width in scene units (head offsets are in face widths)

// createPreview(canvas) → { push(frames), setNames(names), setClock(fn), setMode(mode), info(), log }
//   push: [[t, [values…]], …] from the data channel, t = sender-clock ms of the frame's audio
//   setClock: fn() → the sender-clock ms of the audio playing now (null when unknown)
//   setMode: "arkit" (face controls on the ARKit-named targets) or "visemes" (the OVR viseme targets)
export async function createPreview(canvas) {
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, alpha: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(1);
  renderer.setSize(canvas.width, canvas.height, false);
  const scene = new THREE.Scene();
  const camera = new THREE.PerspectiveCamera(28, canvas.width / canvas.height, 0.1, 50);
  camera.position.set(0, 0.05, 5.2);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x443333, 1.6));
  const key = new THREE.DirectionalLight(0xffffff, 1.8);
  key.position.set(1.5, 2, 4);
  scene.add(key);
  const gltf = await new GLTFLoader().loadAsync("head.glb");
  scene.add(gltf.scene);
  const head = gltf.scene.getObjectByName("head");
  const meshes = [];
  gltf.scene.traverse((o) => { if (o.isMesh && o.morphTargetDictionary) meshes.push(o); });
  const targets = new Set(meshes.flatMap((m) => Object.keys(m.morphTargetDictionary)));

  let names = [], clock = () => null, mode = "arkit", queue = [], current = null, lastShown = 0;
  const REST_AFTER_MS = 150;  // no rig frame for this long (the line ended, or was cut): relax to rest
  const log = [];  // [performance.now(), jawOpen shown, clock − frame time] per frame applied (self-check)

  function apply(values) {
    const v = (n) => { const i = names.indexOf(n); return i >= 0 ? values[i] : 0; };
    for (const m of meshes) {
      for (const [name, i] of Object.entries(m.morphTargetDictionary)) {
        const viseme = name.startsWith("viseme_");
        const blink = name.startsWith("eyeBlink");
        m.morphTargetInfluences[i] = blink || (mode === "visemes") === viseme ? Math.max(0, Math.min(1, v(name))) : 0;
      }
    }
    // glTF/three.js axes, the face looking along +Z: the rig's + yaw turns to the subject's left (+X), + pitch nods
    // down, + roll tilts toward the viewer's right.
    head.rotation.set(v("headPitch"), v("headYaw"), -v("headRoll"), "YXZ");
    head.position.set(v("headOffsetX") * FACE_WIDTH, -v("headOffsetY") * FACE_WIDTH, 0);
  }

  function frame() {
    const now = clock();
    let due = null;
    if (now !== null) {
      while (queue.length && queue[0][0] <= now) due = queue.shift();
    } else if (queue.length) {  // no audio clock: show frames as they come
      due = queue.shift();
    }
    if (due) {
      lastShown = performance.now();
      current = due;
      apply(due[1]);
      log.push([performance.now(), due[1][names.indexOf("jawOpen")] || 0, now === null ? null : now - due[0]]);
      if (log.length > 5000) log.splice(0, 1000);
    }
    if (current && performance.now() - lastShown > REST_AFTER_MS) {  // toward rest, a little each display frame
      const values = current[1].map((v) => v * 0.85);
      current = values.every((v) => Math.abs(v) < 1e-3) ? null : [current[0], values];
      apply(current ? values : values.map(() => 0));
    }
    renderer.render(scene, camera);
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);

  return {
    push(frames) { for (const f of frames) queue.push(f); if (queue.length > 500) queue.splice(0, queue.length - 500); },
    setNames(n) { names = n.slice(); },
    setClock(fn) { clock = fn; },
    setMode(m) { mode = m === "visemes" ? "visemes" : "arkit"; if (current) apply(current[1]); },
    rest() { queue = []; current = null; apply(names.map(() => 0)); },
    info() {
      const face = meshes.find((m) => m.name === "face") || meshes[0];
      return { targets: [...targets].sort(), jawOpen: face ? face.morphTargetInfluences[face.morphTargetDictionary.jawOpen] : null,
               rotation: [head.rotation.x, head.rotation.y, head.rotation.z],
               forward: new THREE.Vector3(0, 0, 1).applyQuaternion(head.quaternion).toArray(),
               up: new THREE.Vector3(0, 1, 0).applyQuaternion(head.quaternion).toArray() };
    },
    apply(values) { apply(values); },
    log,
  };
}
