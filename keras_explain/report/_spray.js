// SpRAy's page: plain JavaScript, no library. Data: the JSON in #spray-data.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("spray-data").textContent);
  const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const svgNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { group: 0, sample: null };

  function element(tag, attributes, text) {
    const node = tag === "svg" || ["circle", "line", "polyline", "text", "rect", "title"].includes(tag)
      ? document.createElementNS(svgNS, tag) : document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const colour = (cluster) => (cluster < 0 ? "#bbbbbb" : palette[cluster % palette.length]);

  function image(uri, alt) { const node = element("img", { src: uri, alt: alt }); return node; }

  function drawScatter(group) {
    const svg = $("scatter");
    svg.replaceChildren();
    const xs = group.points.map((p) => p[0]), ys = group.points.map((p) => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const scale = (v, a, b) => 14 + 392 * (b > a ? (v - a) / (b - a) : 0.5);
    for (const [x, y, cluster, index] of group.points) {
      const dot = element("circle", {
        cx: scale(x, x0, x1).toFixed(1), cy: (420 - scale(y, y0, y1)).toFixed(1), r: 4,
        fill: colour(cluster), "data-index": index, "data-cluster": cluster,
      });
      dot.appendChild(element("title", {}, `sample ${index}, cluster ${cluster}`));
      dot.addEventListener("click", () => select(index));
      svg.appendChild(dot);
    }
    const legend = $("legend");
    legend.replaceChildren();
    for (const cluster of group.clusters) {
      const item = element("span", { style: `--colour: ${colour(cluster.id)}` },
        `cluster ${cluster.id}: ${cluster.size}`);
      legend.appendChild(item);
    }
  }

  function drawEigenvalues(group) {
    const svg = $("eigenvalues");
    svg.replaceChildren();
    const values = group.eigenvalues, top = Math.max(...values, 1e-9);
    const points = values.map((v, i) => [20 + i * (380 / Math.max(values.length - 1, 1)),
                                          110 - 100 * (v / top)]);
    svg.appendChild(element("polyline", {
      points: points.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" "),
      fill: "none", stroke: "#1565c0",
    }));
    points.forEach(([x, y], i) => {
      svg.appendChild(element("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 3,
        fill: i === group.suggested - 1 ? "#d62728" : "#1565c0" }));
    });
  }

  function drawPrototypes(group, chosen) {
    const box = $("prototypes");
    box.replaceChildren();
    for (const cluster of group.clusters) {
      const figure = element("figure", {
        class: "prototype" + (cluster.id === chosen ? " selected" : ""),
        "data-cluster": cluster.id,
      });
      figure.appendChild(image(cluster.prototype, `prototype of cluster ${cluster.id}`));
      const separation = cluster.separation === null ? "–" : cluster.separation.toFixed(2);
      figure.appendChild(element("figcaption", {},
        `cluster ${cluster.id}: ${cluster.size}, ${separation}`));
      box.appendChild(figure);
    }
    const found = group.clusters.find((c) => c.id === chosen);
    $("atlas-box").hidden = !(found && found.atlas);
    if (found && found.atlas) $("atlas").src = found.atlas;
  }

  function select(index) {
    const group = data.groups[state.group];
    const point = group.points.find((p) => p[3] === index);
    state.sample = index;
    for (const dot of $("scatter").querySelectorAll("circle")) {
      dot.classList.toggle("selected", Number(dot.dataset.index) === index);
    }
    const sample = data.samples[String(index)];
    $("sample-title").textContent = `Sample ${index} (${data.class_names[group.label]}), ` +
      `cluster ${point[2]}`;
    const box = $("sample");
    box.replaceChildren();
    for (const [uri, caption] of [[sample.input, "input"], [sample.overlay, "heatmap"]]) {
      const figure = element("figure", {});
      figure.appendChild(image(uri, caption));
      figure.appendChild(element("figcaption", {}, caption));
      box.appendChild(figure);
    }
    drawPrototypes(group, point[2]);
  }

  function showGroup(position) {
    state.group = position;
    const group = data.groups[position];
    $("class-summary").textContent = `${group.points.length} samples, ` +
      `${group.clusters.length} clusters; the eigengap suggests ${group.suggested}`;
    drawScatter(group);
    drawEigenvalues(group);
    drawPrototypes(group, null);
    $("sample").replaceChildren();
    $("sample-title").textContent = "Click a point";
  }

  const chooser = $("class-select");
  data.groups.forEach((group, position) => {
    chooser.appendChild(element("option", { value: position }, data.class_names[group.label]));
  });
  chooser.addEventListener("change", () => showGroup(Number(chooser.value)));
  $("summary").textContent = `${data.method} heatmaps of ${data.model}, ` +
    `clustered by SpRAy (keras_explain ${data.version})`;
  showGroup(0);
  window.kxReady = true;
})();
