// Runs the original MobileNetV2 from npm nsfwjs in TensorFlow.js (pure-JS CPU backend) on the
// PPM images in images/ and writes reference.json: per image and layer, the spatially averaged
// output and a fixed sample of raw activations. embed/parity_test.go compares the Go forward
// pass with it. Usage: npm ci && node parity.js [--bench]
"use strict";
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");
const nsfwjs = require("nsfwjs");

// Keep in step with embed/parity_test.go.
const LAYERS = ["Conv1_relu", "block_3_expand_relu", "block_6_expand_relu", "block_12_add",
  "block_13_expand_relu", "block_16_project_BN", "out_relu"];
const SAMPLES = 256;
// Input normalisation: x*SCALE + OFFSET on 0..255 pixel values (MobileNetV2's [-1, 1]).
const SCALE = 1 / 127.5, OFFSET = -1;

function readPPM(file) {
  const b = fs.readFileSync(file);
  // P6 <w> <h> <maxval> single whitespace, then RGB bytes (no comments in our files).
  const header = b.toString("latin1", 0, 64).match(/^P6\s+(\d+)\s+(\d+)\s+(\d+)\s/);
  if (!header || header[3] !== "255") throw new Error(file + ": not an 8-bit binary PPM");
  const w = +header[1], h = +header[2], off = header[0].length;
  return { w, h, data: b.subarray(off, off + w * h * 3) };
}

async function main() {
  await tf.setBackend("cpu");
  const nsfw = await nsfwjs.load("MobileNetV2", { size: 224 });
  const model = nsfw.model;
  const sub = tf.model({ inputs: model.inputs, outputs: LAYERS.map((l) => model.getLayer(l).output) });
  const dir = path.join(__dirname, "images");
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".ppm")).sort();
  const out = { generator: "embed/testdata/parity/parity.js", tfjs: tf.version.tfjs, backend: tf.getBackend(),
    model: "npm nsfwjs@4.3.0 MobileNetV2", scale: SCALE, offset: OFFSET, samples: SAMPLES, images: [] };
  for (const f of files) {
    const img = readPPM(path.join(dir, f));
    if (img.w !== 224 || img.h !== 224) throw new Error(f + ": images must be 224x224");
    const x = tf.tidy(() => tf.tensor(Float32Array.from(img.data), [1, 224, 224, 3]).mul(SCALE).add(OFFSET));
    const ys = sub.predict(x);
    const entry = { file: f, layers: {} };
    LAYERS.forEach((l, i) => {
      const t = ys[i];
      const [, h, w, c] = t.shape;
      const d = t.dataSync();
      const mean = new Array(c).fill(0);
      for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) mean[k] += d[p * c + k];
      const stride = Math.floor(d.length / SAMPLES);
      const sample = [];
      for (let s = 0; s < SAMPLES; s++) sample.push(d[s * stride]);
      entry.layers[l] = { shape: [h, w, c], mean: mean.map((v) => v / (h * w)), sample_stride: stride, sample };
    });
    tf.dispose(ys);
    x.dispose();
    out.images.push(entry);
  }
  if (process.argv.includes("--bench")) {
    // Time the original model (up to out_relu) on the same backend, one image at a time.
    const feat = tf.model({ inputs: model.inputs, outputs: model.getLayer("out_relu").output });
    const x = tf.randomUniform([1, 224, 224, 3], -1, 1, "float32", 1);
    feat.predict(x).dispose();
    const n = 10, t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) feat.predict(x).dataSync();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6 / n;
    console.log(`tfjs ${tf.version.tfjs} backend=${tf.getBackend()} MobileNetV2 224x224 to out_relu: ${ms.toFixed(1)} ms/image`);
    return;
  }
  fs.writeFileSync(path.join(__dirname, "reference.json"), JSON.stringify(out) + "\n");
  console.log(`wrote reference.json: ${files.length} images x ${LAYERS.length} layers`);
}

main().catch((e) => { console.error(e); process.exit(1); });
