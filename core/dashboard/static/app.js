// pcq dashboard: render each view the server sends (/events, server-sent events).
// Everything from Redis is written with textContent, never as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const num = (v, digits) => (v === null || v === undefined) ? "–" :
    Number(v).toLocaleString(undefined, {maximumFractionDigits: digits || 0,
                                         minimumFractionDigits: digits || 0});
  const clock = (t) => t ? new Date(t * 1000).toLocaleTimeString() : "–";
  let chart = null;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function setConnection(text, bad) {
    const c = $("connection");
    c.textContent = text;
    c.classList.toggle("error", !!bad);
  }

  function chartSize() {
    const box = $("chart");
    return {width: Math.max(200, box.clientWidth - 16), height: 220};
  }

  function drawChart(series) {
    const data = [series.map((p) => p[0]), series.map((p) => p[1]), series.map((p) => p[2])];
    if (typeof uPlot === "undefined") return;
    if (chart === null) {
      const opts = Object.assign(chartSize(), {
        scales: {x: {time: true}, n: {range: (u, lo, hi) => [0, Math.max(10, hi)]},
                 r: {range: (u, lo, hi) => [0, Math.max(1, hi)]}},
        series: [{label: "time"},
                 {label: "Queue length", scale: "n", stroke: "#0550ae", width: 2},
                 {label: "Items/s", scale: "r", stroke: "#8250df", width: 2, dash: [6, 3]}],
        axes: [{}, {scale: "n", label: "queue length"},
               {scale: "r", side: 1, label: "items/s", grid: {show: false}}],
      });
      chart = new uPlot(opts, data, $("chart"));
      new ResizeObserver(() => chart.setSize(chartSize())).observe($("chart"));
    } else {
      chart.setData(data);
    }
    const last = series[series.length - 1];
    if (last) {
      $("chart-text").textContent = `Latest: queue length ${last[1]}, ` +
        `${last[2] === null ? "no rate yet" : last[2] + " items/s"}, over ${series.length} samples.`;
    }
  }

  function renderSummary(v) {
    $("queue-name").textContent = v.queue;
    $("s-length").textContent = num(v.length);
    $("s-in-flight").textContent = num(v.in_flight);
    const rate = v.items_per_second_window ?? v.items_per_second;
    $("s-rate").textContent = num(rate, 1);
    $("s-alive").textContent = `${v.consumers_alive} of ${v.consumers.filter((c) => c.state !== "stopped").length}`;
    $("s-handled").textContent = v.acked_total === null ? "unavailable" : num(v.acked_total);
    $("s-dead").textContent = num(v.dead_letters);
    $("s-open").textContent = num(v.open_runs);
  }

  function consumerTile(c) {
    const li = el("li", null, `tile ${c.state}`);
    li.dataset.consumer = c.id;
    li.dataset.state = c.state;
    const head = el("h3");
    head.append(el("span", `${c.host}${c.pid === null ? "" : ":" + c.pid} `), el("span", c.state, "badge"));
    li.append(head);
    const dl = el("dl");
    const age = c.heartbeat_age === null ? (c.state === "alive" ? "–" : "expired") : `${num(c.heartbeat_age, 1)} s`;
    for (const [k, val] of [["heartbeat age", age], ["in flight", num(c.in_flight)],
                            ["handled", num(c.acked)], ["items/s", num(c.rate, 1)]]) {
      dl.append(el("dt", k), el("dd", val));
    }
    li.append(dl);
    li.setAttribute("aria-label", `consumer ${c.id}: ${c.state}, heartbeat ${age}, in flight ${c.in_flight}`);
    return li;
  }

  function renderConsumers(v) {
    $("consumers").replaceChildren(...v.consumers.map(consumerTile));
    $("consumers-empty").hidden = v.consumers.length > 0;
  }

  function fillTable(id, rows) {
    $(id).tBodies[0].replaceChildren(...rows.map((cells) => {
      const tr = el("tr");
      for (const [text, cls] of cells) tr.append(el("td", text, cls));
      return tr;
    }));
  }

  function renderRuns(v) {
    const runs = v.runs;
    $("runs-note").textContent = runs === null ? "Runs: unavailable with these credentials." :
      (runs.length ? "" : "No run yet.");
    $("runs-box").hidden = !(runs && runs.length);
    fillTable("runs", (runs || []).map((r) => [
      [r.run], [clock(r.started_at)], [num(r.produced), "num"], [num(r.consumed), "num"],
      [num(r.lost), "num"], [num(r.redelivered), "num"], [num(r.dead_letters), "num"],
      [r.closed ? "closed" : "open"]]));
  }

  function renderDead(v) {
    const dead = v.recent_dead_letters;
    $("dead-note").textContent = dead === null ? "Dead letters: unavailable with these credentials." :
      (dead.length ? `${num(v.dead_letters)} in all; the newest:` : "None.");
    $("dead-box").hidden = !(dead && dead.length);
    fillTable("dead", (dead || []).map((d) => [
      [d.id || "–"], [clock(d.at)], [d.reason, "reason"], [d.consumer || "–"]]));
  }

  function renderRq(v) {
    const rq = v.rq;
    $("rq-note").textContent = rq === null ? "RQ: unavailable with these credentials." : "";
    $("rq-name").textContent = rq ? rq.queue : "";
    const pairs = rq ? [["queued", rq.length], ...Object.entries(rq.registries), ["workers", rq.workers]] : [];
    $("rq").replaceChildren(...pairs.map(([k, n]) => {
      const div = el("div", null, "stat");
      div.append(el("dt", k), el("dd", num(n)));
      return div;
    }));
  }

  function render(v) {
    if (v.error) {
      setConnection(`Redis: ${v.error} (retrying)`, true);
      return;
    }
    setConnection(`Live · updated ${clock(v.at)}`, false);
    renderSummary(v);
    drawChart(v.series || []);
    renderConsumers(v);
    renderRuns(v);
    renderDead(v);
    renderRq(v);
  }

  const source = new EventSource("/events");
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = () => setConnection("Disconnected: reconnecting…", true);
})();
