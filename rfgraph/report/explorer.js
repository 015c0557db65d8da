/* rfgraph explorer: the interactive page written by rfgraph.report.to_html.
 *
 * The data is the JSON in <script id="rf-data"> (rfgraph/report/html.py, page_data).
 * Every box is computed here from a node's exact window maps, one per input axis:
 *   periodic-affine {period: T, advance: M, table: [...]}:  f(u) = table[u mod T] + M * floor(u / T)
 *   finite {finite: [...]} (a map stored exactly over [0, n)): f(u) = finite[u]
 * The box of unit u along an axis is [lo(u), hi(u)], in input pixels, unclipped.
 *
 * State lives in the URL fragment: #node=NAME&unit=I,J (NAME: node, fx node or module name).
 * Under node (no document) this file only exports the evaluator, for tests.
 */
(function (root) {
  "use strict";

  // ---- exact window maps ---------------------------------------------------------------------

  /** f(u) for one window map; integers only, exact while values stay below 2^53. */
  function evalMap(m, u) {
    if (!Number.isInteger(u)) throw new RangeError("unit index must be an integer, got " + u);
    if (m.finite) {
      if (u < 0 || u >= m.finite.length) {
        throw new RangeError("unit " + u + " is outside the finite map [0, " + m.finite.length + ")");
      }
      return m.finite[u];
    }
    const T = m.period;
    const r = ((u % T) + T) % T; // u mod T, in [0, T) also for negative u
    return m.table[r] + m.advance * ((u - r) / T); // (u - r) / T is floor(u / T), an exact division
  }

  /** Unclipped box of `unit` (one index per input axis): [{lo, hi} | null (not local), ...]. */
  function unitBox(node, unit) {
    return node.lo.map(function (lo, a) {
      const hi = node.hi[a];
      if (!lo || !hi) return null;
      const l = evalMap(lo, unit[a]), h = evalMap(hi, unit[a]);
      return l === null || h === null ? { lo: null, hi: null, empty: true } : { lo: l, hi: h }; // null: reads nothing
    });
  }

  /** The box intersected with the input [0, size): null on an axis where it sees only padding. */
  function clipBox(box, sizes) {
    return box.map(function (b, a) {
      if (!b) return { lo: 0, hi: sizes[a] - 1 };
      if (b.empty) return null;
      const lo = Math.max(b.lo, 0);
      const hi = Math.min(b.hi, sizes[a] - 1);
      return lo <= hi ? { lo: lo, hi: hi } : null;
    });
  }

  /** "[lo, hi] x [lo, hi]"; "global" on a non-local axis, "none" for an empty clip. */
  function formatBox(box, empty) {
    return box.map(function (b) {
      if (b && b.empty) return "nothing";
      return b ? "[" + b.lo + ", " + b.hi + "]" : empty || "global";
    }).join(" x ");
  }

  /** (lo + hi) / 2 as text: an integer or a half-integer. */
  function half(sum) {
    return sum % 2 === 0 ? String(sum / 2) : (sum / 2).toFixed(1);
  }

  /** Smallest lo and largest hi over all units of a node along one axis (maps need not be monotone). */
  function axisRange(node, a) {
    const lo = node.lo[a], hi = node.hi[a];
    if (!lo || !hi) return null;
    let min = Infinity, max = -Infinity;
    for (let u = 0; u < node.n[a]; u++) {
      const l = evalMap(lo, u), h = evalMap(hi, u);
      if (l === null || h === null) continue; // a unit that reads nothing
      min = Math.min(min, l);
      max = Math.max(max, h);
    }
    return { lo: min, hi: max };
  }

  const api = { evalMap: evalMap, unitBox: unitBox, clipBox: clipBox, formatBox: formatBox, axisRange: axisRange };
  if (typeof module === "object" && module.exports) {
    module.exports = api;
    return;
  }
  root.rfgraph = api;
  if (typeof document === "undefined") return;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  // ---- the page ------------------------------------------------------------------------------

  function start() {
    const D = JSON.parse(document.getElementById("rf-data").textContent);
    const nodes = D.nodes;
    const ndim = D.input_shape.length - 2;
    const sizes = D.input_shape.slice(2);
    const byName = new Map(nodes.map(function (n, i) { return [n.name, i]; }));
    const erfByNode = new Map(D.erf.map(function (e) { return [e.node, e]; }));
    const COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#e377c2", "#17becf", "#8c564b", "#bcbd22"];
    const $ = function (id) { return document.getElementById(id); };
    // Displayed axes: x is the last input axis, y the one before; a 3-D input is cut along axis 0.
    const xa = ndim - 1;
    const ya = ndim >= 2 ? ndim - 2 : null;
    const za = ndim === 3 ? 0 : null;

    const S = { node: null, unit: null, hover: null, inSlice: null, image: D.image, sortKey: "i", sortDir: 1 };
    root.rfgraph.state = S;
    root.rfgraph.data = D;

    // -- helpers --
    function esc(s) {
      return String(s).replace(/[&<>"']/g, function (c) {
        return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
      });
    }
    function frac(s) {
      if (s === null || s === undefined) return NaN;
      const p = String(s).split("/");
      return p.length === 2 ? Number(p[0]) / Number(p[1]) : Number(p[0]);
    }
    function cell(n, a, v) {
      if (v !== null && v !== undefined) return String(v);
      if (n.source === "unknown") return "?";
      if (n.global[a]) return "global";
      return "-";
    }
    /** One value when all axes agree, else "11 x 7" (as the terminal table). */
    function axes(n, key) {
      const cells = n[key].map(function (v, a) { return cell(n, a, v); });
      if (!cells.length) return "-";
      return cells.every(function (c) { return c === cells[0]; }) ? cells[0] : cells.join(" x ");
    }
    function isLocal(n) {
      return (n.source === "symbolic" || n.source === "probed") && n.lo.some(function (m) { return m !== null; });
    }
    function isGlobal(n) {
      return (n.source === "symbolic" || n.source === "probed") && n.rf.length > 0 && n.global.every(Boolean);
    }
    function maxOf(values) {
      let best = null;
      values.forEach(function (v) { if (v !== null && v !== undefined && !isNaN(v) && (best === null || v > best)) best = v; });
      return best;
    }
    function resolve(name) {
      if (byName.has(name)) return byName.get(name);
      if (D.aliases[name] !== undefined) return byName.get(D.aliases[name]);
      return null;
    }
    function defaultUnit(n) { return n.n.map(function (k) { return Math.floor(k / 2); }); }
    function message(text) { $("rf-message").textContent = text || ""; }
    function svgPoint(svg, evt, w, h) {
      const r = svg.getBoundingClientRect();
      return { x: (evt.clientX - r.left) / r.width * w, y: (evt.clientY - r.top) / r.height * h };
    }

    // -- header --
    function renderHeader() {
      const c = D.counts;
      const chips = Object.keys(c).filter(function (k) { return c[k]; }).map(function (k) {
        return '<span class="chip src-' + k + '">' + k + " " + c[k] + "</span>";
      }).join(" ");
      let h = '<h1>rfgraph explorer <span class="model">' + esc(D.model) + "</span></h1>" +
        '<div class="rf-summary">input ' + D.input_shape.join("x") + " (" + (D.axes.join(", ") || "no spatial axis") +
        ") &middot; " + nodes.length + " nodes: " + chips + "</div>";
      const ops = Object.keys(D.unknown_ops);
      if (ops.length) {
        h += '<div class="rf-warn">no rule for ' + ops.map(function (o) { return esc(o) + " (x" + D.unknown_ops[o] + ")"; }).join(", ") + "</div>";
      }
      if (D.warnings.length) {
        const items = D.warnings.slice(0, 40).map(function (w) {
          return '<li><span class="flag f-' + w.kind + '">' + w.kind + '</span> <a href="#" data-node="' + esc(w.node) + '">' +
            esc(w.node) + "</a> " + esc(w.text) + "</li>";
        });
        if (D.warnings.length > 40) items.push("<li>... " + (D.warnings.length - 40) + " more (filter the table by flag)</li>");
        h += '<details class="rf-warn"><summary>' + D.warnings.length + " warning(s)</summary><ul>" + items.join("") + "</ul></details>";
      }
      $("rf-header").innerHTML = h;
      $("rf-header").addEventListener("click", function (evt) {
        const t = evt.target.closest("[data-node]");
        if (!t) return;
        evt.preventDefault();
        select(byName.get(t.dataset.node), null);
      });
    }

    // -- table --
    const COLUMNS = [
      ["i", "#"], ["name", "node"], ["op", "op"], ["shape", "shape"], ["rf", "rf"],
      ["stride", "stride"], ["start", "start"], ["source", "source, flags"],
    ];
    function sortValue(n, i, key) {
      if (key === "i") return i;
      if (key === "name" || key === "op") return n[key];
      if (key === "source") return (isGlobal(n) ? "global" : n.source) + " " + n.flags.join(" ");
      if (key === "shape") return n.shape ? n.shape.reduce(function (p, v) { return p * v; }, 1) : -1;
      const vals = n[key].map(frac);
      const best = maxOf(vals);
      if (best !== null) return best;
      return isGlobal(n) ? Infinity : -Infinity;
    }
    function matches(n, text, flag) {
      if (text) {
        const t = text.toLowerCase();
        if (n.name.toLowerCase().indexOf(t) < 0 && n.op.toLowerCase().indexOf(t) < 0 &&
            (n.module || "").toLowerCase().indexOf(t) < 0) return false;
      }
      if (!flag) return true;
      if (flag === "local") return isLocal(n) && !isGlobal(n);
      if (flag === "global") return isGlobal(n);
      if (flag === "flagged") return n.flags.length > 0;
      if (flag === "misaligned") return n.shift !== undefined;
      if (flag === "global-context") return !!n.context;
      return n.source === flag && !isGlobal(n);
    }
    function renderTable() {
      $("rf-table").tHead.innerHTML = "<tr>" + COLUMNS.map(function (c) {
        const mark = S.sortKey === c[0] ? (S.sortDir > 0 ? " &#9650;" : " &#9660;") : "";
        return '<th data-key="' + c[0] + '" title="sort by ' + c[1] + '">' + c[1] + mark + "</th>";
      }).join("") + "</tr>";
      const text = $("rf-filter").value.trim();
      const flag = $("rf-flag").value;
      const order = [];
      nodes.forEach(function (n, i) { if (matches(n, text, flag)) order.push(i); });
      order.sort(function (i, j) {
        const a = sortValue(nodes[i], i, S.sortKey), b = sortValue(nodes[j], j, S.sortKey);
        if (a === b) return i - j;
        return (a < b ? -1 : 1) * S.sortDir;
      });
      $("rf-table").tBodies[0].innerHTML = order.map(function (i) {
        const n = nodes[i];
        const src = isGlobal(n) ? "global" : n.source;
        const fl = n.flags.filter(function (f) { return f !== n.source; }).map(function (f) {
          return '<span class="flag f-' + f.split(/[ :]/)[0] + '" title="' + esc(f) + '">' + esc(f.split(":")[0]) + "</span>";
        }).join(" ");
        return '<tr data-i="' + i + '"' + (i === S.node ? ' class="sel"' : "") + "><td>" + i + '</td><td class="nm" title="' +
          esc(n.module || "") + '">' + esc(n.name) + "</td><td>" + esc(n.op) + "</td><td>" + (n.shape ? n.shape.join("x") : "-") +
          "</td><td>" + axes(n, "rf") + "</td><td>" + axes(n, "stride") + "</td><td>" + axes(n, "start") +
          '</td><td><span class="src-' + src + '">' + src + "</span> " + fl + "</td></tr>";
      }).join("");
      $("rf-count").textContent = order.length + " / " + nodes.length;
    }
    function markRow() {
      const body = $("rf-table").tBodies[0];
      const old = body.querySelector("tr.sel");
      if (old) old.classList.remove("sel");
      const row = body.querySelector('tr[data-i="' + S.node + '"]');
      if (!row) return;
      row.classList.add("sel");
      const wrap = row.closest(".rf-table-wrap");
      const top = row.offsetTop - wrap.clientHeight / 3;
      if (row.offsetTop < wrap.scrollTop + 24 || row.offsetTop > wrap.scrollTop + wrap.clientHeight - 24) wrap.scrollTop = top;
    }

    // -- depth chart --
    const CW = 760, CH = 150, CL = 46, CR = 10, CT = 12, CB = 22;
    function renderChart() {
      const svg = $("rf-chart");
      svg.setAttribute("viewBox", "0 0 " + CW + " " + CH);
      const pts = nodes.map(function (n) {
        if (!isLocal(n) || isGlobal(n)) return null;
        return { rf: maxOf(n.rf), pm: maxOf(n.rf_path_min), st: maxOf(n.stride.map(frac)) };
      });
      let lo = 1, hi = 2;
      pts.forEach(function (p) {
        if (!p) return;
        [p.rf, p.pm, p.st].forEach(function (v) { if (v !== null && v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
      });
      const l0 = Math.log10(lo), l1 = Math.log10(hi) + 0.05;
      const X = function (i) { return CL + (CW - CL - CR) * (nodes.length > 1 ? i / (nodes.length - 1) : 0.5); };
      const Y = function (v) { return CT + (CH - CT - CB) * (1 - (Math.log10(v) - l0) / (l1 - l0)); };
      let s = "";
      for (let e = Math.floor(l0); e <= Math.ceil(l1); e++) {
        [1, 2, 5].forEach(function (m) {
          const v = m * Math.pow(10, e);
          if (v < lo * 0.999 || v > Math.pow(10, l1)) return;
          s += '<line class="tick" x1="' + CL + '" x2="' + (CW - CR) + '" y1="' + Y(v) + '" y2="' + Y(v) + '"/>' +
            '<text class="tl" x="' + (CL - 4) + '" y="' + (Y(v) + 3) + '">' + v + "</text>";
        });
      }
      function line(key, cls) {
        let d = "", pen = "M";
        pts.forEach(function (p, i) {
          if (!p || p[key] === null || !(p[key] > 0)) { pen = "M"; return; }
          d += pen + X(i).toFixed(1) + " " + Y(p[key]).toFixed(1) + " ";
          pen = "L";
        });
        return '<path class="' + cls + '" d="' + d + '"/>';
      }
      s += line("pm", "c-pm") + line("st", "c-st") + line("rf", "c-rf");
      nodes.forEach(function (n, i) {
        if (isGlobal(n)) s += '<rect class="m-global" x="' + (X(i) - 1) + '" y="' + CT + '" width="2" height="6"/>';
        if (n.source === "unknown") s += '<rect class="m-unknown" x="' + (X(i) - 1) + '" y="' + CT + '" width="2" height="6"/>';
      });
      s += '<text class="axis-label" x="' + CL + '" y="' + (CH - 6) + '">depth (graph order) &#8594;</text>' +
        '<g class="legend" transform="translate(' + (CW - 290) + "," + (CH - 8) + ')">' +
        '<path class="c-rf" d="M0 -3 H18"/><text x="22" y="0">rf</text>' +
        '<path class="c-pm" d="M44 -3 H62"/><text x="66" y="0">smallest path</text>' +
        '<path class="c-st" d="M150 -3 H168"/><text x="172" y="0">stride</text>' +
        '<rect class="m-global" x="214" y="-8" width="2" height="6"/><text x="220" y="0">global</text></g>' +
        '<line id="rf-chart-sel" class="sel" y1="' + CT + '" y2="' + (CH - CB) + '"/>' +
        '<line id="rf-chart-hov" class="hov" y1="' + CT + '" y2="' + (CH - CB) + '" visibility="hidden"/>' +
        '<text id="rf-chart-tip" class="tip" x="' + (CL + 6) + '" y="' + (CT + 16) + '"></text>' +
        '<rect id="rf-chart-hit" x="' + CL + '" y="0" width="' + (CW - CL - CR) + '" height="' + CH + '" fill="transparent"/>';
      svg.innerHTML = s;
      const pick = function (evt) {
        const p = svgPoint(svg, evt, CW, CH);
        const i = Math.round((p.x - CL) / (CW - CL - CR) * (nodes.length - 1));
        return Math.max(0, Math.min(nodes.length - 1, i));
      };
      const hit = $("rf-chart-hit");
      hit.addEventListener("mousemove", function (evt) {
        const i = pick(evt), n = nodes[i];
        const hov = $("rf-chart-hov");
        hov.setAttribute("x1", X(i)); hov.setAttribute("x2", X(i)); hov.setAttribute("visibility", "visible");
        $("rf-chart-tip").textContent = n.name + "  (" + n.op + ")  rf " + axes(n, "rf") + "  stride " + axes(n, "stride");
      });
      hit.addEventListener("mouseleave", function () {
        $("rf-chart-hov").setAttribute("visibility", "hidden");
        $("rf-chart-tip").textContent = "";
      });
      hit.addEventListener("click", function (evt) { select(pick(evt), null); });
      root.rfgraph.chartX = X;
    }
    function markChart() {
      const x = root.rfgraph.chartX(S.node);
      const l = $("rf-chart-sel");
      l.setAttribute("x1", x); l.setAttribute("x2", x);
    }

    // -- the viewer: output units (left) and the input plane (right) --
    const V = {}; // geometry of the current node's views
    function renderViewer() {
      const n = nodes[S.node];
      const grid = $("rf-grid"), inp = $("rf-input");
      V.local = isLocal(n) && ndim > 0;
      V.merge = V.local ? mergeFor(n) : null;
      $("rf-out-slice").hidden = true;
      $("rf-in-slice").hidden = true;
      if (!V.local) {
        grid.innerHTML = ""; grid.setAttribute("width", 0); grid.setAttribute("height", 0);
        $("rf-grid-size").textContent = "";
        V.nx = V.ny = 1;
      }
      // Input plane: extent covers the input and every unit's box, so hovering never rescales it.
      const NX = ndim ? sizes[xa] : 1;
      const NY = ya !== null ? sizes[ya] : Math.max(6, Math.round(NX / 14));
      V.NX = NX; V.NY = NY;
      let x0 = 0, x1 = NX, y0 = 0, y1 = NY;
      if (V.local) {
        const rx = axisRange(n, xa);
        if (rx) { x0 = Math.min(x0, rx.lo); x1 = Math.max(x1, rx.hi + 1); }
        const ry = ya !== null ? axisRange(n, ya) : null;
        if (ry) { y0 = Math.min(y0, ry.lo); y1 = Math.max(y1, ry.hi + 1); }
      }
      const mx = (x1 - x0) * 0.03, my = ya !== null ? (y1 - y0) * 0.03 : NY * 0.3;
      V.vb = [x0 - mx, y0 - my, x1 - x0 + 2 * mx, y1 - y0 + 2 * my];
      const maxW = 440, maxH = ya !== null ? 380 : 160;
      let scale = Math.min(maxW / V.vb[2], maxH / V.vb[3]);
      V.scale = scale;
      inp.setAttribute("viewBox", V.vb.join(" "));
      inp.setAttribute("width", Math.round(V.vb[2] * scale));
      inp.setAttribute("height", Math.round(V.vb[3] * scale));
      $("rf-input-size").textContent = sizes.join(" x ") + (za !== null ? " (slices along " + D.axes[0] + ")" : "");
      let s = '<defs><pattern id="rf-hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="scale(' +
        (1 / scale) + ') rotate(45)"><rect width="8" height="8" fill="#f3f3f3"/><line x1="0" y1="0" x2="0" y2="8" stroke="#d8d8d8" stroke-width="3"/></pattern></defs>' +
        '<rect x="' + V.vb[0] + '" y="' + V.vb[1] + '" width="' + V.vb[2] + '" height="' + V.vb[3] + '" fill="url(#rf-hatch)"/>' +
        '<rect class="input-bg" x="0" y="0" width="' + NX + '" height="' + NY + '"/>';
      if (S.image && ndim >= 2) {
        s += '<image id="rf-image" href="' + S.image + '" x="0" y="0" width="' + NX + '" height="' + NY + '" preserveAspectRatio="none"/>';
      } else {
        let k = 1;
        while (k * scale < 8) k *= 2;
        let d = "";
        for (let x = 0; x <= NX; x += k) d += "M" + x + " 0V" + NY;
        if (ya !== null) for (let y = 0; y <= NY; y += k) d += "M0 " + y + "H" + NX;
        s += '<path class="pixgrid" d="' + d + '"/>';
        V.gridStep = k;
      }
      s += '<rect class="input-edge" x="0" y="0" width="' + NX + '" height="' + NY + '"/>' +
        '<g id="rf-erf"></g><g id="rf-pathboxes"></g><g id="rf-boxes"></g>';
      inp.innerHTML = s;
      if (!V.local) return;

      // Output units: one cell per unit, x = last axis, y = the one before (a strip for 1-D).
      const nx = n.n[xa], ny = ya !== null ? n.n[ya] : 1;
      V.nx = nx; V.ny = ny;
      const cellPx = Math.min(24, 240 / Math.max(nx, ny)); // at most 240 px wide, however many units
      const gw = Math.max(60, Math.round(nx * cellPx)), gh = ya !== null ? Math.max(8, Math.round(ny * cellPx)) : 28;
      grid.setAttribute("viewBox", "0 0 " + nx + " " + ny);
      grid.setAttribute("preserveAspectRatio", "none");
      grid.setAttribute("width", gw); grid.setAttribute("height", gh);
      $("rf-grid-size").textContent = n.n.join(" x ");
      let g = '<rect class="grid-bg" x="0" y="0" width="' + nx + '" height="' + ny + '"/>';
      // Units whose box reaches into padding, per displayed axis.
      function padRuns(a, count, vertical) {
        let out = "", run = -1;
        const sz = sizes[a];
        for (let u = 0; u <= count; u++) {
          const pad = u < count && n.lo[a] && (evalMap(n.lo[a], u) < 0 || evalMap(n.hi[a], u) > sz - 1);
          if (pad && run < 0) run = u;
          if (!pad && run >= 0) {
            out += vertical ? '<rect class="padunit" x="0" y="' + run + '" width="' + nx + '" height="' + (u - run) + '"/>'
              : '<rect class="padunit" x="' + run + '" y="0" width="' + (u - run) + '" height="' + ny + '"/>';
            run = -1;
          }
        }
        return out;
      }
      g += padRuns(xa, nx, false);
      if (ya !== null) g += padRuns(ya, ny, true);
      if (cellPx >= 5) {
        let d = "";
        for (let x = 0; x <= nx; x++) d += "M" + x + " 0V" + ny;
        for (let y = 0; y <= ny; y++) d += "M0 " + y + "H" + nx;
        g += '<path class="cellgrid" d="' + d + '"/>';
      }
      g += '<rect id="rf-cell-sel" class="cell-sel" width="1" height="1"/><rect id="rf-cell-hov" class="cell-hov" width="1" height="1" visibility="hidden"/>';
      grid.innerHTML = g;
      if (za !== null) {
        slider("rf-in-slice", "input " + D.axes[za], sizes[za], 0, function (v) { S.inSlice = v; update(); });
        slider("rf-out-slice", "unit " + D.axes[0], n.n[0], S.unit[0], function (v) { S.unit[0] = v; S.inSlice = null; writeHash(); update(); });
      }
    }

    function slider(id, label, count, value, onInput) {
      const box = $(id);
      box.hidden = false;
      box.innerHTML = "<label>" + label + ' <input type="range" min="0" max="' + (count - 1) + '" value="' + value + '"> <output>' +
        value + "</output> / " + (count - 1) + "</label>";
      const input = box.querySelector("input");
      input.addEventListener("input", function () {
        box.querySelector("output").textContent = input.value;
        onInput(Number(input.value));
      });
    }

    function rect(cls, b, extra) {
      // b: {x0, x1, y0, y1} in pixel indices (inclusive); pixel i spans [i, i + 1).
      return '<rect class="' + cls + '" x="' + b.x0 + '" y="' + b.y0 + '" width="' + (b.x1 - b.x0 + 1) + '" height="' +
        (b.y1 - b.y0 + 1) + '"' + (extra || "") + "/>";
    }
    function planeBox(box, inset) {
      // The box on the displayed plane; a non-local axis covers the whole input. 1-D: the full strip height.
      const bx = box[xa] || { lo: 0, hi: V.NX - 1 };
      const by = ya !== null ? box[ya] || { lo: 0, hi: V.NY - 1 } : { lo: 0, hi: V.NY - 1 };
      const k = inset || 0;
      return { x0: bx.lo, x1: bx.hi, y0: by.lo + k, y1: by.hi - k };
    }

    /** Redraw the box, centre, paths, ERF and the texts for the shown unit (hovered, else selected). */
    function update() {
      const n = nodes[S.node];
      const rfMin = axes(n, "rf_min") !== axes(n, "rf") ? " (min " + axes(n, "rf_min") + ")" : "";
      $("rf-node").innerHTML = '<span class="nm">' + esc(n.name) + '</span> <span class="kv">rf <b>' + axes(n, "rf") +
        "</b>" + rfMin + '</span> <span class="kv">stride <b>' + axes(n, "stride") + '</b></span> <span class="kv">start <b>' +
        axes(n, "start") + "</b></span>" + ' <span class="op">' + esc(n.op) + (n.shape ? " " + n.shape.join("x") : "") +
        (n.flags.length ? " &middot; " + esc(n.flags.join(", ")) : "") + "</span>";
      if (!V.local) {
        $("rf-detail-wrap").hidden = true;
        $("rf-unit").textContent = "-";
        $("rf-box").textContent = n.source === "unknown" ? "unknown" : (isGlobal(n) ? formatBox(n.lo.map(function () { return null; })) : "-");
        $("rf-clipped").textContent = "-";
        $("rf-centre").textContent = "-";
        $("rf-paths").innerHTML = "";
        $("rf-legend").textContent = n.source === "unknown" ? "unknown: " + (n.reason || "no rule") :
          (isGlobal(n) ? "global: every unit sees the whole input" : "no spatial axis");
        return;
      }
      const unit = S.hover || S.unit;
      const box = unitBox(n, unit);
      const clipped = clipBox(box, sizes);
      $("rf-unit").textContent = "(" + unit.join(", ") + ") of " + n.n.join(" x ") + (S.hover ? " (hover; click to keep)" : "");
      $("rf-box").textContent = formatBox(box);
      $("rf-clipped").textContent = formatBox(clipped, "none");
      $("rf-centre").textContent = "(" + box.map(function (b) { return b ? half(b.lo + b.hi) : "-"; }).join(", ") + ")";
      // output cell marks
      const cs = $("rf-cell-sel"), ch = $("rf-cell-hov");
      cs.setAttribute("x", S.unit[xa]); cs.setAttribute("y", ya !== null ? S.unit[ya] : 0);
      if (S.hover) {
        ch.setAttribute("x", S.hover[xa]); ch.setAttribute("y", ya !== null ? S.hover[ya] : 0); ch.setAttribute("visibility", "visible");
      } else ch.setAttribute("visibility", "hidden");
      // 3-D: the input slice follows the box centre unless the slider moved it.
      let inSlice = true;
      if (za !== null) {
        const bz = box[za];
        if (S.inSlice === null) S.inSlice = bz ? Math.max(0, Math.min(sizes[za] - 1, Math.floor((bz.lo + bz.hi) / 2))) : 0;
        inSlice = !bz || (S.inSlice >= bz.lo && S.inSlice <= bz.hi);
        const box3 = $("rf-in-slice");
        box3.querySelector("input").value = S.inSlice;
        box3.querySelector("output").textContent = S.inSlice;
      }
      // paths at merges: each operand's box of the same unit
      const paths = mergePaths(unit);
      let pb = "", pt = "";
      paths.forEach(function (p, k) {
        const color = COLORS[k % COLORS.length];
        if (p.box) {
          pb += rect("pathbox", planeBox(p.box), ' stroke="' + color + '"');
          pt += '<div class="path"><span class="sw" style="border-color:' + color + '"></span><a href="#" data-i="' + p.i + '">' +
            esc(p.name) + "</a> " + formatBox(p.box) + "</div>";
        } else {
          pt += '<div class="path"><span class="sw none"></span><a href="#" data-i="' + p.i + '">' + esc(p.name) + "</a> " + esc(p.why) + "</div>";
        }
      });
      $("rf-pathboxes").innerHTML = pb;
      const title = !paths.length ? "" : V.merge === n ? "paths into this merge (same unit)" :
        'paths into <a href="#" data-i="' + nodes.indexOf(V.merge) + '">' + esc(V.merge.name) + "</a>, which this node copies unit by unit";
      $("rf-paths").innerHTML = paths.length ? '<div class="rf-key">' + title + "</div>" + pt : "";
      // the box itself
      let s = "";
      const pbx = planeBox(box);
      s += rect("box-unclipped" + (inSlice ? "" : " off"), pbx);
      if (clipped.every(Boolean)) s += rect("box-clipped" + (inSlice ? "" : " off"), planeBox(clipped));
      const cx = box[xa] ? (box[xa].lo + box[xa].hi + 1) / 2 : V.NX / 2;
      const cy = ya !== null ? (box[ya] ? (box[ya].lo + box[ya].hi + 1) / 2 : V.NY / 2) : V.NY / 2;
      const r = 5 / V.scale;
      s += '<path class="centre" d="M' + (cx - r) + " " + cy + "H" + (cx + r) + "M" + cx + " " + (cy - r) + "V" + (cy + r) + '"/>';
      $("rf-boxes").innerHTML = s;
      drawErf(n, box);
      if (ndim === 1) drawDetail(box[0], clipped[0]);
      legend(n, paths, inSlice, box);
    }

    /** 1-D: the box at sample resolution, with half its width of context on each side. */
    function drawDetail(b, c) {
      const wrap = $("rf-detail-wrap"), svg = $("rf-detail");
      wrap.hidden = !b;
      if (!b) return;
      const pad = Math.max(4, Math.ceil((b.hi - b.lo + 1) / 2));
      const lo = b.lo - pad, hi = b.hi + pad, N = sizes[0];
      svg.setAttribute("viewBox", lo + " 0 " + (hi - lo + 1) + " 1");
      svg.setAttribute("width", 440);
      svg.setAttribute("height", 34);
      let s = '<rect class="pad" x="' + lo + '" y="0" width="' + (hi - lo + 1) + '" height="1"/>';
      const x0 = Math.max(lo, 0), x1 = Math.min(hi + 1, N);
      if (x0 < x1) s += '<rect class="in" x="' + x0 + '" y="0" width="' + (x1 - x0) + '" height="1"/>';
      if (440 / (hi - lo + 1) >= 4) {
        let d = "";
        for (let x = lo; x <= hi + 1; x++) d += "M" + x + " 0V1";
        s += '<path class="ticks" d="' + d + '"/>';
      }
      if (c) s += '<rect class="box-clipped" x="' + c.lo + '" y="0" width="' + (c.hi - c.lo + 1) + '" height="1"/>';
      s += '<rect class="box-unclipped" x="' + b.lo + '" y="0" width="' + (b.hi - b.lo + 1) + '" height="1"/>' +
        '<path class="centre" d="M' + ((b.lo + b.hi + 1) / 2) + ' 0V1"/>';
      svg.innerHTML = s;
      $("rf-detail-range").textContent = "samples " + lo + " .. " + hi;
    }

    /** The merge whose paths a node shows: itself, or the merge it copies unit by unit (a ReLU after an add). */
    function mergeFor(n) {
      let m = n;
      const same = function (a, b) { return JSON.stringify([a.n, a.lo, a.hi]) === JSON.stringify([b.n, b.lo, b.hi]); };
      for (let step = 0; step < 16 && m.inputs.length === 1; step++) {
        const o = nodes[m.inputs[0]];
        if (!same(o, m)) return null;
        m = o;
      }
      return m.inputs.length >= 2 ? m : null;
    }

    /** Each operand's box of the same unit, at the merge `V.merge`. */
    function mergePaths(unit) {
      const m = V.merge;
      if (!m) return [];
      return m.inputs.map(function (i) {
        const o = nodes[i];
        const p = { i: i, name: o.name, box: null, why: "" };
        if (!isLocal(o)) p.why = isGlobal(o) ? "global (context path)" : o.source;
        else if (o.n.some(function (k, a) { return k !== m.n[a] && m.lo[a]; })) {
          p.why = o.n.every(function (k) { return k === 1; }) ? "broadcast from size 1 (context path)" : "other size (" + o.n.join(" x ") + "): units differ";
        } else p.box = unitBox(o, unit);
        return p;
      });
    }

    function drawErf(n, box) {
      const e = erfByNode.get(n.name);
      const g = $("rf-erf");
      if (!e) { g.innerHTML = ""; return; }
      // Drawn shifted from the measured unit's box to the shown unit's box.
      function place(a) {
        const shift = box[a] && e.box[a] ? box[a].lo - e.box[a][0] : 0;
        return { lo: e.crop[a][0] + shift, hi: e.crop[a][1] + shift };
      }
      const bx = place(xa);
      const by = ya !== null ? place(ya) : { lo: 0, hi: V.NY - 1 };
      g.innerHTML = '<image class="erf" href="' + e.png + '" x="' + bx.lo + '" y="' + by.lo + '" width="' + (bx.hi - bx.lo + 1) +
        '" height="' + (by.hi - by.lo + 1) + '" preserveAspectRatio="none"/>';
    }

    function legend(n, paths, inSlice, box) {
      let s = '<span class="lg"><span class="sw clipped"></span>clipped box</span> <span class="lg"><span class="sw unclipped"></span>unclipped box</span>' +
        ' <span class="lg">+ centre</span> <span class="lg"><span class="sw padding"></span>padding</span>';
      if (paths.some(function (p) { return p.box; })) s += ' <span class="lg">coloured: one box per path</span>';
      const e = erfByNode.get(n.name);
      if (e) {
        s += '<div>heat map: ERF of unit (' + e.unit.join(", ") + ") over " + e.samples + " samples at input " + e.size.join(" x ") +
          (e.projected ? ", summed over " + D.axes[0] : "") + ", drawn shifted to the shown unit's box" + (e.note ? "; " + esc(e.note) : "") + "</div>";
      } else if (D.erf.length) {
        s += "<div>ERF computed for: " + D.erf.map(function (x) { return esc(x.node); }).join(", ") + "</div>";
      }
      if (za !== null && !inSlice) s += "<div>the box does not reach input " + D.axes[za] + " = " + S.inSlice + " (" + D.axes[za] + " range " + formatBox([box[za]]) + ")</div>";
      if (S.imageNote) s += "<div>" + esc(S.imageNote) + "</div>";
      $("rf-legend").innerHTML = s;
    }

    // -- selection and the URL fragment --
    function select(i, unit, fromHash) {
      if (i === null || i === undefined) return;
      const n = nodes[i];
      const changed = i !== S.node;
      S.node = i;
      S.hover = null;
      if (changed) S.inSlice = null;
      const fits = function (u) {
        return u && u.length === n.n.length && u.every(function (v, a) { return Number.isInteger(v) && v >= 0 && v < n.n[a]; });
      };
      S.unit = fits(unit) ? unit : (changed || !fits(S.unit) ? defaultUnit(n) : S.unit);
      if (changed) { renderViewer(); markRow(); markChart(); }
      if (!fromHash) { writeHash(); message(""); }
      update();
    }
    function writeHash() {
      const n = nodes[S.node];
      const h = "#node=" + encodeURIComponent(n.name) + (isLocal(n) ? "&unit=" + S.unit.join(",") : "");
      try {
        if (location.hash !== h) history.replaceState(null, "", h);
      } catch (err) {
        // a sandboxed notebook frame may refuse: the state then lives in the page only
      }
    }
    function applyHash() {
      const p = new URLSearchParams(location.hash.replace(/^#/, ""));
      message("");
      const name = p.get("node");
      if (!name) return false;
      const i = resolve(name);
      if (i === null || i === undefined) { message("node '" + name + "' is not in this model"); return false; }
      const n = nodes[i];
      let unit = null;
      const text = p.get("unit");
      if (text && isLocal(n)) {
        const u = text.split(",").map(function (v) { return Number(v.trim()); });
        const ok = u.length === n.n.length && u.every(function (v, a) { return Number.isInteger(v) && v >= 0 && v < n.n[a]; });
        if (ok) unit = u;
        else message("unit (" + text + ") is outside node " + n.name + " (" + n.n.join(" x ") + " units): showing the centre unit");
      }
      S.node = null; // redraw everything, sliders included
      select(i, unit, true);
      return true;
    }

    // -- events --
    function unitAt(evt) {
      const p = svgPoint($("rf-grid"), evt, V.nx, V.ny);
      const u = S.unit.slice();
      u[xa] = Math.max(0, Math.min(V.nx - 1, Math.floor(p.x)));
      if (ya !== null) u[ya] = Math.max(0, Math.min(V.ny - 1, Math.floor(p.y)));
      return u;
    }
    function wire() {
      $("rf-filter").addEventListener("input", renderTable);
      $("rf-flag").addEventListener("change", renderTable);
      $("rf-table").tHead.addEventListener("click", function (evt) {
        const th = evt.target.closest("th");
        if (!th) return;
        const key = th.dataset.key;
        S.sortDir = S.sortKey === key ? -S.sortDir : 1;
        S.sortKey = key;
        renderTable();
      });
      $("rf-table").tBodies[0].addEventListener("click", function (evt) {
        const tr = evt.target.closest("tr");
        if (tr) select(Number(tr.dataset.i), null);
      });
      const grid = $("rf-grid");
      grid.setAttribute("tabindex", "0");
      grid.addEventListener("mousemove", function (evt) {
        if (!V.local) return;
        S.hover = unitAt(evt);
        update();
      });
      grid.addEventListener("mouseleave", function () {
        if (!V.local) return;
        S.hover = null;
        update();
      });
      grid.addEventListener("click", function (evt) {
        if (!V.local) return;
        S.unit = unitAt(evt);
        S.hover = null;
        S.inSlice = null;
        writeHash();
        update();
      });
      grid.addEventListener("keydown", function (evt) {
        if (!V.local) return;
        const step = { ArrowLeft: [xa, -1], ArrowRight: [xa, 1], ArrowUp: [ya, -1], ArrowDown: [ya, 1] }[evt.key];
        if (!step || step[0] === null) return;
        evt.preventDefault();
        const n = nodes[S.node];
        S.unit[step[0]] = Math.max(0, Math.min(n.n[step[0]] - 1, S.unit[step[0]] + step[1]));
        S.inSlice = null;
        writeHash();
        update();
      });
      // A click on the input plane selects the unit whose box centre is nearest, per axis.
      $("rf-input").addEventListener("click", function (evt) {
        if (!V.local) return;
        const n = nodes[S.node];
        const p = svgPoint($("rf-input"), evt, V.vb[2], V.vb[3]);
        const at = [];
        at[xa] = V.vb[0] + p.x;
        if (ya !== null) at[ya] = V.vb[1] + p.y;
        const u = S.unit.slice();
        [xa, ya].forEach(function (a) {
          if (a === null || !n.lo[a]) return;
          let best = u[a], dist = Infinity;
          for (let k = 0; k < n.n[a]; k++) {
            const c = (evalMap(n.lo[a], k) + evalMap(n.hi[a], k) + 1) / 2;
            if (Math.abs(c - at[a]) < dist) { dist = Math.abs(c - at[a]); best = k; }
          }
          u[a] = best;
        });
        S.unit = u;
        S.inSlice = null;
        writeHash();
        update();
      });
      $("rf-paths").addEventListener("click", function (evt) {
        const a = evt.target.closest("a[data-i]");
        if (!a) return;
        evt.preventDefault();
        select(Number(a.dataset.i), S.unit.slice());
      });
      $("rf-file").addEventListener("change", function (evt) {
        const file = evt.target.files[0];
        if (!file) return;
        const reader = new FileReader(); // read locally: nothing leaves the browser
        reader.onload = function () { setImage(reader.result, file.name); };
        reader.readAsDataURL(file);
      });
      $("rf-grid-button").addEventListener("click", function () { setImage(null); });
      window.addEventListener("hashchange", applyHash);
      if (ndim < 2) $("rf-file").closest("label").hidden = true;
    }
    function setImage(url, name) {
      S.image = url;
      S.imageNote = null;
      if (url) {
        const img = new Image();
        img.onload = function () {
          const w = img.naturalWidth, h = img.naturalHeight;
          if (w !== sizes[xa] || h !== sizes[ya]) {
            S.imageNote = "image " + (name ? name + " " : "") + w + "x" + h + " stretched over the " + sizes[ya] + "x" + sizes[xa] + " input";
            update();
          }
        };
        img.src = url;
      }
      renderViewer();
      update();
    }

    renderHeader();
    renderTable();
    renderChart();
    wire();
    if (!applyHash()) {
      const i = D.initial.node !== null ? byName.get(D.initial.node) : 0;
      const n = nodes[i];
      const u = D.initial.unit && D.initial.unit.length === n.n.length ? D.initial.unit : null;
      select(i, u, true);
    }
    if (S.image) setImage(S.image);
    document.documentElement.dataset.ready = "1";
    if (window.performance && performance.mark) {
      performance.mark("rf-ready");
      // after the frame that shows the first selection (benchmarks/explorer.py reads both marks)
      requestAnimationFrame(function () { setTimeout(function () { performance.mark("rf-painted"); }, 0); });
    }
  }
})(typeof window !== "undefined" ? window : this);
