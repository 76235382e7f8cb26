// The report page: plain JavaScript, no library. Data: the JSON in #report-data.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const isImage = data.kind === "image";
  const state = {
    sample: 0, method: data.methods[0].name, rank: 0, view: "signed", cmap: "bwr",
    sortColumn: null, sortDescending: false,
  };
  const pixelCache = new Map();
  const $ = (id) => document.getElementById(id);

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function className(index) {
    return index === null || index === undefined ? "?" : data.class_names[index];
  }

  function formatNumber(value) {
    if (value === null || value === undefined) return "–";
    const magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e4)
      ? value.toExponential(2) : value.toFixed(3);
  }

  // ---- pixels: decode a PNG data URI once, keep its RGBA values ----
  function pixels(uri) {
    if (!pixelCache.has(uri)) {
      pixelCache.set(uri, new Promise((resolve, reject) => {
        const image = new Image();
        image.onload = () => {
          const canvas = element("canvas", { width: image.width, height: image.height });
          const context = canvas.getContext("2d", { willReadFrequently: true });
          context.drawImage(image, 0, 0);
          resolve(context.getImageData(0, 0, image.width, image.height));
        };
        image.onerror = () => reject(new Error("cannot decode a picture of the report"));
        image.src = uri;
      }));
    }
    return pixelCache.get(uri);
  }

  // Overlay as kx.visualize.overlay: gray input blended with the colour of the
  // map value v (stored as 128 + 127 v) with weight 0.7 |v|.
  function drawOverlay(canvas, inputUri, mapUri) {
    const token = mapUri + "|" + state.view + "|" + state.cmap;
    canvas.dataset.src = mapUri;
    canvas.dataset.token = token;
    delete canvas.dataset.rendered;
    return Promise.all([pixels(inputUri), pixels(mapUri)]).then(([input, map]) => {
      if (canvas.dataset.token !== token) return;
      canvas.width = map.width;
      canvas.height = map.height;
      const table = data.colormaps[state.cmap];
      const signed = state.view === "signed";
      const context = canvas.getContext("2d");
      const output = context.createImageData(map.width, map.height);
      for (let i = 0; i < map.data.length; i += 4) {
        const v = (map.data[i] - 128) / 127;
        const gray = (input.data[i] + input.data[i + 1] + input.data[i + 2]) / 3;
        const position = signed ? (v + 1) / 2 : Math.abs(v);
        const colour = table[Math.round(position * 255)];
        const weight = 0.7 * Math.abs(v);
        for (let c = 0; c < 3; c++) {
          output.data[i + c] = Math.round((1 - weight) * gray + weight * colour[c]);
        }
        output.data[i + 3] = 255;
      }
      context.putImageData(output, 0, 0);
      canvas.dataset.rendered = "1";
    });
  }

  function explanationNode(method, sample, rank) {
    const content = data.explanations[method][sample][rank];
    if (isImage) {
      const canvas = element("canvas", { class: "overlay" });
      return { node: canvas, done: drawOverlay(canvas, data.samples[sample].input, content) };
    }
    const holder = element("div", { class: "markup" });
    holder.innerHTML = content; // built by the report's Python code, escaped there
    holder.dataset.src = content;
    return { node: holder, done: Promise.resolve() };
  }

  // ---- header ----
  function renderSummary() {
    const model = data.model;
    const times = data.methods.map((m) => `${m.name} ${m.seconds.toFixed(2)} s`).join(", ");
    const lines = [
      `Model ${model.name}: ${model.parameters.toLocaleString("en")} parameters, input ` +
        `${model.input_shape}, output ${model.output_shape}.`,
      `keras_explain ${data.version}, created ${data.created}. ` +
        `${data.samples.length} samples, ${data.methods.length} methods.`,
      `Time per method (all classes): ${times}.`,
    ];
    for (const line of lines) $("summary").appendChild(element("div", {}, line));
  }

  // ---- gallery ----
  function renderGallery() {
    data.samples.forEach((sample, index) => {
      const button = element("button", { class: "sample", "data-index": index, type: "button" });
      if (sample.label !== null && sample.label !== sample.prediction) {
        button.classList.add("wrong");
      }
      if (sample.input) button.appendChild(element("img", { src: sample.input, alt: "" }));
      const text = element("span");
      text.appendChild(element("div", {}, `#${index}`));
      if (sample.label !== null) text.appendChild(element("div", {}, `true ${className(sample.label)}`));
      text.appendChild(element("div", { class: "pred" }, `pred ${className(sample.prediction)}`));
      button.appendChild(text);
      button.addEventListener("click", () => selectSample(index));
      $("gallery").appendChild(button);
    });
  }

  // ---- detail ----
  function renderClassOptions() {
    const select = $("class-select");
    select.textContent = "";
    const sample = data.samples[state.sample];
    sample.classes.forEach((c, rank) => {
      const score = formatNumber(sample.scores[rank]);
      select.appendChild(element("option", { value: rank }, `${rank + 1}. ${className(c)} (${score})`));
    });
    select.value = String(state.rank);
  }

  function curveSvg(method) {
    const curve = data.curves[method];
    if (!curve) return null;
    const width = 140, height = 60, namespace = "http://www.w3.org/2000/svg";
    const series = ["deletion", "insertion"].filter((key) => curve[key]);
    const values = series.flatMap((key) => curve[key][state.sample]);
    const low = Math.min(...values), high = Math.max(...values);
    const span = high > low ? high - low : 1;
    const svg = document.createElementNS(namespace, "svg");
    svg.setAttribute("class", "curve");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const colours = { deletion: "#1565c0", insertion: "#c62828" };
    series.forEach((key, index) => {
      const points = curve[key][state.sample].map((score, i) =>
        `${(curve.fractions[i] * (width - 2) + 1).toFixed(1)},` +
        `${(height - 12 - ((score - low) / span) * (height - 16)).toFixed(1)}`).join(" ");
      const line = document.createElementNS(namespace, "polyline");
      line.setAttribute("points", points);
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", colours[key]);
      line.setAttribute("data-series", key);
      svg.appendChild(line);
      const label = document.createElementNS(namespace, "text");
      label.setAttribute("x", 2 + index * 60);
      label.setAttribute("y", height - 1);
      label.setAttribute("fill", colours[key]);
      label.textContent = key;
      svg.appendChild(label);
    });
    return svg;
  }

  function renderDetail() {
    const sample = data.samples[state.sample];
    document.querySelectorAll(".sample").forEach((node) =>
      node.classList.toggle("selected", Number(node.dataset.index) === state.sample));
    const truth = sample.label === null ? "" : `true ${className(sample.label)}, `;
    $("sample-title").textContent =
      `Sample #${state.sample}: ${truth}predicted ${className(sample.prediction)}`;
    renderClassOptions();
    const container = $("methods");
    container.textContent = "";
    const pending = [];
    for (const method of data.methods) {
      const card = element("div", { class: "method", "data-method": method.name, tabindex: 0 });
      card.classList.toggle("selected", method.name === state.method);
      card.appendChild(element("div", { class: "name" }, method.name));
      const shown = explanationNode(method.name, state.sample, state.rank);
      card.appendChild(shown.node);
      pending.push(shown.done);
      const curve = curveSvg(method.name);
      if (curve) card.appendChild(curve);
      card.addEventListener("click", () => selectMethod(method.name));
      card.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          selectMethod(method.name);
        }
      });
      container.appendChild(card);
    }
    pending.push(renderFocus());
    renderInfluence();
    renderConcepts();
    return Promise.all(pending);
  }

  // Proponents and opponents of the sample among the training images (kx.influence).
  function renderInfluence() {
    const influence = data.influence;
    if (!influence) return;
    $("influence-box").hidden = false;
    $("influence-method").textContent =
      `(${influence.method}; scores of the predicted class ${className(data.samples[state.sample].prediction)})`;
    const box = $("influence");
    box.textContent = "";
    for (const side of ["proponents", "opponents"]) {
      const row = element("div", { class: "examples", "data-side": side });
      row.appendChild(element("div", { class: "side" }, side));
      for (const [index, score] of influence.samples[state.sample][side]) {
        const example = influence.train[String(index)];
        const figure = element("figure", { "data-index": index });
        figure.appendChild(element("img", { src: example.input, alt: `training image ${index}` }));
        figure.appendChild(element("figcaption", {},
          `#${index} ${className(example.label)} ${formatNumber(score)}`));
        row.appendChild(figure);
      }
      box.appendChild(row);
    }
  }

  // The sample's most relevant concepts (kx.crp): where each acts, and what it is.
  function renderConcepts() {
    const concepts = data.concepts;
    if (!concepts) return;
    $("concepts-box").hidden = false;
    $("concepts-layer").textContent = `(channels of ${concepts.layer}; relevance for the ` +
      `predicted class ${className(data.samples[state.sample].prediction)})`;
    const box = $("concepts");
    box.textContent = "";
    for (const concept of concepts.samples[state.sample].concepts) {
      const row = element("div", { class: "examples concept", "data-channel": concept.channel });
      const figure = element("figure", {});
      figure.appendChild(element("img", { src: concept.overlay,
        alt: `conditional heatmap of channel ${concept.channel}` }));
      figure.appendChild(element("figcaption", {},
        `channel ${concept.channel} · ${(100 * concept.share).toFixed(1)}%`));
      row.appendChild(figure);
      concept.references.forEach((uri, rank) => {
        const crop = element("figure", { class: "reference" });
        crop.appendChild(element("img", { src: uri, alt: `reference ${rank + 1}` }));
        row.appendChild(crop);
      });
      box.appendChild(row);
    }
  }

  function renderFocus() {
    const className_ = className(data.samples[state.sample].classes[state.rank]);
    $("focus-title").textContent = `${state.method}, class ${className_}`;
    const shown = explanationNode(state.method, state.sample, state.rank);
    shown.node.id = "focus-view";
    $("focus").textContent = "";
    const input = data.samples[state.sample].input;
    if (input) $("focus").appendChild(element("img", { id: "focus-input", src: input, alt: "input" }));
    $("focus").appendChild(shown.node);
    return shown.done;
  }

  function selectSample(index) {
    state.sample = Math.max(0, Math.min(data.samples.length - 1, index));
    return renderDetail();
  }

  function selectMethod(name) {
    state.method = name;
    document.querySelectorAll(".method").forEach((node) =>
      node.classList.toggle("selected", node.dataset.method === name));
    return renderFocus();
  }

  // ---- metrics table ----
  function renderMetrics() {
    const table = $("metrics");
    const columns = data.metrics.columns;
    if (!columns.length) {
      table.replaceWith(element("p", {}, "No metrics computed."));
      return;
    }
    const head = element("tr");
    ["method", ...columns].forEach((column) => {
      const better = data.metrics.better[column];
      const title = better ? `${column} (${better} is better)` : column;
      const cell = element("th", { "data-column": column, title: title }, column);
      cell.addEventListener("click", () => sortBy(column));
      head.appendChild(cell);
    });
    table.appendChild(element("thead")).appendChild(head);
    const body = table.appendChild(element("tbody"));
    for (const row of data.metrics.rows) {
      const line = element("tr", { "data-method": row.method });
      line.appendChild(element("td", {}, row.method));
      for (const column of columns) {
        const note = data.metrics.notes[`${row.method} ${column}`];
        line.appendChild(element("td", note ? { title: note } : {}, formatNumber(row[column])));
      }
      body.appendChild(line);
    }
  }

  function sortBy(column) {
    state.sortDescending = state.sortColumn === column ? !state.sortDescending : false;
    state.sortColumn = column;
    const direction = state.sortDescending ? -1 : 1;
    const rows = [...data.metrics.rows].sort((a, b) => {
      const x = a[column], y = b[column];
      if (x === null || y === null) return (x === null) - (y === null); // empty cells last
      return (x < y ? -1 : x > y ? 1 : 0) * direction;
    });
    const body = $("metrics").querySelector("tbody");
    const byMethod = new Map([...body.children].map((tr) => [tr.dataset.method, tr]));
    for (const row of rows) body.appendChild(byMethod.get(row.method));
    $("metrics").querySelectorAll("th").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.column === column && direction > 0);
      th.classList.toggle("sorted-desc", th.dataset.column === column && direction < 0);
    });
  }

  function renderFailed() {
    if (!data.failed.length) return;
    const box = $("failed");
    box.appendChild(element("h2", {}, "Methods that failed on this model"));
    const list = box.appendChild(element("ul"));
    for (const item of data.failed) list.appendChild(element("li", {}, `${item.name}: ${item.reason}`));
  }

  // ---- controls ----
  function setUpControls() {
    $("class-select").addEventListener("change", (event) => {
      state.rank = Number(event.target.value);
      renderDetail();
    });
    if (isImage) {
      for (const name of Object.keys(data.colormaps)) {
        $("cmap-select").appendChild(element("option", { value: name }, name));
      }
      $("cmap-select").value = state.cmap;
      $("cmap-select").addEventListener("change", (event) => {
        state.cmap = event.target.value;
        renderDetail();
      });
      $("view-select").addEventListener("change", (event) => {
        state.view = event.target.value;
        state.cmap = state.view === "signed" ? "bwr" : "Reds";
        $("cmap-select").value = state.cmap;
        renderDetail();
      });
    } else {
      $("view-label").hidden = true;
      $("cmap-label").hidden = true;
    }
    document.addEventListener("keydown", (event) => {
      if (["SELECT", "INPUT", "TEXTAREA"].includes(event.target.tagName)) return;
      let step = 0;
      if (event.key === "ArrowRight" || event.key === "ArrowDown" || event.key === "j") step = 1;
      if (event.key === "ArrowLeft" || event.key === "ArrowUp" || event.key === "k") step = -1;
      if (step) {
        event.preventDefault();
        selectSample(state.sample + step);
        const button = document.querySelector(`.sample[data-index="${state.sample}"]`);
        if (button) button.scrollIntoView({ block: "nearest" });
      } else if (/^[1-9]$/.test(event.key) && Number(event.key) <= data.samples[0].classes.length) {
        state.rank = Number(event.key) - 1;
        renderDetail();
      }
    });
  }

  renderSummary();
  renderGallery();
  setUpControls();
  renderMetrics();
  renderFailed();
  window.kxReport = { data: data, state: state, selectSample: selectSample };
  renderDetail().then(() => { window.kxReady = true; });
})();
