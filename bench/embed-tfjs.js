// Times the original MobileNetV2 (npm nsfwjs 4.3.0) in TensorFlow.js on one 224x224 image at
// a time, up to the layer imgfs embeds (block_12_add) and to the last feature layer
// (out_relu). Run by bench/embed.sh with NODE_PATH set to a folder where
// embed/testdata/parity's package.json was installed. Usage: node embed-tfjs.js [cpu|wasm]
"use strict";
const tf = require("@tensorflow/tfjs");
const nsfwjs = require("nsfwjs");

async function main() {
  const backend = process.argv[2] || "cpu";
  if (backend === "wasm") {
    const wasm = require("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(require("path").dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + "/");
  }
  await tf.setBackend(backend);
  await tf.ready();
  const nsfw = await nsfwjs.load("MobileNetV2", { size: 224 });
  const model = nsfw.model;
  const x = tf.randomUniform([1, 224, 224, 3], -1, 1, "float32", 1);
  for (const layer of ["block_12_add", "out_relu"]) {
    const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(layer).output });
    sub.predict(x).dataSync();
    const n = 10, t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const y = sub.predict(x);
      y.dataSync();
      y.dispose();
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6 / n;
    console.log(`tfjs ${tf.version.tfjs} backend=${tf.getBackend()} 224x224 to ${layer}: ${ms.toFixed(1)} ms/image`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
