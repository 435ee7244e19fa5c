// The demo page: an exported ONNX student run by onnxruntime-web (WebAssembly, one thread) on a digit drawn on the
// canvas or on a test image from the model's data set. URL parameters for automated checks: ?sample=K[,K2,...]
// classifies test images of /samples.json in turn (the last stays on screen), ?draw=1 draws a stroke and classifies it; the result goes to <pre id="result"> as JSON.
/* global ort */
'use strict';
(async () => {
  const $ = (id) => document.getElementById(id);
  const status = (s) => ($('status').textContent = s);
  try {
    const config = await (await fetch('config.json')).json();
    const samples = await (await fetch('samples.json')).json();
    ort.env.wasm.wasmPaths = '/ort/';
    ort.env.wasm.numThreads = 1;
    const session = await ort.InferenceSession.create(config.model, { executionProviders: ['wasm'] });
    const [C, H, W] = config.shape;
    const pad = $('pad');
    const ctx = pad.getContext('2d');
    const clear = () => { ctx.fillStyle = '#000'; ctx.fillRect(0, 0, pad.width, pad.height); };
    clear();

    // drawing: white strokes on black, as MNIST digits are
    let drawing = false;
    const pos = (e) => { const r = pad.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    pad.addEventListener('pointerdown', (e) => { drawing = true; ctx.beginPath(); ctx.moveTo(...pos(e)); });
    pad.addEventListener('pointermove', (e) => {
      if (!drawing) return;
      ctx.lineWidth = 22; ctx.lineCap = 'round'; ctx.strokeStyle = '#fff';
      ctx.lineTo(...pos(e)); ctx.stroke();
    });
    window.addEventListener('pointerup', () => { if (drawing) { drawing = false; classifyCanvas(); } });

    // the canvas scaled to H x W, one grey value per pixel (0..255)
    function canvasPixels() {
      const small = document.createElement('canvas');
      small.width = W; small.height = H;
      const s = small.getContext('2d');
      s.imageSmoothingEnabled = true;
      s.drawImage(pad, 0, 0, W, H);
      const rgba = s.getImageData(0, 0, W, H).data;
      const out = new Array(H * W);
      for (let i = 0; i < H * W; i++) out[i] = rgba[4 * i];
      return out;
    }
    function toInput(pixels) {
      const p = config.preprocessing || {};
      const scale = p.scale ?? 1 / 255, mean = p.mean ?? [0], std = p.std ?? [1];
      const x = new Float32Array(C * H * W);
      for (let c = 0; c < C; c++)
        for (let i = 0; i < H * W; i++) x[c * H * W + i] = (pixels[i] * scale - mean[c % mean.length]) / std[c % std.length];
      return new ort.Tensor('float32', x, [1, C, H, W]);
    }
    async function classify(pixels) {
      const out = await session.run({ [config.inputName]: toInput(pixels) });
      const logits = Array.from(out[config.outputName].data);
      const m = Math.max(...logits);
      const e = logits.map((v) => Math.exp(v - m));
      const z = e.reduce((a, b) => a + b, 0);
      const probs = e.map((v) => v / z);
      const top = probs.indexOf(Math.max(...probs));
      $('prediction').textContent = `${config.classes[top] ?? top} (${(100 * probs[top]).toFixed(1)} %)`;
      $('probs').innerHTML = probs
        .map((p, i) => `<div class="bar${i === top ? ' top' : ''}"><span class="name">${config.classes[i] ?? i}</span>` +
          `<span class="track"><span class="fill" style="display:block;width:${(100 * p).toFixed(1)}%"></span></span>${(100 * p).toFixed(1)} %</div>`)
        .join('');
      return { predicted: top, probs, logits };
    }
    async function classifyCanvas() {
      const r = await classify(canvasPixels());
      $('source').textContent = 'your drawing';
      return r;
    }
    function showSample(k) {
      const img = samples.images[k];
      const small = document.createElement('canvas');
      small.width = W; small.height = H;
      const s = small.getContext('2d');
      const data = s.createImageData(W, H);
      img.pixels.forEach((v, i) => { data.data.set([v, v, v, 255], 4 * i); });
      s.putImageData(data, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(small, 0, 0, pad.width, pad.height);
      $('source').textContent = `test image #${img.index} (${samples.classes[img.label]})`;
      return img;
    }
    $('clear').onclick = () => { clear(); $('prediction').textContent = '–'; $('probs').innerHTML = ''; };
    $('classify').onclick = () => classifyCanvas();
    $('random').onclick = async () => {
      const img = showSample(Math.floor(Math.random() * samples.images.length));
      await classify(img.pixels);
    };
    status(`${config.name}: ${config.data}, onnxruntime-web ${ort.env.versions ? ort.env.versions.web : ''} (wasm)`);

    const q = new URLSearchParams(location.search);
    let result = null;
    if (q.has('sample')) {
      result = [];
      for (const k of q.get('sample').split(',').map(Number)) {
        const img = showSample(k);
        result.push({ kind: 'sample', k, index: img.index, label: img.label, ...(await classify(img.pixels)) });
      }
    } else if (q.has('draw')) {
      ctx.lineWidth = 22; ctx.lineCap = 'round'; ctx.strokeStyle = '#fff';
      ctx.beginPath(); ctx.moveTo(140, 40); ctx.lineTo(140, 240); ctx.stroke();
      result = { kind: 'draw', pixels: canvasPixels(), ...(await classifyCanvas()) };
    }
    if (result) $('result').textContent = JSON.stringify(result);
    document.body.dataset.state = 'ready';
  } catch (e) {
    status(`error: ${e && e.message ? e.message : e}`);
    $('result').textContent = JSON.stringify({ error: String(e && e.message ? e.message : e) });
  }
})();
