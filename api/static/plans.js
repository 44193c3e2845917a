// Floor plans (平面图): a floor's plan with its devices as markers; an incident's alarmed devices blink.
//
// GB 25506-2010 asks the fire control room for a graphic display of where an alarm is. Route
// `#/plan/<floor path>[?incident=<id>|?device=<id>]`; `#/plan` lists the floors. The plan image is
// fetched signed in and shown from a blob: URL through <img> only (an uploaded SVG runs nothing
// there). Safety and admin upload plans; maintenance, safety and admin drag devices onto the plan
// (a side list holds those not placed yet) and move placed ones: each drop saves x, y as fractions
// of the plan in the registry (PUT /api/v1/devices/{id}/plan). The live stream re-reads the alarms,
// so markers change colour, and start or stop blinking, as alarms come and clear.
"use strict";

(() => {
  const fw = window.fw;
  const { t, el, clear, api, request } = fw;

  fw.addI18n({
    "plan.tab": "平面图", "plan.open": "平面图", "plan.floors": "选择楼层查看平面图",
    "plan.none": "本楼层还没有平面图。", "plan.none_ask": "请保卫科或管理员上传本楼层的平面图。",
    "plan.upload": "上传平面图", "plan.replace": "更换平面图", "plan.file": "文件（PNG、SVG 或 PDF）",
    "plan.page": "PDF 页码", "plan.send": "上传", "plan.remove": "删除平面图",
    "plan.remove_confirm": "删除本楼层的平面图？设备位置保留，换上新图后仍然有效。",
    "plan.uploaded": "{who} 上传于 {when}", "plan.unplaced": "未放置的设备（{n}）",
    "plan.unplaced_hint": "把设备拖到平面图上的安装位置；已放置的设备也可拖动调整。",
    "plan.all_placed": "本楼层的设备都已放置。",
    "plan.incident": "事件 #{id}：{cat} · {where}", "plan.incident_devices": "报警设备 {n} 个",
    "plan.incident_floors": "涉及楼层：", "plan.incident_elsewhere": "本楼层没有该事件的报警设备。",
    "plan.legend_blink": "闪烁：本事件的报警设备", "plan.saved": "已保存位置：{name}",
    "plan.not_floor": "{where} 不是楼层：平面图按楼层设置。", "plan.normal": "正常",
    "plan.choose": "选择文件", "plan.no_file": "未选择文件",
  }, {
    "plan.tab": "Floor plans", "plan.open": "Floor plan", "plan.floors": "Pick a floor to see its plan",
    "plan.none": "This floor has no plan yet.", "plan.none_ask": "Ask the safety office or an admin to upload this floor's plan.",
    "plan.upload": "Upload a plan", "plan.replace": "Replace the plan", "plan.file": "File (PNG, SVG or PDF)",
    "plan.page": "PDF page", "plan.send": "Upload", "plan.remove": "Remove the plan",
    "plan.remove_confirm": "Remove this floor's plan? Device positions stay and hold for a new plan.",
    "plan.uploaded": "uploaded by {who}, {when}", "plan.unplaced": "Devices not placed ({n})",
    "plan.unplaced_hint": "Drag each device to where it is installed on the plan; placed ones can be moved.",
    "plan.all_placed": "Every device of this floor is placed.",
    "plan.incident": "Incident #{id}: {cat} · {where}", "plan.incident_devices": "{n} alarmed device(s)",
    "plan.incident_floors": "Floors: ", "plan.incident_elsewhere": "None of the incident's alarmed devices is on this floor.",
    "plan.legend_blink": "Blinking: the incident's alarmed devices", "plan.saved": "Position saved: {name}",
    "plan.not_floor": "{where} is not a floor: plans are kept per floor.", "plan.normal": "Normal",
    "plan.choose": "Choose a file", "plan.no_file": "No file chosen",
  });

  const PLAN_EDITORS = ["safety", "admin"];
  const PLACERS = ["maintenance", "safety", "admin"];
  const ACTIVE = new Set(["active_unacknowledged", "active_acknowledged"]);
  // Worst first, as the board orders categories.
  const ORDER = ["fire", "pre_alarm", "supervisory", "fault", "disabled", "hazard"];

  const view = {
    floor: null, incidentId: null, deviceId: null, plan: null, imageUrl: null, imageKey: null,
    devices: [], alarms: [], incident: null, section: null, markers: null, drag: null, refreshTimer: null,
  };

  const holds = (roles) => fw.heldRoles().some((r) => r === "admin" || roles.includes(r));
  const deviceLabel = (d) => d.name || d.id;

  function parseArg(arg) {
    const [path, query = ""] = String(arg || "").split("?");
    const params = new URLSearchParams(query);
    return { path: path.replace(/\/+$/, ""), incident: params.get("incident"), device: params.get("device") };
  }

  async function render(arg, section) {
    view.section = section;
    const { path, incident, device } = parseArg(arg);
    await fw.loadPlaces();
    if (!path) { renderFloorList(section); return; }
    const place = fw.places.byPath.get(path);
    if (!place || place.kind !== "floor") {
      clear(section).append(el("p", { class: "plan-note", text: t("plan.not_floor", { where: fw.placeName(path) }) }));
      return;
    }
    view.floor = path;
    view.incidentId = incident;
    view.deviceId = device;
    await load();
    draw();
  }

  function renderFloorList(section) {
    const floors = fw.places.list.filter((p) => p.kind === "floor");
    clear(section).append(
      el("h2", { text: t("plan.floors") }),
      el("ul", { class: "plan-floors", dataset: { role: "plan-floors" } },
        ...floors.map((f) => el("li", {}, el("a", { text: fw.placeName(f.path), attrs: { href: `#/plan/${f.path}` } })))));
  }

  /** The plan (null: none yet), the floor's devices, its open alarms and the incident. */
  async function load() {
    const floor = view.floor;
    let plan = null;
    try {
      plan = await api(`/api/v1/places/${floor}/plan`);
    } catch (err) {
      if (!(err instanceof fw.ApiError) || err.status !== 404) throw err;
    }
    const [devices, alarms, incident] = await Promise.all([
      api(`/api/v1/places/${floor}/plan/devices`),
      fw.allPages("/api/v1/alarms", { place: floor, open: true }),
      view.incidentId ? api(`/api/v1/incidents/${encodeURIComponent(view.incidentId)}`) : Promise.resolve(null),
    ]);
    if (floor !== view.floor) return; // the route moved on meanwhile
    view.plan = plan;
    view.devices = Array.isArray(devices) ? devices : [];
    view.alarms = Array.isArray(alarms) ? alarms : [];
    view.incident = incident;
    await loadImage();
  }

  /** The image as a blob: URL (fetched with the session's token), kept while its hash is the same. */
  async function loadImage() {
    const key = view.plan ? view.plan.sha256 : null;
    if (key === view.imageKey) return;
    if (view.imageUrl) URL.revokeObjectURL(view.imageUrl);
    view.imageUrl = null;
    view.imageKey = key;
    if (!view.plan) return;
    const resp = await request(view.plan.image_url, { accept: view.plan.media_type });
    view.imageUrl = URL.createObjectURL(await resp.blob());
  }

  /** Per device: the worst category of its active alarms (none: normal). */
  function worstByDevice(alarms) {
    const worst = new Map();
    for (const a of alarms) {
      if (!ACTIVE.has(a.state)) continue;
      const now = worst.get(a.device_id);
      if (now === undefined || ORDER.indexOf(a.category) < ORDER.indexOf(now)) worst.set(a.device_id, a.category);
    }
    return worst;
  }

  /** The incident's devices with an active alarm, and each one's worst category. */
  function incidentDevices() {
    if (!view.incident || !Array.isArray(view.incident.alarms)) return new Map();
    return worstByDevice(view.incident.alarms);
  }

  function draw() {
    const section = view.section;
    const editor = holds(PLAN_EDITORS);
    const placer = holds(PLACERS) && view.plan !== null;
    const head = el("div", { class: "plan-head" },
      el("h2", { text: `${t("plan.tab")} · ${fw.placeName(view.floor)}`, dataset: { role: "plan-title" } }));
    const parts = [head];
    const blinking = incidentDevices();
    if (view.incident) parts.push(incidentBanner(view.incident, blinking));
    if (view.plan) {
      head.append(el("span", { class: "plan-meta", dataset: { role: "plan-meta" },
        text: t("plan.uploaded", { who: view.plan.uploaded_by, when: fw.fmtTime(view.plan.uploaded_at, true) }) }));
      const body = el("div", { class: "plan-body" }, planFigure(placer, blinking));
      if (placer) body.append(unplacedList());
      parts.push(body);
    } else {
      parts.push(el("p", { class: "plan-note", dataset: { role: "plan-none" },
        text: `${t("plan.none")}${editor ? "" : ` ${t("plan.none_ask")}`}` }));
    }
    if (editor) parts.push(uploadForm());
    clear(section).append(...parts);
  }

  function incidentBanner(i, blinking) {
    const cat = ORDER.includes(i.category) ? i.category : "hazard";
    const banner = el("div", { class: `plan-incident cat-${cat}`, dataset: { role: "plan-incident" } },
      el("strong", { text: t("plan.incident", { id: i.id, cat: fw.catLabel(i.category), where: i.place_name || fw.placeName(i.place) }) }),
      el("span", { text: ` · ${t("plan.incident_devices", { n: blinking.size })}` }));
    const floors = Array.isArray(i.floors) ? i.floors : [];
    if (floors.length > 1) {
      const list = el("span", { class: "plan-inc-floors", dataset: { role: "plan-incident-floors" } }, t("plan.incident_floors"));
      for (const f of floors) {
        const here = f === view.floor;
        list.append(el("a", { class: here ? "current" : "", text: fw.placeName(f),
          attrs: { href: `#/plan/${f}?incident=${encodeURIComponent(i.id)}`, ...(here ? { "aria-current": "page" } : {}) } }));
      }
      banner.append(list);
    }
    const here = view.devices.some((d) => blinking.has(d.id));
    if (!here) banner.append(el("div", { class: "plan-note", text: t("plan.incident_elsewhere") }));
    banner.append(el("div", { class: "plan-legend", text: t("plan.legend_blink") }));
    return banner;
  }

  function planFigure(placer, blinking) {
    const img = el("img", { class: "plan-img", attrs: { src: view.imageUrl || "", alt: `${t("plan.tab")} · ${fw.placeName(view.floor)}`, draggable: "false" } });
    const markers = el("div", { class: "plan-markers", dataset: { role: "plan-markers" } });
    const figure = el("div", { class: "plan-figure", dataset: { role: "plan-figure" } }, img, markers);
    figure.style.aspectRatio = `${view.plan.width} / ${view.plan.height}`;
    figure.style.setProperty("--ar", String(view.plan.width / view.plan.height)); // the whole plan on screen
    view.markers = markers;
    drawMarkers(placer, blinking);
    return figure;
  }

  function drawMarkers(placer, blinking) {
    const worst = worstByDevice(view.alarms);
    const nodes = [];
    for (const d of view.devices) {
      if (d.x === null || d.y === null) continue;
      const inIncident = blinking.get(d.id);
      const cat = inIncident || worst.get(d.id) || "normal";
      const cls = `plan-marker cat-${cat}${inIncident ? " blink" : ""}${d.id === view.deviceId ? " picked" : ""}${placer ? " movable" : ""}`;
      const state = cat === "normal" ? t("plan.normal") : fw.catLabel(cat);
      const marker = el("span", { class: cls, title: `${deviceLabel(d)} · ${d.place_name} · ${state}`,
        dataset: { deviceId: d.id, category: cat, role: "plan-marker" }, attrs: { role: "img", "aria-label": `${deviceLabel(d)} ${state}` } });
      marker.style.left = `${d.x * 100}%`;
      marker.style.top = `${d.y * 100}%`;
      if (inIncident || d.id === view.deviceId) marker.append(el("span", { class: "plan-tag", text: deviceLabel(d) }));
      if (placer) marker.addEventListener("pointerdown", (ev) => startDrag(ev, d));
      nodes.push(marker);
    }
    clear(view.markers).append(...nodes);
  }

  function unplacedList() {
    const unplaced = view.devices.filter((d) => d.x === null || d.y === null);
    const list = el("ul", { class: "plan-unplaced-list" });
    for (const d of unplaced) {
      const item = el("li", { class: "plan-unplaced-item", text: `${deviceLabel(d)} · ${d.place_name}`,
        dataset: { deviceId: d.id, role: "plan-unplaced" } });
      item.addEventListener("pointerdown", (ev) => startDrag(ev, d));
      list.append(item);
    }
    return el("aside", { class: "plan-unplaced", dataset: { role: "plan-side" } },
      el("h3", { text: t("plan.unplaced", { n: unplaced.length }) }),
      el("p", { class: "plan-hint", text: unplaced.length ? t("plan.unplaced_hint") : t("plan.all_placed") }),
      list);
  }

  // --- dragging: pointer events, so a mouse, a pen and a finger all work ----------------------------

  function startDrag(ev, device) {
    if (ev.button !== 0) return;
    ev.preventDefault();
    const ghost = el("span", { class: "plan-marker plan-ghost cat-normal", dataset: { role: "plan-ghost" } },
      el("span", { class: "plan-tag", text: deviceLabel(device) }));
    document.body.append(ghost);
    view.drag = { device, ghost };
    moveGhost(ev);
    document.addEventListener("pointermove", moveGhost);
    document.addEventListener("pointerup", endDrag, { once: true });
  }

  function moveGhost(ev) {
    if (!view.drag) return;
    view.drag.ghost.style.left = `${ev.clientX}px`;
    view.drag.ghost.style.top = `${ev.clientY}px`;
  }

  function endDrag(ev) {
    document.removeEventListener("pointermove", moveGhost);
    const drag = view.drag;
    view.drag = null;
    if (!drag) return;
    drag.ghost.remove();
    const box = view.markers ? view.markers.getBoundingClientRect() : null;
    if (!box || box.width <= 0 || box.height <= 0) return;
    const x = (ev.clientX - box.left) / box.width;
    const y = (ev.clientY - box.top) / box.height;
    if (x < 0 || x > 1 || y < 0 || y > 1) return; // dropped off the plan: nothing changes
    fw.guarded(() => place(drag.device, x, y));
  }

  async function place(device, x, y) {
    const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
    const saved = await api(`/api/v1/devices/${encodeURIComponent(device.id)}/plan`, { method: "PUT", body: { x: round(x), y: round(y) } });
    device.x = saved.x;
    device.y = saved.y;
    draw();
    const note = el("p", { class: "plan-saved", dataset: { role: "plan-saved" }, text: t("plan.saved", { name: deviceLabel(device) }) });
    view.section.append(note);
  }

  // --- upload ---------------------------------------------------------------------------------------

  function uploadForm() {
    // The browser's own file control speaks the browser's language: hidden, and a button and the
    // chosen file's name in the console's words instead.
    const file = el("input", { class: "plan-file-input", attrs: { type: "file", name: "file", accept: ".png,.svg,.pdf,image/png,image/svg+xml,application/pdf" }, dataset: { role: "plan-file" } });
    const chosen = el("span", { class: "plan-chosen", text: t("plan.no_file"), dataset: { role: "plan-chosen" } });
    file.addEventListener("change", () => { chosen.textContent = file.files && file.files.length ? file.files[0].name : t("plan.no_file"); });
    const pick = el("button", { text: t("plan.choose"), attrs: { type: "button" }, dataset: { role: "plan-choose" }, on: { click: () => file.click() } });
    const page = el("input", { attrs: { type: "number", name: "page", min: "1", value: "1" }, dataset: { role: "plan-page" } });
    const form = el("form", { class: "plan-upload", dataset: { role: "plan-upload" } },
      el("h3", { text: t(view.plan ? "plan.replace" : "plan.upload") }),
      el("span", {}, t("plan.file"), " ", pick, " ", chosen, file),
      el("label", {}, t("plan.page"), " ", page),
      el("button", { text: t("plan.send"), attrs: { type: "submit" }, dataset: { role: "plan-send" } }));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      fw.guarded(async () => {
        if (!file.files || !file.files.length) return;
        const body = new FormData();
        body.append("file", file.files[0]);
        body.append("page", page.value || "1");
        await api(`/api/v1/places/${view.floor}/plan`, { method: "PUT", body });
        await load();
        draw();
      });
    });
    if (view.plan) {
      form.append(el("button", { class: "danger", text: t("plan.remove"), attrs: { type: "button" }, dataset: { role: "plan-remove" },
        on: { click: () => fw.guarded(async () => {
          if (!window.confirm(t("plan.remove_confirm"))) return;
          await request(`/api/v1/places/${view.floor}/plan`, { method: "DELETE" });
          await load();
          draw();
        }) } }));
    }
    return form;
  }

  // --- live: the stream's steps re-read the floor's alarms and the incident (one read per burst) ------

  fw.onLive(() => {
    if (fw.route().view !== "plan" || !view.floor) return;
    clearTimeout(view.refreshTimer);
    view.refreshTimer = setTimeout(() => fw.guarded(refreshMarkers), 300);
  });

  async function refreshMarkers() {
    if (fw.route().view !== "plan" || !view.floor || view.drag) return;
    const [alarms, incident] = await Promise.all([
      fw.allPages("/api/v1/alarms", { place: view.floor, open: true }),
      view.incidentId ? api(`/api/v1/incidents/${encodeURIComponent(view.incidentId)}`) : Promise.resolve(null),
    ]);
    view.alarms = Array.isArray(alarms) ? alarms : [];
    view.incident = incident;
    draw();
  }

  fw.registerView("plan", { tabKey: "plan.tab", render });
})();
