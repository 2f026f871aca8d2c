// Inline script of the report: sortable tables, the published-rows toggle and the sample explorer.
// Model and dataset text only ever enters the page through textContent and attribute setters,
// never as HTML. The explorer state lives in the URL hash: #samples:run=run-0&verdict=wrong&page=2
"use strict";
(function () {
  var PAGE_SIZE = 50;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ---- sortable tables ----------------------------------------------------------------------
  function sortKey(cell, numeric) {
    var raw = cell ? (cell.getAttribute("data-sort") !== null ? cell.getAttribute("data-sort") : cell.textContent) : "";
    if (!numeric) return raw.toLowerCase();
    var v = parseFloat(raw);
    return isNaN(v) ? null : v;
  }

  function sortTable(table, index, th) {
    var body = table.tBodies[0];
    var numeric = !th.classList.contains("sort-text");
    var current = th.getAttribute("aria-sort");
    // first click: numbers high to low, text A to Z; later clicks flip
    var descending = current ? current === "ascending" : numeric;
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a.cells[index], numeric), y = sortKey(b.cells[index], numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1;  // empty cells stay at the bottom either way
      if (y === null) return -1;
      var c = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.addEventListener("click", function () { sortTable(table, index, th); });
    });
  });

  var toggle = document.getElementById("show-published");
  if (toggle) {
    toggle.addEventListener("change", function () {
      document.getElementById("board").classList.toggle("hide-published", !toggle.checked);
    });
  }

  // ---- sample explorer ----------------------------------------------------------------------
  var list = document.getElementById("sample-list");
  if (!list) return;
  var controls = {
    run: document.getElementById("f-run"), verdict: document.getElementById("f-verdict"),
    cat: document.getElementById("f-cat"), rule: document.getElementById("f-rule"), q: document.getElementById("f-q")
  };
  var cache = {};
  var images = JSON.parse(document.getElementById("data-images").textContent);
  var state = { run: controls.run.value, verdict: "", cat: "", rule: "", q: "", page: 1 };

  // A run's records: base64 of gzip-compressed JSON, decompressed by the browser (no network, no
  // library) the first time the run is shown. A promise of the parsed data, or of null.
  function unpack(text) {
    var bytes;
    if (Uint8Array.fromBase64) {
      bytes = Uint8Array.fromBase64(text);
    } else {
      var binary = atob(text);
      bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }

  function runData(anchor) {
    if (!(anchor in cache)) {
      var node = document.getElementById("data-" + anchor);
      cache[anchor] = node ? unpack(node.textContent.trim()) : Promise.resolve(null);
    }
    return cache[anchor];
  }

  function fillSelect(select, options, value) {
    while (select.options.length > 1) select.remove(1);
    options.forEach(function (o) {
      var opt = el("option", null, o[1]);
      opt.value = o[0];
      select.appendChild(opt);
    });
    select.value = value;
    if (select.value !== value) select.value = "";
  }

  function fillFilters(data) {
    var cats = [];
    Object.keys(data.cats).forEach(function (field) {
      data.cats[field].forEach(function (v) { cats.push([field + "=" + v, field + ": " + v]); });
    });
    fillSelect(controls.cat, cats, state.cat);
    fillSelect(controls.rule, data.rules.map(function (r) { return [r, r]; }), state.rule);
    controls.verdict.value = state.verdict;
    controls.q.value = state.q;
    state.cat = controls.cat.value;
    state.rule = controls.rule.value;
  }

  function matches(s) {
    if (state.verdict && s.verdict !== state.verdict) return false;
    if (state.rule && s.rule !== state.rule) return false;
    if (state.cat) {
      var at = state.cat.indexOf("=");
      if (s.cats[state.cat.slice(0, at)] !== state.cat.slice(at + 1)) return false;
    }
    if (state.q) {
      var q = state.q.toLowerCase();
      var hay = [s.id, s.key, s.answer, s.extracted === null ? "" : String(s.extracted)].join("\n").toLowerCase();
      if (hay.indexOf(q) < 0) return false;
    }
    return true;
  }

  function asText(v) {
    if (v === null || v === undefined) return "—";
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function renderValue(v) {
    if (Array.isArray(v)) {
      var ol = el("ol", "tree");
      v.forEach(function (item) { var li = el("li"); li.appendChild(renderValue(item)); ol.appendChild(li); });
      return ol;
    }
    if (v && typeof v === "object") {
      var dl = el("dl", "tree");
      Object.keys(v).forEach(function (k) {
        dl.appendChild(el("dt", null, k));
        var dd = el("dd");
        dd.appendChild(renderValue(v[k]));
        dl.appendChild(dd);
      });
      return dl;
    }
    return typeof v === "string" && (v.length > 80 || v.indexOf("\n") >= 0) ? el("pre", null, v) : el("span", null, asText(v));
  }

  function folded(summary, content, open) {
    var d = el("details");
    if (open) d.open = true;
    d.appendChild(el("summary", null, summary));
    d.appendChild(content);
    return d;
  }

  function renderReply(reply) {
    var head = "#" + reply.index + " · " + (reply.kept ? "kept" : "dropped") + " · " + asText(reply.finish_reason)
      + (reply.usage ? " · " + reply.usage.completion_tokens + " tokens" : "")
      + (reply.error ? " · error: " + reply.error : "") + (reply.cached ? " · cached" : "");
    return folded(head, el("pre", null, reply.text || "(no answer)"));
  }

  function renderTrace(trace) {
    var box = el("div", "trace");
    trace.forEach(function (round, i) {
      var head = "round " + asText(round.round !== undefined ? round.round : i) + " · width " + asText(round.width);
      if (round.references) head += " · references " + JSON.stringify(round.references);
      if (round.fallback) head += " · " + round.fallback;
      var body = el("div");
      var rest = {};
      Object.keys(round).forEach(function (k) { if (k !== "replies") rest[k] = round[k]; });
      body.appendChild(renderValue(rest));
      (round.replies || []).forEach(function (reply) { body.appendChild(renderReply(reply)); });
      box.appendChild(folded(head, body));
    });
    return box;
  }

  function renderImage(digest) {
    var info = images[digest] || { src: null, note: digest };
    if (!info.src) return el("div", "noimg", info.note);
    var img = el("img");
    img.src = "data:image/jpeg;base64," + info.src;
    img.alt = info.note;
    img.title = info.note;
    img.addEventListener("click", function () { img.classList.toggle("big"); });
    return img;
  }

  function renderPrompt(messages) {
    var box = el("div", "prompt");
    var thumbs = el("div", "thumbs");
    var texts = [];
    var count = 0;
    messages.forEach(function (m) {
      var own = [];
      m.parts.forEach(function (p) {
        if (p.img === undefined) { own.push(p.text); return; }
        count += 1;
        var img = renderImage(p.img);
        img.title = "image " + count + ": " + img.title;
        thumbs.appendChild(img);
        if (own.length) own.push("[image " + count + "]");  // where an image sits inside the text
      });
      texts.push((messages.length > 1 ? "[" + m.role + "]\n" : "") + own.join(""));
    });
    if (thumbs.childNodes.length) box.appendChild(thumbs);
    box.appendChild(el("pre", null, texts.join("\n\n")));
    return box;
  }

  function fact(dl, name, value) {
    dl.appendChild(el("dt", null, name));
    dl.appendChild(el("dd", null, asText(value)));
  }

  function renderSample(s, data) {
    var card = el("article", "sample v-" + s.verdict);
    card.setAttribute("data-verdict", s.verdict);
    card.setAttribute("data-rule", s.rule);
    card.setAttribute("data-key", s.key);
    var head = el("header");
    head.appendChild(el("span", "sid", s.id));
    head.appendChild(el("span", "meta", "repeat " + s.repeat));
    head.appendChild(el("span", "verdict", s.verdict));
    Object.keys(s.cats).forEach(function (k) { head.appendChild(el("span", "meta", k + ": " + s.cats[k])); });
    if (s.tokens[0] || s.tokens[1]) head.appendChild(el("span", "meta", s.tokens[0] + " prompt + " + s.tokens[1]
      + " completion tokens" + (s.latency ? " · " + Number(s.latency).toFixed(1) + " s" : "")));
    card.appendChild(head);
    card.appendChild(renderPrompt(data.prompts[s.prompt] || []));
    if (s.reasoning) card.appendChild(folded("reasoning (" + s.reasoning.length.toLocaleString() + " characters)", el("pre", null, s.reasoning)));
    var answer = el("div", "answer");
    answer.appendChild(el("pre", null, s.error ? "error: " + s.error : (s.answer || "(no answer)")));
    card.appendChild(answer);
    var dl = el("dl", "facts");
    fact(dl, "extracted", s.extracted);
    fact(dl, "rule", s.rule);
    fact(dl, "target", s.target);
    fact(dl, "verdict", s.verdict + (s.score !== null && s.score !== undefined ? " (score " + s.score + ")" : ""));
    fact(dl, "finish", s.finish);
    card.appendChild(dl);
    if (s.trace && s.trace.length) card.appendChild(folded("PaCoRe trace (" + s.trace.length + " rounds)", renderTrace(s.trace)));
    if (Object.keys(s.extra).length) card.appendChild(folded("scoring details", renderValue(s.extra)));
    if (Object.keys(s.meta).length) card.appendChild(folded("metadata", renderValue(s.meta)));
    return card;
  }

  function writeHash() {
    var params = [];
    ["run", "verdict", "cat", "rule", "q"].forEach(function (k) {
      if (state[k]) params.push(k + "=" + encodeURIComponent(state[k]));
    });
    if (state.page > 1) params.push("page=" + state.page);
    history.replaceState(null, "", "#samples:" + params.join("&"));
  }

  function readHash() {
    if (location.hash.indexOf("#samples:") !== 0) return false;
    location.hash.slice("#samples:".length).split("&").forEach(function (pair) {
      var at = pair.indexOf("=");
      if (at < 0) return;
      var k = pair.slice(0, at), v = decodeURIComponent(pair.slice(at + 1));
      if (k === "page") state.page = Math.max(1, parseInt(v, 10) || 1);
      else if (k in state) state[k] = v;
    });
    return true;
  }

  var rendering = 0;  // the latest render wins when a slower run's data arrives after it

  function render() {
    var ticket = ++rendering;
    runData(state.run).then(function (data) {
      if (data) return data;
      state.run = controls.run.value;
      return runData(state.run);
    }).then(function (data) {
      if (ticket === rendering) draw(data);
    }).catch(function (err) {
      document.getElementById("sample-status").textContent = "could not read the samples of this run: " + err;
    });
  }

  function draw(data) {
    controls.run.value = state.run;
    fillFilters(data);
    var shown = data.samples.filter(matches);
    var pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages);
    var start = (state.page - 1) * PAGE_SIZE;
    var fragment = document.createDocumentFragment();
    shown.slice(start, start + PAGE_SIZE).forEach(function (s) { fragment.appendChild(renderSample(s, data)); });
    list.replaceChildren(fragment);
    var counts = {};
    shown.forEach(function (s) { counts[s.verdict] = (counts[s.verdict] || 0) + 1; });
    var parts = Object.keys(counts).sort().map(function (k) { return counts[k] + " " + k; });
    document.getElementById("sample-status").textContent = shown.length + " of " + data.samples.length
      + " samples of " + data.run + (parts.length ? " (" + parts.join(", ") + ")" : "");
    document.getElementById("page-info").textContent = "page " + state.page + " of " + pages;
    document.getElementById("prev").disabled = state.page <= 1;
    document.getElementById("next").disabled = state.page >= pages;
    // when the explorer first showed samples, in ms since navigation (benchmarks/report_render.py)
    if (!list.hasAttribute("data-ready-ms")) list.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  }

  function onFilter(key) {
    return function () {
      state[key] = controls[key].value;
      if (key === "run") { state.cat = ""; state.rule = ""; }
      state.page = 1;
      writeHash();
      render();
    };
  }

  document.getElementById("filters").addEventListener("submit", function (e) { e.preventDefault(); });
  ["run", "verdict", "cat", "rule"].forEach(function (k) { controls[k].addEventListener("change", onFilter(k)); });
  controls.q.addEventListener("input", onFilter("q"));
  document.getElementById("prev").addEventListener("click", function () { state.page -= 1; writeHash(); render(); });
  document.getElementById("next").addEventListener("click", function () { state.page += 1; writeHash(); render(); });
  window.addEventListener("hashchange", function () {
    if (location.hash.indexOf("#samples:") !== 0) return;
    state = { run: controls.run.value, verdict: "", cat: "", rule: "", q: "", page: 1 };
    readHash();
    render();
    document.getElementById("samples").scrollIntoView();
  });

  var fromHash = readHash();
  document.getElementById("sample-status").textContent = "loading the samples…";
  render();
  if (fromHash) document.getElementById("samples").scrollIntoView();
})();
