/* dinoreport: lightbox for figure panels and the similarity explorer. No dependencies. */
(function () {
  "use strict";

  /* ---------------------------------------------------------------- lightbox */
  function setupLightbox() {
    var dlg = document.getElementById("lightbox");
    if (!dlg) return;
    var img = document.getElementById("lightbox-img");
    var cap = document.getElementById("lightbox-caption");
    var closeBtn = document.getElementById("lightbox-close");
    var opener = null;
    function close() {
      if (dlg.open) dlg.close();
    }
    dlg.addEventListener("close", function () {
      img.removeAttribute("src");
      if (opener) opener.focus();
      opener = null;
    });
    closeBtn.addEventListener("click", close);
    dlg.addEventListener("click", function (e) { if (e.target === dlg || e.target === img) close(); });
    document.addEventListener("keydown", function (e) { if (e.key === "Escape" && dlg.open) close(); });
    document.querySelectorAll("button.zoom").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var src = btn.querySelector("img");
        if (!src) return;
        opener = btn;
        img.src = src.currentSrc || src.src;
        img.alt = src.alt;
        var fig = btn.closest("figure");
        var fc = fig ? fig.querySelector(":scope > figcaption") : null;
        cap.textContent = src.alt + (fc ? " — " + fc.textContent.trim() : "");
        var small = src.classList.contains("px") || (src.naturalWidth || 0) < 200;
        dlg.classList.toggle("pixelated", small);
        if (typeof dlg.showModal === "function") dlg.showModal(); else dlg.setAttribute("open", "");
        closeBtn.focus();
      });
    });
  }

  /* ---------------------------------------------------------------- float16 */
  /* base64 int8 codes -> Float32Array */
  function decodeI8(b64) {
    var bin = atob(b64), n = bin.length, out = new Float32Array(n);
    for (var i = 0; i < n; i++) { var v = bin.charCodeAt(i); out[i] = v > 127 ? v - 256 : v; }
    return out;
  }

  /* viridis, 9 stops */
  var VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  function cmap(t) {
    if (!(t >= 0)) t = 0; if (t > 1) t = 1;
    var x = t * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    var a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
  }
  function fmt(v) { return (Math.round(v * 100) / 100).toFixed(2).replace("-", "\u2212"); }

  /* ---------------------------------------------------------------- explorer */
  function setupExplorer() {
    var dataEl = document.getElementById("explorer-data");
    var root = document.querySelector("[data-explorer-root]");
    if (!dataEl || !root) return;
    var data = JSON.parse(dataEl.textContent);
    var fig = root.closest(".explorer");
    var status = fig.querySelector(".xp-status");
    var imgs = {}; (data.images || []).forEach(function (im) { imgs[im.id] = im; });
    var labels = {}; (data.models || []).forEach(function (m) { labels[m.id] = m.label; });
    var bar = fig.querySelector(".xp-bar");
    var stops = []; for (var k = 0; k <= 10; k++) { var c = cmap(k / 10); stops.push("rgb(" + c.map(Math.round).join(",") + ") " + (k * 10) + "%"); }
    bar.style.background = "linear-gradient(to right, " + stops.join(", ") + ")";

    var groups = {}; (data.groups || []).forEach(function (g) { groups[g.id] = g.images; });
    var stagesOf = {}; (data.models || []).forEach(function (m) { stagesOf[m.id] = m.stages || []; });
    var cache = {};
    function feats(model, image) {
      var stage = state.stage[model], key = [model, stage, state.group, image].join("\u0000");
      if (cache[key]) return cache[key];
      var f = ((((data.features || {})[model] || {})[stage] || {})[state.group] || {})[image];
      if (!f) return null;
      var raw = decodeI8(f.q), d = f.d, n = f.h * f.w;
      for (var i = 0; i < n; i++) {
        var s = 0;
        for (var j = 0; j < d; j++) { var v = raw[i * d + j]; s += v * v; }
        s = Math.sqrt(s) || 1;
        for (var j2 = 0; j2 < d; j2++) raw[i * d + j2] /= s;
      }
      cache[key] = { h: f.h, w: f.w, d: d, v: raw };
      return cache[key];
    }

    var firstGroup = (data.groups[0] || {}).id;
    var state = { group: firstGroup, model: (data.models[0] || {}).id, stage: {}, src: null, y: 0, x: 0 };
    (data.models || []).forEach(function (m) { state.stage[m.id] = (data.stage || {})[m.id] || m.stages[m.stages.length - 1]; });
    var views = {};   // image id -> {wrap, canvas, cross}
    var maps = {};    // image id -> Float32Array

    function shown() { return groups[state.group] || []; }

    var stageBox = fig.querySelector("[data-stage-buttons]");
    function stageButtons() {
      if (!stageBox) return;
      stageBox.querySelectorAll("button").forEach(function (b) { b.remove(); });
      stagesOf[state.model].forEach(function (st) {
        var b = document.createElement("button");
        b.type = "button"; b.className = "xp-btn"; b.textContent = st;
        b.setAttribute("data-stage", st);
        b.setAttribute("aria-pressed", st === state.stage[state.model] ? "true" : "false");
        b.addEventListener("click", function () { selectStage(st); });
        stageBox.appendChild(b);
      });
    }

    function build() {
      root.textContent = "";
      views = {};
      shown().forEach(function (id, idx) {
        var im = imgs[id] || { id: id };
        var item = document.createElement("figure");
        item.className = "xp-item";
        var wrap = document.createElement("div");
        wrap.className = "xp-view";
        wrap.tabIndex = 0;
        wrap.setAttribute("role", "application");
        wrap.setAttribute("aria-roledescription", "similarity map");
        wrap.setAttribute("aria-label", "Image " + id + ": click or use arrow keys to move the probe");
        var photo = document.createElement("img");
        photo.src = im.photo || "data:,";
        photo.alt = "Photo " + id + " (group " + state.group + "), overlaid with the similarity map";
        if (im.width) photo.width = im.width;
        if (im.height) photo.height = im.height;
        photo.draggable = false;
        var canvas = document.createElement("canvas");
        canvas.setAttribute("data-image", id);
        canvas.setAttribute("data-model", state.model);
        var cross = document.createElement("div");
        cross.className = "xp-cross";
        cross.hidden = true;
        wrap.appendChild(photo); wrap.appendChild(canvas); wrap.appendChild(cross);
        var cap = document.createElement("figcaption");
        cap.textContent = id;
        item.appendChild(wrap); item.appendChild(cap);
        root.appendChild(item);
        views[id] = { wrap: wrap, canvas: canvas, cross: cross };

        function cellAt(ev) {
          var f = feats(state.model, id); if (!f) return null;
          var r = canvas.getBoundingClientRect();
          var x = Math.floor((ev.clientX - r.left) / r.width * f.w);
          var y = Math.floor((ev.clientY - r.top) / r.height * f.h);
          return [Math.max(0, Math.min(f.h - 1, y)), Math.max(0, Math.min(f.w - 1, x))];
        }
        var dragging = false;
        wrap.addEventListener("pointerdown", function (ev) {
          var c = cellAt(ev); if (!c) return;
          dragging = true;
          try { wrap.setPointerCapture(ev.pointerId); } catch (e) { /* ignore */ }
          setProbe(id, c[0], c[1]);
        });
        wrap.addEventListener("pointermove", function (ev) {
          if (!dragging) return;
          var c = cellAt(ev); if (c && (id !== state.src || c[0] !== state.y || c[1] !== state.x)) setProbe(id, c[0], c[1]);
        });
        wrap.addEventListener("pointerup", function () { dragging = false; });
        wrap.addEventListener("pointercancel", function () { dragging = false; });
        wrap.addEventListener("keydown", function (ev) {
          var dy = 0, dx = 0;
          if (ev.key === "ArrowUp") dy = -1; else if (ev.key === "ArrowDown") dy = 1;
          else if (ev.key === "ArrowLeft") dx = -1; else if (ev.key === "ArrowRight") dx = 1;
          else return;
          ev.preventDefault();
          var f = feats(state.model, id); if (!f) return;
          if (state.src !== id) { setProbe(id, Math.floor(f.h / 2), Math.floor(f.w / 2)); return; }
          setProbe(id, Math.max(0, Math.min(f.h - 1, state.y + dy)), Math.max(0, Math.min(f.w - 1, state.x + dx)));
        });
      });
    }

    function compute() {
      maps = {};
      var q = feats(state.model, state.src);
      var lo = Infinity, hi = -Infinity;
      if (!q) return [0, 0];
      var qo = (state.y * q.w + state.x) * q.d;
      shown().forEach(function (id) {
        var f = feats(state.model, id);
        if (!f) return;
        var n = f.h * f.w, m = new Float32Array(n), dd = Math.min(f.d, q.d);
        for (var i = 0; i < n; i++) {
          var s = 0, o = i * f.d;
          for (var j = 0; j < dd; j++) s += f.v[o + j] * q.v[qo + j];
          m[i] = s;
          if (s < lo) lo = s; if (s > hi) hi = s;
        }
        maps[id] = m;
      });
      return [lo, hi];
    }

    function draw(range) {
      var lo = range[0], hi = range[1], span = (hi - lo) || 1;
      Object.keys(views).forEach(function (id) {
        var v = views[id], f = feats(state.model, id), m = maps[id];
        v.canvas.setAttribute("data-model", state.model);
        v.canvas.setAttribute("data-stage", state.stage[state.model]);
        v.wrap.classList.toggle("is-source", id === state.src);
        if (!f || !m) { v.canvas.width = 1; v.canvas.height = 1; v.cross.hidden = true; return; }
        v.canvas.width = f.w; v.canvas.height = f.h;
        var ctx = v.canvas.getContext("2d");
        var px = ctx.createImageData(f.w, f.h);
        for (var i = 0; i < m.length; i++) {
          var c = cmap((m[i] - lo) / span);
          px.data[4 * i] = c[0]; px.data[4 * i + 1] = c[1]; px.data[4 * i + 2] = c[2]; px.data[4 * i + 3] = 255;
        }
        ctx.putImageData(px, 0, 0);
        if (id === state.src) {
          v.cross.hidden = false;
          v.cross.style.left = (100 * state.x / f.w) + "%";
          v.cross.style.top = (100 * state.y / f.h) + "%";
          v.cross.style.width = (100 / f.w) + "%";
          v.cross.style.height = (100 / f.h) + "%";
        } else v.cross.hidden = true;
      });
      fig.querySelector(".xp-min").textContent = fmt(lo);
      fig.querySelector(".xp-max").textContent = fmt(hi);
      var q = feats(state.model, state.src), st = state.stage[state.model];
      var err = (((data.error || {})[state.model] || {})[st] || {})[state.group];
      status.textContent = (labels[state.model] || state.model) + " (" + st + ")" +
        ", probe on " + state.src + " at row " + (state.y + 1) + ", column " + (state.x + 1) +
        (q ? " of " + q.h + "\u00d7" + q.w : "") +
        ". Similarity on screen ranges from " + fmt(lo) + " to " + fmt(hi) + "." +
        (err ? " Codes of " + err.dims + " dimensions; cosine error against the exact features: mean " +
          err.mean_abs.toFixed(3) + ", max " + err.max_abs.toFixed(3) + "." : "");
    }

    function pressed(attr, value) {
      fig.querySelectorAll("button[" + attr + "]").forEach(function (b) {
        b.setAttribute("aria-pressed", b.getAttribute(attr) === value ? "true" : "false");
      });
    }

    function setProbe(id, y, x) {
      state.src = id; state.y = y; state.x = x;
      draw(compute());
    }

    function centre(id) {
      var f = feats(state.model, id);
      return f ? [Math.floor(f.h / 2), Math.floor(f.w / 2)] : [0, 0];
    }

    /* keep the probe at the same place in the photo when the grid changes */
    function reprobe(oldF) {
      var f = feats(state.model, state.src);
      if (!f) { var c = centre(state.src); setProbe(state.src, c[0], c[1]); return; }
      var y = state.y, x = state.x;
      if (oldF && (oldF.h !== f.h || oldF.w !== f.w)) {
        y = Math.floor((y + 0.5) * f.h / oldF.h); x = Math.floor((x + 0.5) * f.w / oldF.w);
      }
      setProbe(state.src, Math.min(y, f.h - 1), Math.min(x, f.w - 1));
    }

    function selectGroup(g) {
      if (state.group !== g || !Object.keys(views).length) {
        state.group = g;
        build();
      }
      pressed("data-group", g);
    }

    function selectStage(st) {
      var oldF = feats(state.model, state.src);
      state.stage[state.model] = st;
      pressed("data-stage", st);
      reprobe(oldF);
    }

    function selectModel(mid) {
      var oldF = feats(state.model, state.src);
      state.model = mid;
      pressed("data-model", mid);
      stageButtons();
      reprobe(oldF);
    }

    fig.querySelectorAll("button[data-group]").forEach(function (b) {
      b.addEventListener("click", function () {
        var g = b.getAttribute("data-group");
        selectGroup(g);
        var first = shown()[0], c = centre(first);
        setProbe(first, c[0], c[1]);
      });
    });
    fig.querySelectorAll("button[data-model]").forEach(function (b) {
      b.addEventListener("click", function () { selectModel(b.getAttribute("data-model")); });
    });

    stageButtons();
    selectGroup(state.group);
    var first0 = shown()[0], c0 = centre(first0);
    setProbe(first0, c0[0], c0[1]);

    window.dinoExplorer = {
      /* probe(image, model, y, x[, stage[, group]]): the group defaults to the first holding the image */
      probe: function (imageId, modelId, y, x, stage, group) {
        if (modelId && modelId !== state.model) { state.model = modelId; pressed("data-model", modelId); stageButtons(); }
        if (stage) { state.stage[state.model] = stage; pressed("data-stage", stage); }
        var g = group || (shown().indexOf(imageId) >= 0 ? state.group : null);
        if (!g) (data.groups || []).forEach(function (gr) { if (!g && gr.images.indexOf(imageId) >= 0) g = gr.id; });
        if (!g) throw new Error("unknown image " + imageId);
        selectGroup(g);
        setProbe(imageId, y, x);
      },
      map: function (imageId) { return maps[imageId] || null; },
      state: function () {
        return { group: state.group, model: state.model, stage: state.stage[state.model],
                 image: state.src, y: state.y, x: state.x };
      }
    };
  }

  function init() {
    setupLightbox();
    setupExplorer();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
