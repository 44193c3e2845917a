// 历史查询: looking back over incidents and alarms (GB 25506-2010 asks the control room to keep its
// alarm records). A search over GET /api/v1/incidents or /api/v1/alarms with their history filters
// (time window, place and its subtree, device, category, state, verdict, words in the notes), newest
// or oldest first, a page at a time. An incident opens at #/history/incident/<id> with its timeline,
// its alarms and its incident report (PDF, spreadsheet); an alarm opens its device.
"use strict";

(() => {
  const fw = window.fw;
  const { t, el, clear } = fw;
  const PAGE = 50;

  fw.addI18n({
    "nav.history": "历史查询",
    "hist.title": "报警与事件历史查询", "hist.what": "查询对象", "hist.incidents": "事件", "hist.alarms": "报警",
    "hist.since": "开始时间", "hist.until": "结束时间", "hist.place": "位置（含下级）", "hist.any_place": "全部位置",
    "hist.device": "设备编号", "hist.category": "类别", "hist.any": "全部", "hist.state": "状态",
    "hist.open": "未结束", "hist.closed": "已结束", "hist.verdict": "核实结果", "hist.cause": "误报原因",
    "hist.text": "备注/详情中的文字", "hist.order": "排序", "hist.newest": "最新在前", "hist.oldest": "最早在前",
    "hist.search": "查询", "hist.reset": "清空条件", "hist.export": "导出表格", "hist.total": "共 {n} 条", "hist.empty": "没有符合条件的记录",
    "hist.prev": "上一页", "hist.next": "下一页", "hist.page": "第 {p} / {n} 页",
    "hist.col.time": "首报时间", "hist.col.kind": "类型", "hist.col.place": "位置", "hist.col.state": "状态",
    "hist.col.verdict": "核实结果", "hist.col.alarms": "设备/报警", "hist.col.device": "设备",
    "hist.col.detail": "详情", "hist.col.note": "备注",
    "hist.back": "返回查询结果", "hist.incident": "事件 #{id}", "hist.report_pdf": "事件报告（PDF）",
    "hist.report_xlsx": "事件报告（表格）", "hist.timeline": "处置时间线", "hist.alarm_list": "报警明细",
    "hist.false_alarm": "误报", "hist.ended": "结束时间", "hist.bad_time": "结束时间须晚于开始时间",
    "iact.opened": "首次报警", "iact.joined": "新报警加入", "iact.upgraded": "升级", "iact.spread": "蔓延到新的分区/楼层",
    "iact.acknowledged": "受理", "iact.verifying": "派人核实", "iact.confirmed": "确认真实火警", "iact.false_alarm": "判定误报",
    "iact.test": "判定测试", "iact.called_119": "拨打119", "iact.escalated": "升级通知", "iact.reminded": "提醒",
    "iact.verify_overdue": "核实超时", "iact.reopened": "再次报警", "iact.reset": "复位", "iact.ended": "报警全部恢复",
    "iact.closed": "结束",
  }, {
    "nav.history": "History",
    "hist.title": "Alarm and incident history", "hist.what": "Search", "hist.incidents": "Incidents", "hist.alarms": "Alarms",
    "hist.since": "From", "hist.until": "To", "hist.place": "Place (and below)", "hist.any_place": "All places",
    "hist.device": "Device id", "hist.category": "Category", "hist.any": "Any", "hist.state": "State",
    "hist.open": "Not ended", "hist.closed": "Ended", "hist.verdict": "Verdict", "hist.cause": "Cause of false alarm",
    "hist.text": "Words in notes or detail", "hist.order": "Order", "hist.newest": "Newest first", "hist.oldest": "Oldest first",
    "hist.search": "Search", "hist.reset": "Clear", "hist.export": "Export spreadsheet", "hist.total": "{n} found", "hist.empty": "Nothing matches",
    "hist.prev": "Previous", "hist.next": "Next", "hist.page": "Page {p} of {n}",
    "hist.col.time": "First alarm", "hist.col.kind": "Kind", "hist.col.place": "Place", "hist.col.state": "State",
    "hist.col.verdict": "Verdict", "hist.col.alarms": "Devices/alarms", "hist.col.device": "Device",
    "hist.col.detail": "Detail", "hist.col.note": "Note",
    "hist.back": "Back to the results", "hist.incident": "Incident #{id}", "hist.report_pdf": "Incident report (PDF)",
    "hist.report_xlsx": "Incident report (spreadsheet)", "hist.timeline": "Timeline", "hist.alarm_list": "Alarms",
    "hist.false_alarm": "False alarm", "hist.ended": "Ended", "hist.bad_time": "The end must be after the start",
    "iact.opened": "First alarm", "iact.joined": "Alarm joined", "iact.upgraded": "Upgraded", "iact.spread": "Spread to a new zone or floor",
    "iact.acknowledged": "Acknowledged", "iact.verifying": "Someone went to check", "iact.confirmed": "Real fire confirmed",
    "iact.false_alarm": "False alarm", "iact.test": "Test", "iact.called_119": "119 called", "iact.escalated": "Escalated",
    "iact.reminded": "Reminder", "iact.verify_overdue": "Verification overdue", "iact.reopened": "Alarming again",
    "iact.reset": "Reset", "iact.ended": "All alarms ended", "iact.closed": "Closed",
  });

  const CATEGORIES = ["fire", "pre_alarm", "supervisory", "fault", "disabled", "hazard"];
  const VERDICTS = ["pending", "verifying", "confirmed", "false_alarm", "test"];
  const CAUSES = ["dust", "steam", "cooking", "works", "device", "human", "other"];
  const EMPTY = { what: "incidents", since: "", until: "", place: "", device: "", category: "", state: "", verdict: "", cause: "", q: "", order: "newest" };

  /** The last search, kept while the user opens a result and comes back. */
  const search = { form: { ...EMPTY }, offset: 0, result: null, ran: false };

  const toEpoch = (local) => (local ? new Date(local).getTime() / 1000 : undefined);

  function paramsOf(f, offset) {
    const p = { order: f.order, limit: PAGE, offset };
    const since = toEpoch(f.since); const until = toEpoch(f.until);
    if (since !== undefined) p.since = since;
    if (until !== undefined) p.until = until;
    if (f.place) p.place = f.place;
    if (f.device.trim()) p.device_id = f.device.trim();
    if (f.category) p.category = f.category;
    if (f.state) p.open = f.state === "open";
    if (f.q.trim()) p.q = f.q.trim();
    if (f.what === "incidents") {
      if (f.verdict) p.verification = f.verdict;
      if (f.verdict === "false_alarm" && f.cause) p.cause = f.cause;
    } else if (f.verdict === "false_alarm") {
      p.false_alarm = true; // an alarm's own verdict is its false-alarm acknowledgement
    }
    return p;
  }

  function field(key, control) {
    return el("label", { class: "field" }, el("span", { text: t(key) }), control);
  }

  function select(name, value, options) {
    const s = el("select", { attrs: { name } });
    for (const [v, text] of options) s.append(el("option", { text, attrs: { value: v } }));
    s.value = value;
    return s;
  }

  function placeOptions() {
    const list = [...(fw.places.list || [])].filter((p) => p && typeof p.path === "string");
    list.sort((a, b) => a.path.localeCompare(b.path));
    return [["", t("hist.any_place")], ...list.map((p) => {
      const depth = p.path.split("/").length - 1;
      return [p.path, `${"　".repeat(depth)}${p.name || p.path}`];
    })];
  }

  function searchForm(section) {
    const f = search.form;
    const what = select("what", f.what, [["incidents", t("hist.incidents")], ["alarms", t("hist.alarms")]]);
    const verdict = select("verdict", f.verdict, [["", t("hist.any")], ...VERDICTS.map((v) => [v, fw.label("ver", v)])]);
    const cause = select("cause", f.cause, [["", t("hist.any")], ...CAUSES.map((c) => [c, fw.label("cause", c)])]);
    const causeField = field("hist.cause", cause);
    const showCause = () => { causeField.hidden = !(verdict.value === "false_alarm" && what.value === "incidents"); };
    verdict.addEventListener("change", showCause);
    what.addEventListener("change", showCause);
    showCause();
    const form = el("form", { class: "history-form", attrs: { id: "history-form" } },
      field("hist.what", what),
      field("hist.since", el("input", { attrs: { type: "datetime-local", name: "since", value: f.since } })),
      field("hist.until", el("input", { attrs: { type: "datetime-local", name: "until", value: f.until } })),
      field("hist.place", select("place", f.place, placeOptions())),
      field("hist.device", el("input", { attrs: { type: "text", name: "device", value: f.device, maxlength: 64, autocomplete: "off" } })),
      field("hist.category", select("category", f.category, [["", t("hist.any")], ...CATEGORIES.map((c) => [c, fw.catLabel(c)])])),
      field("hist.state", select("state", f.state, [["", t("hist.any")], ["open", t("hist.open")], ["closed", t("hist.closed")]])),
      field("hist.verdict", verdict),
      causeField,
      field("hist.text", el("input", { attrs: { type: "search", name: "q", value: f.q, maxlength: 200 } })),
      field("hist.order", select("order", f.order, [["newest", t("hist.newest")], ["oldest", t("hist.oldest")]])),
      el("div", { class: "actions" },
        el("button", { class: "primary", text: t("hist.search"), attrs: { type: "submit", id: "history-search" } }),
        el("button", { text: t("hist.reset"), attrs: { type: "button" }, on: { click: () => { search.form = { ...EMPTY }; search.result = null; search.ran = false; render(null, section); } } })));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      search.form = Object.fromEntries(Object.keys(EMPTY).map((k) => [k, String(data.get(k) ?? EMPTY[k])]));
      search.offset = 0;
      fw.guarded(() => run(section));
    });
    return form;
  }

  async function run(section) {
    const f = search.form;
    if (f.since && f.until && toEpoch(f.until) <= toEpoch(f.since)) { fw.showError(t("hist.bad_time")); return; }
    const path = f.what === "incidents" ? "/api/v1/incidents" : "/api/v1/alarms";
    const page = await fw.api(path, { params: paramsOf(f, search.offset) });
    if (!page || !Array.isArray(page.items) || typeof page.total !== "number") throw new fw.ApiError(t("error.format", { detail: "history" }));
    search.result = { what: f.what, ...page };
    search.ran = true;
    drawResults(section.querySelector("#history-results"), section);
  }

  const verdictText = (i) => (i.verification === "false_alarm" && i.cause
    ? `${fw.label("ver", i.verification)}（${fw.label("cause", i.cause)}）`
    : fw.label("ver", i.verification));

  function incidentRow(i) {
    return el("tr", { dataset: { incidentId: i.id }, on: { click: () => { location.hash = `#/history/incident/${i.id}`; } } },
      el("td", {}, el("a", { text: fw.fmtTime(i.first_ts), attrs: { href: `#/history/incident/${i.id}` } })),
      el("td", {}, el("span", { class: `pill cat-${i.category}`, text: fw.label("ikind", i.kind) })),
      el("td", { text: fw.places.byPath.has(i.place) ? fw.placeName(i.place) : i.place_name || fw.placeName(i.place) }),
      el("td", { text: fw.label("istate", i.state) }),
      el("td", { text: verdictText(i) }),
      el("td", { text: `${i.device_count} / ${i.alarm_count}` }));
  }

  function alarmRow(a) {
    const href = `#/device/${encodeURIComponent(a.device_id)}`;
    return el("tr", { dataset: { alarmId: a.id }, on: { click: () => { location.hash = href; } } },
      el("td", {}, el("a", { text: fw.fmtTime(a.first_ts), attrs: { href } })),
      el("td", {}, el("span", { class: `pill cat-${a.category}`, text: fw.catLabel(a.category) })),
      el("td", { text: fw.placeName(a.place) }),
      el("td", { text: a.device_id }),
      el("td", { text: `${fw.alarmWhatText(a)}${a.false_alarm ? ` · ${t("hist.false_alarm")}` : ""}` }),
      el("td", { text: fw.label("state", a.state) }),
      el("td", { text: a.ack_note || "—" }));
  }

  function drawResults(box, section) {
    clear(box);
    const r = search.result;
    if (!r) return;
    const heads = r.what === "incidents"
      ? ["hist.col.time", "hist.col.kind", "hist.col.place", "hist.col.state", "hist.col.verdict", "hist.col.alarms"]
      : ["hist.col.time", "hist.col.kind", "hist.col.place", "hist.col.device", "hist.col.detail", "hist.col.state", "hist.col.note"];
    const pages = Math.max(1, Math.ceil(r.total / PAGE));
    const at = Math.floor(r.offset / PAGE) + 1;
    const go = (offset) => { search.offset = offset; fw.guarded(() => run(section)); };
    const exportButton = r.what === "incidents" && r.total > 0
      ? el("button", { text: t("hist.export"), attrs: { id: "history-export" }, on: { click: () => fw.guarded(exportXlsx) } })
      : null;
    box.append(el("div", { class: "panel-head" },
      el("span", { class: "muted", text: t("hist.total", { n: r.total }), attrs: { id: "history-total" } }),
      el("span", { class: "actions" }, exportButton,
        el("button", { text: t("hist.prev"), attrs: at <= 1 ? { disabled: "" } : {}, on: { click: () => go(Math.max(0, r.offset - PAGE)) } }),
        el("span", { class: "muted", text: t("hist.page", { p: at, n: pages }) }),
        el("button", { text: t("hist.next"), attrs: at >= pages ? { disabled: "" } : {}, on: { click: () => go(r.offset + PAGE) } }))));
    if (!r.items.length) { box.append(el("p", { class: "empty", text: t("hist.empty") })); return; }
    const table = el("table", { class: "grid-table", attrs: { id: "history-table" } },
      el("thead", {}, el("tr", {}, ...heads.map((k) => el("th", { text: t(k) })))),
      el("tbody", {}, ...r.items.map(r.what === "incidents" ? incidentRow : alarmRow)));
    box.append(el("div", { class: "table-scroll" }, table));
  }

  /** The incidents the search found, all of them (not only this page), as a spreadsheet. */
  async function exportXlsx() {
    const params = paramsOf(search.form, 0);
    delete params.limit; delete params.offset;
    const resp = await fw.request("/api/v1/incidents/history.xlsx", { params, accept: "*/*" });
    fw.saveBlob(await resp.blob(), "事件历史查询.xlsx");
  }


  /** The report needs the Bearer header, so a plain link cannot fetch it: fetch, then open the blob. */
  async function download(id, ext) {
    const resp = await fw.request(`/api/v1/incidents/${encodeURIComponent(id)}/report.${ext}`, { accept: "*/*" });
    fw.saveBlob(await resp.blob(), `事件报告-${id}.${ext}`);
  }

  async function drawIncident(id, section) {
    const i = await fw.api(`/api/v1/incidents/${encodeURIComponent(id)}`);
    if (!i || typeof i.kind !== "string" || !Array.isArray(i.timeline)) throw new fw.ApiError(t("error.format", { detail: "incident" }));
    const place = fw.places.byPath.has(i.place) ? fw.placeName(i.place) : i.place_name || fw.placeName(i.place);
    const info = el("dl", { class: "info" });
    const rows = [
      ["hist.col.kind", fw.label("ikind", i.kind)], ["hist.col.place", place],
      ["hist.col.time", fw.fmtTime(i.first_ts)], ["hist.ended", i.ended_ts ? fw.fmtTime(i.ended_ts) : "—"],
      ["hist.col.state", fw.label("istate", i.state)], ["hist.col.verdict", verdictText(i)],
      ["hist.col.alarms", `${i.device_count} / ${i.alarm_count}`],
    ];
    for (const [k, v] of rows) info.append(el("dt", { text: t(k) }), el("dd", { text: v }));
    const timeline = el("ol", { class: "events", attrs: { id: "history-timeline" } },
      ...i.timeline.map((e) => el("li", { dataset: { action: e.action } },
        `${fw.fmtTime(e.ts)} ${fw.label("iact", e.action)}${e.actor ? ` · ${fw.person(e.actor)}` : ""}${e.note ? ` — ${e.note}` : ""}`)));
    const alarms = el("tbody", {}, ...i.alarms.map(alarmRow));
    section.append(el("section", { class: "panel", attrs: { id: "history-incident" }, dataset: { incidentId: i.id } },
      el("div", { class: "panel-head" },
        el("h2", { text: t("hist.incident", { id: i.id }) }),
        el("span", { class: "actions" },
          el("a", { text: t("hist.back"), attrs: { href: "#/history" } }),
          el("button", { text: t("hist.report_pdf"), dataset: { role: "report-pdf" }, on: { click: () => fw.guarded(() => download(i.id, "pdf")) } }),
          el("button", { text: t("hist.report_xlsx"), dataset: { role: "report-xlsx" }, on: { click: () => fw.guarded(() => download(i.id, "xlsx")) } }))),
      info,
      el("h3", { text: t("hist.timeline") }), timeline,
      el("h3", { text: t("hist.alarm_list") }),
      el("div", { class: "table-scroll" }, el("table", { class: "grid-table", attrs: { id: "history-alarms" } },
        el("thead", {}, el("tr", {}, ...["hist.col.time", "hist.col.kind", "hist.col.place", "hist.col.device", "hist.col.detail", "hist.col.state", "hist.col.note"].map((k) => el("th", { text: t(k) })))),
        alarms))));
  }

  async function render(arg, section) {
    if (!fw.places.loaded) await fw.guarded(fw.loadPlaces);
    clear(section);
    const m = /^incident\/(\d+)$/.exec(arg || "");
    if (m) { await drawIncident(m[1], section); return; }
    section.append(el("section", { class: "panel" },
      el("h2", { text: t("hist.title") }),
      searchForm(section),
      el("div", { attrs: { id: "history-results" } })));
    if (search.ran) await run(section);
  }

  fw.registerView("history", { tabKey: "nav.history", roles: [], render });
})();
