/* dinoreport: lightbox for figure panels and the similarity explorer. No dependencies. */
(function () {
  "use strict";

  /* ---------------------------------------------------------------- lightbox */
  function setupLightbox() {
    var dlg = document.getElementById("lightbox");
    if (!dlg) return;
    var img = document.getElementById("lightbox-img");
    var layer = document.getElementById("lightbox-layer");
    var cap = document.getElementById("lightbox-caption");
    var closeBtn = document.getElementById("lightbox-close");
    var opener = null;
    function close() {
      if (dlg.open) dlg.close();
    }
    dlg.addEventListener("close", function () {
      img.removeAttribute("src");
      if (layer) { layer.removeAttribute("src"); layer.hidden = true; }
      if (opener) opener.focus();
      opener = null;
    });
    closeBtn.addEventListener("click", close);
    dlg.addEventListener("click", function (e) { if (e.target === dlg || e.target === img || e.target === layer) close(); });
    document.addEventListener("keydown", function (e) { if (e.key === "Escape" && dlg.open) close(); });
    document.querySelectorAll("button.zoom").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var imgs = btn.querySelectorAll("img"), src = imgs[0];
        if (!src) return;
        opener = btn;
        img.src = src.currentSrc || src.src;
        if (layer) {  /* a mask drawn over its photo (figure.html.j2, .layered) */
          layer.hidden = imgs.length < 2;
          if (imgs.length > 1) layer.src = imgs[1].currentSrc || imgs[1].src;
        }
        img.alt = src.alt;
        /* the picture's own proportions while it decodes (CSS sizes it) */
        img.width = src.naturalWidth || src.width || 1;
        img.height = src.naturalHeight || src.height || 1;
        var fig = btn.closest("figure");
        var fc = fig ? fig.querySelector(":scope > figcaption") : null;
        var fcText = "";
        if (fc) {  /* the caption's words, without the permalink mark and the download link */
          var c = fc.cloneNode(true);
          c.querySelectorAll(".pilcrow, .fig-download").forEach(function (e) { e.remove(); });
          fcText = c.textContent.trim();
        }
        cap.textContent = src.alt + (fcText ? " — " + fcText : "");
        var small = src.classList.contains("px") || (src.naturalWidth || 0) < 200;
        dlg.classList.toggle("pixelated", small);
        if (typeof dlg.showModal === "function") dlg.showModal(); else dlg.setAttribute("open", "");
        closeBtn.focus();
      });
    });
  }

  /* ---------------------------------------------------------------- codes */
  /* base64 -> Uint8Array */
  function b64bytes(b64) {
    var bin = atob(b64), n = bin.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  /* zlib bytes -> Promise<ArrayBuffer>, by the browser's own inflater */
  function inflate(bytes) {
    if (typeof DecompressionStream !== "function")
      return Promise.reject(new Error("this browser cannot decompress data (no DecompressionStream); " +
        "a current Chrome, Edge, Firefox or Safari can"));
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
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
  /* The codes are not in the page's JSON: blobs[model][stage][group] points to them, either a
     file beside index.html (fetched when the explorer is first used) or base64 inline
     (report.html). Both are zlib-compressed int8, one (d, h, w) block per image of the group. */
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
    var cache = {};    // model, stage, group, image -> {h, w, d, v: unit vectors}
    var loads = {};    // model, stage, group -> Promise (settled ones stay, failed ones go)
    function key() { return Array.prototype.join.call(arguments, "\u0000"); }

    /* h, w, d of an image's codes (known before the codes are) */
    function metaIn(model, stage, group, image) {
      var g = (((data.features || {})[model] || {})[stage] || {})[group];
      var i = g ? (groups[group] || []).indexOf(image) : -1;
      return i >= 0 && g.hw.length >= 2 * i + 2 ? { h: g.hw[2 * i], w: g.hw[2 * i + 1], d: g.d } : null;
    }
    function meta(model, image) { return metaIn(model, state.stage[model], state.group, image); }
    function feats(model, image) {
      return cache[key(model, state.stage[model], state.group, image)] || null;
    }

    function unpack(model, stage, group, buf) {
      var raw = new Int8Array(buf), off = 0;
      (groups[group] || []).forEach(function (id) {
        var f = metaIn(model, stage, group, id);
        if (!f) return;
        var d = f.d, n = f.h * f.w, v = new Float32Array(n * d);
        if (off + n * d > raw.length) throw new Error("the codes file is shorter than the page expects");
        for (var i = 0; i < n; i++) {
          var s = 0;
          for (var j = 0; j < d; j++) { var x = raw[off + j * n + i]; v[i * d + j] = x; s += x * x; }
          s = Math.sqrt(s) || 1;
          for (var j2 = 0; j2 < d; j2++) v[i * d + j2] /= s;
        }
        off += n * d;
        cache[key(model, stage, group, id)] = { h: f.h, w: f.w, d: d, v: v };
      });
      if (off !== raw.length) throw new Error("the codes file has " + raw.length + " bytes, the page expects " + off);
    }

    /* Promise that the codes of (model, stage, group) are in the cache */
    function ensure(model, stage, group) {
      var k = key(model, stage, group);
      if (loads[k]) return loads[k];
      var b = (((data.blobs || {})[model] || {})[stage] || {})[group];
      var p;
      if (!b) p = Promise.reject(new Error("no codes for " + model + " " + stage + " " + group));
      else if (b.b64 != null) p = Promise.resolve().then(function () { return inflate(b64bytes(b.b64)); });
      else p = fetch(b.url, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status + " for " + b.url);
        return r.arrayBuffer();
      }).then(function (buf) { return inflate(new Uint8Array(buf)); });
      p = p.then(function (buf) { unpack(model, stage, group, buf); });
      loads[k] = p;
      p.catch(function () { delete loads[k]; });  // the next interaction tries again
      return p;
    }
    function loadedNow() {
      var ids = shown();
      return ids.length > 0 && ids.every(function (id) { return !meta(state.model, id) || feats(state.model, id); });
    }

    var seq = 0, current = Promise.resolve();
    /* run fn once the codes on screen are here: at once when they are, else after loading
       (only the latest request draws, so quick clicks end on the last choice) */
    function run(fn) {
      started = true;
      if (loadedNow()) { fn(); current = Promise.resolve(); return current; }
      var my = ++seq, m = state.model, st = state.stage[m], g = state.group;
      var b = (((data.blobs || {})[m] || {})[st] || {})[g];
      fig.classList.add("is-loading");
      root.setAttribute("aria-busy", "true");
      status.textContent = "Loading the similarity codes of " + (labels[m] || m) + " (" + st + ")" +
        (b && b.bytes ? ", " + Math.max(1, Math.round(b.bytes / 1000)) + " kB" : "") + "\u2026";
      current = ensure(m, st, g).then(function () {
        if (my !== seq) return;
        fig.classList.remove("is-loading");
        root.removeAttribute("aria-busy");
        fn();
      }, function (err) {
        if (my !== seq) return;
        fig.classList.remove("is-loading");
        root.removeAttribute("aria-busy");
        failed(err);
        throw err;
      });
      return current;
    }

    function failed(err) {
      status.textContent = "";
      var local = location.protocol === "file:";
      status.appendChild(document.createTextNode(local
        ? "The explorer could not load its data: this page was opened as a local file (file://), " +
          "and browsers do not let a local page fetch other files. Open "
        : "The explorer could not load its data (" + (err && err.message || err) + "). Reload the page, or open "));
      var a = document.createElement("a");
      a.href = "report.html"; a.textContent = "report.html";
      status.appendChild(a);
      status.appendChild(document.createTextNode(local
        ? ", the self-contained copy of this page, or serve this folder over HTTP (python -m http.server)."
        : ", the self-contained copy of this page."));
      fig.classList.add("is-failed");
    }

    var firstGroup = (data.groups[0] || {}).id;
    var state = { group: firstGroup, model: (data.models[0] || {}).id, stage: {}, src: null, y: 0, x: 0 };
    (data.models || []).forEach(function (m) { state.stage[m.id] = (data.stage || {})[m.id] || m.stages[m.stages.length - 1]; });
    var views = {};   // image id -> {wrap, canvas, cross}
    var maps = {};    // image id -> Float32Array
    var started = false;

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
        photo.alt = "Photo " + id + " (group " + state.group + "), overlaid with the similarity map";
        if (im.width) photo.width = im.width;
        if (im.height) photo.height = im.height;
        photo.loading = "lazy";
        photo.decoding = "async";
        photo.src = im.photo || picture(im.pic) || "data:,";
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
          var f = meta(state.model, id); if (!f) return null;
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
          setProbe(id, c[0], c[1]).catch(function () { /* shown in the status line */ });
        });
        wrap.addEventListener("pointermove", function (ev) {
          if (!dragging || !loadedNow()) return;
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
          var f = meta(state.model, id); if (!f) return;
          var p = state.src !== id ? setProbe(id, Math.floor(f.h / 2), Math.floor(f.w / 2))
            : setProbe(id, Math.max(0, Math.min(f.h - 1, state.y + dy)), Math.max(0, Math.min(f.w - 1, state.x + dx)));
          p.catch(function () { /* shown in the status line */ });
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
      fig.classList.remove("is-failed");
      var q = feats(state.model, state.src), st = state.stage[state.model];
      var err = (((data.error || {})[state.model] || {})[st] || {})[state.group];
      status.textContent = (labels[state.model] || state.model) + " (" + st + ")" +
        ", probe on " + state.src + " at row " + (state.y + 1) + ", column " + (state.x + 1) +
        (q ? " of " + q.h + "\u00d7" + q.w : "") +
        ". Similarity on screen ranges from " + fmt(lo) + " to " + fmt(hi) + "." +
        (err ? " Codes of " + err.dims + " dimensions" + (err.bits && err.bits < 8 ? " at " + err.bits + " bits" : "") +
          "; cosine error against the exact features: mean " +
          err.mean_abs.toFixed(3) + ", max " + err.max_abs.toFixed(3) + "." : "");
    }

    function pressed(attr, value) {
      fig.querySelectorAll("button[" + attr + "]").forEach(function (b) {
        b.setAttribute("aria-pressed", b.getAttribute(attr) === value ? "true" : "false");
      });
    }

    /* the probe moves at once; the maps are drawn when the codes are here (a Promise) */
    function setProbe(id, y, x) {
      state.src = id; state.y = y; state.x = x;
      return run(function () { draw(compute()); });
    }

    function centre(id) {
      var f = meta(state.model, id);
      return f ? [Math.floor(f.h / 2), Math.floor(f.w / 2)] : [0, 0];
    }

    /* keep the probe at the same place in the photo when the grid changes */
    function reprobe(oldF) {
      var f = meta(state.model, state.src);
      if (!f) { var c = centre(state.src); return setProbe(state.src, c[0], c[1]); }
      var y = state.y, x = state.x;
      if (oldF && (oldF.h !== f.h || oldF.w !== f.w)) {
        y = Math.floor((y + 0.5) * f.h / oldF.h); x = Math.floor((x + 0.5) * f.w / oldF.w);
      }
      return setProbe(state.src, Math.min(y, f.h - 1), Math.min(x, f.w - 1));
    }

    function selectGroup(g) {
      if (state.group !== g || !Object.keys(views).length) {
        state.group = g;
        build();
      }
      pressed("data-group", g);
    }

    function selectStage(st) {
      var oldF = meta(state.model, state.src);
      state.stage[state.model] = st;
      pressed("data-stage", st);
      return reprobe(oldF).catch(function () { /* shown in the status line */ });
    }

    function selectModel(mid) {
      var oldF = meta(state.model, state.src);
      state.model = mid;
      pressed("data-model", mid);
      stageButtons();
      return reprobe(oldF).catch(function () { /* shown in the status line */ });
    }

    fig.querySelectorAll("button[data-group]").forEach(function (b) {
      b.addEventListener("click", function () {
        var g = b.getAttribute("data-group");
        selectGroup(g);
        var first = shown()[0], c = centre(first);
        setProbe(first, c[0], c[1]).catch(function () { /* shown in the status line */ });
      });
    });
    fig.querySelectorAll("button[data-model]").forEach(function (b) {
      b.addEventListener("click", function () { selectModel(b.getAttribute("data-model")); });
    });

    stageButtons();
    selectGroup(state.group);
    state.src = shown()[0];
    var c0 = centre(state.src);
    state.y = c0[0]; state.x = c0[1];
    status.textContent = "The similarity codes load when the explorer comes into view.";

    /* the codes are fetched when the explorer nears the screen (or is first used), not before */
    function start() {
      if (started) return;
      setProbe(state.src, state.y, state.x).catch(function () { /* shown in the status line */ });
    }
    if (typeof IntersectionObserver === "function") {
      var io = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) { io.disconnect(); start(); }
      }, { rootMargin: "400px 0px" });
      io.observe(fig);
    } else start();
    fig.addEventListener("focusin", start);

    window.dinoExplorer = {
      /* probe(image, model, y, x[, stage[, group]]): the group defaults to the first holding the
         image; a Promise, settled once the map is drawn */
      probe: function (imageId, modelId, y, x, stage, group) {
        if (modelId && modelId !== state.model) { state.model = modelId; pressed("data-model", modelId); stageButtons(); }
        if (stage) { state.stage[state.model] = stage; pressed("data-stage", stage); }
        var g = group || (shown().indexOf(imageId) >= 0 ? state.group : null);
        if (!g) (data.groups || []).forEach(function (gr) { if (!g && gr.images.indexOf(imageId) >= 0) g = gr.id; });
        if (!g) return Promise.reject(new Error("unknown image " + imageId));
        selectGroup(g);
        return setProbe(imageId, y, x);
      },
      /* Promise, settled when what the last action asked for is drawn (or failed) */
      ready: function () { return current; },
      map: function (imageId) { return maps[imageId] || null; },
      state: function () {
        return { group: state.group, model: state.model, stage: state.stage[state.model],
                 image: state.src, y: state.y, x: state.x };
      }
    };
  }

  /* report.html encodes each picture once: later copies, and the explorer's photos, name the
     first (data-same, "pic") */
  function picture(k) {
    var im = k != null ? document.querySelector('img[data-pic="' + k + '"]') : null;
    return im ? im.getAttribute("src") : null;
  }
  function sharePictures() {
    var first = {};
    document.querySelectorAll("img[data-pic]").forEach(function (im) { first[im.getAttribute("data-pic")] = im; });
    document.querySelectorAll("img[data-same]").forEach(function (im) {
      var src = first[im.getAttribute("data-same")];
      if (src) im.src = src.getAttribute("src");
    });
  }

  function init() {
    sharePictures();
    setupLightbox();
    setupExplorer();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
