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
  function decodeF16(b64) {
    var bin = atob(b64);
    var n = bin.length >> 1;
    var out = new Float32Array(n);
    for (var i = 0; i < n; i++) {
      var h = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
      var s = (h & 0x8000) ? -1 : 1;
      var e = (h >> 10) & 0x1f;
      var f = h & 0x3ff;
      var v;
      if (e === 0) v = s * f * Math.pow(2, -24);
      else if (e === 31) v = f ? NaN : s * Infinity;
      else v = s * (1 + f / 1024) * Math.pow(2, e - 15);
      out[i] = v;
    }
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

    var cache = {};
    function feats(model, image) {
      var key = model + "\u0000" + image;
      if (cache[key]) return cache[key];
      var f = ((data.features || {})[model] || {})[image];
      if (!f) return null;
      var raw = decodeF16(f.b64), d = f.d, n = f.h * f.w;
      for (var i = 0; i < n; i++) {
        var s = 0;
        for (var j = 0; j < d; j++) { var v = raw[i * d + j]; s += v * v; }
        s = Math.sqrt(s) || 1;
        for (var j2 = 0; j2 < d; j2++) raw[i * d + j2] /= s;
      }
      cache[key] = { h: f.h, w: f.w, d: d, v: raw };
      return cache[key];
    }

    var state = { set: data.probes[0], model: (data.models[0] || {}).id, src: null, y: 0, x: 0 };
    var views = {};   // image id -> {wrap, canvas, cross}
    var maps = {};    // image id -> Float32Array

    function shown() { return (data.links && data.links[state.set]) || [state.set]; }

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
        wrap.setAttribute("aria-label", "Image " + id + (idx === 0 ? " (probe image)" : "") + ": use arrow keys to move the probe");
        var photo = document.createElement("img");
        photo.src = im.photo || "data:,";
        photo.alt = "Photo " + id + (im.group ? " (group " + im.group + ")" : "") + ", overlaid with the similarity map";
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
        cap.textContent = id + (idx === 0 ? " · probe image" : "");
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
      var q = feats(state.model, state.src);
      status.textContent = (labels[state.model] || state.model) +
        (data.stage && data.stage[state.model] ? " (" + data.stage[state.model] + ")" : "") +
        ", probe on " + state.src + " at row " + (state.y + 1) + ", column " + (state.x + 1) +
        (q ? " of " + q.h + "\u00d7" + q.w : "") +
        ". Similarity on screen ranges from " + fmt(lo) + " to " + fmt(hi) + ".";
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

    function selectSet(pid) {
      if (state.set !== pid || !Object.keys(views).length) {
        state.set = pid;
        build();
      }
      pressed("data-probe", pid);
    }

    function centre(id) {
      var f = feats(state.model, id);
      return f ? [Math.floor(f.h / 2), Math.floor(f.w / 2)] : [0, 0];
    }

    fig.querySelectorAll("[data-probe]").forEach(function (b) {
      b.addEventListener("click", function () {
        var pid = b.getAttribute("data-probe");
        selectSet(pid);
        var c = centre(pid);
        setProbe(pid, c[0], c[1]);
      });
    });
    fig.querySelectorAll("[data-model]").forEach(function (b) {
      if (b.tagName !== "BUTTON") return;
      b.addEventListener("click", function () {
        state.model = b.getAttribute("data-model");
        pressed("data-model", state.model);
        var f = feats(state.model, state.src);
        if (f) { state.y = Math.min(state.y, f.h - 1); state.x = Math.min(state.x, f.w - 1); }
        else { var c = centre(state.src); state.y = c[0]; state.x = c[1]; }
        setProbe(state.src, state.y, state.x);
      });
    });

    selectSet(state.set);
    var c0 = centre(state.set);
    setProbe(state.set, c0[0], c0[1]);

    window.dinoExplorer = {
      probe: function (imageId, modelId, y, x) {
        if (modelId && modelId !== state.model) { state.model = modelId; pressed("data-model", modelId); }
        if (shown().indexOf(imageId) < 0) {
          var pid = data.probes.indexOf(imageId) >= 0 ? imageId : null;
          if (!pid) Object.keys(data.links || {}).forEach(function (p) { if (!pid && data.links[p].indexOf(imageId) >= 0) pid = p; });
          if (!pid) throw new Error("unknown image " + imageId);
          selectSet(pid);
        }
        setProbe(imageId, y, x);
      },
      map: function (imageId) { return maps[imageId] || null; },
      state: function () { return { set: state.set, model: state.model, image: state.src, y: state.y, x: state.x }; }
    };
  }

  function init() {
    setupLightbox();
    setupExplorer();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
