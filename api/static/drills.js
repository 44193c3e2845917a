// Drills (演练): the list, the declare form, ending one early, and a drill's report with its response
// times and PDF (docs/drills.md, docs/console.md). A view of its own, registered through window.fw;
// every string through fw.t, every value inserted as text (fw.el).
"use strict";

(() => {
  const fw = window.fw;
  const DECLARERS = ["safety", "leader", "admin"]; // who may declare and end a drill (api/routes/drills.py)
  const STEPS = ["acknowledged", "verifying", "verdict", "called_119", "reset"];

  fw.addI18n({
    "tab.drills": "演练",
    "drills.title": "消防演练", "drills.empty": "还没有演练", "drills.declare": "登记演练",
    "drills.name": "名称", "drills.places": "演练范围（可多选，含其下所有位置）", "drills.start": "开始时间（留空为立即）",
    "drills.minutes": "时长（分钟，最长 24 小时）", "drills.routes": "通知的推送路由（名称，逗号分隔）",
    "drills.urls": "通知地址（Apprise URL，每行一个）", "drills.note": "备注", "drills.submit": "登记",
    "drills.window": "时间", "drills.status": "状态", "drills.recipients": "通知对象", "drills.actions": "操作",
    "drills.end": "结束演练", "drills.end_confirm": "现在结束演练？此后的报警按真实报警处理。", "drills.report": "演练报告",
    "drills.need_places": "请选择演练范围", "drills.need_name": "请填写名称",
    "drills.urls_n": "{n} 个地址", "drills.none": "仅看板",
    "drills.status.planned": "未开始", "drills.status.active": "进行中", "drills.status.ended": "已结束", "drills.status.cancelled": "已取消",
    "drills.back": "返回演练列表", "drills.pdf": "下载 PDF", "drills.summary": "响应时间汇总（自首次报警起）",
    "drills.step": "环节", "drills.count": "完成数", "drills.median": "中位数", "drills.max": "最长",
    "drills.incidents": "各事件处置过程", "drills.incident": "事件", "drills.first": "首次报警", "drills.verdict": "结论",
    "drills.no_incidents": "本次演练无报警事件", "drills.tests": "设备自检（测试按钮）记录", "drills.no_tests": "演练期间无设备自检记录",
    "drills.device": "设备", "drills.place": "位置", "drills.time": "时间", "drills.actors": "参与处置人员",
    "drills.step.acknowledged": "受理", "drills.step.verifying": "前往核实", "drills.step.verdict": "核实结论",
    "drills.step.called_119": "拨打119", "drills.step.reset": "复位", "drills.not_done": "未完成",
  }, {
    "tab.drills": "Drills",
    "drills.title": "Fire drills", "drills.empty": "No drills yet", "drills.declare": "Declare a drill",
    "drills.name": "Name", "drills.places": "Places (several allowed; each covers everything under it)", "drills.start": "Start (empty: now)",
    "drills.minutes": "Duration (minutes, at most 24 h)", "drills.routes": "Push routes told (names, comma-separated)",
    "drills.urls": "Addresses told (Apprise URLs, one a line)", "drills.note": "Note", "drills.submit": "Declare",
    "drills.window": "Window", "drills.status": "Status", "drills.recipients": "Told", "drills.actions": "Actions",
    "drills.end": "End drill", "drills.end_confirm": "End the drill now? Alarms from now on are real.", "drills.report": "Report",
    "drills.need_places": "Choose the drill's places", "drills.need_name": "Give the drill a name",
    "drills.urls_n": "{n} addresses", "drills.none": "board only",
    "drills.status.planned": "Planned", "drills.status.active": "Running", "drills.status.ended": "Ended", "drills.status.cancelled": "Cancelled",
    "drills.back": "Back to drills", "drills.pdf": "Download PDF", "drills.summary": "Response times (from the first alarm)",
    "drills.step": "Step", "drills.count": "Done", "drills.median": "Median", "drills.max": "Longest",
    "drills.incidents": "Incidents step by step", "drills.incident": "Incident", "drills.first": "First alarm", "drills.verdict": "Verdict",
    "drills.no_incidents": "No alarms in this drill", "drills.tests": "Devices' test-button events", "drills.no_tests": "No test-button events during the drill",
    "drills.device": "Device", "drills.place": "Place", "drills.time": "Time", "drills.actors": "Who acted",
    "drills.step.acknowledged": "Acknowledged", "drills.step.verifying": "Verifying", "drills.step.verdict": "Verdict",
    "drills.step.called_119": "119 called", "drills.step.reset": "Reset", "drills.not_done": "not done",
  });

  const { t, el, clear } = fw;
  const mayDeclare = () => fw.heldRoles().some((r) => DECLARERS.includes(r));
  const dur = (s) => (typeof s === "number" && isFinite(s) ? fw.fmtDur(s) : "—");
  const table = (role, head, rows) => el("table", { class: "grid-table", dataset: { role } },
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));

  fw.registerView("drills", {
    tabKey: "tab.drills",
    roles: [],
    async render(arg, section) {
      if (arg) await renderReport(arg, section);
      else await renderList(section);
    },
  });

  async function renderList(section) {
    await fw.loadPlaces().catch(() => {}); // names for the places picker; paths if it fails
    const drills = await fw.allPages("/api/v1/drills");
    const rows = drills.map((d) => {
      const told = [...(d.routes || [])];
      if (d.url_count) told.push(t("drills.urls_n", { n: d.url_count }));
      const actions = el("td", {},
        el("a", { class: "link", text: t("drills.report"), attrs: { href: `#/drills/${encodeURIComponent(d.id)}` }, dataset: { role: "report" } }));
      if (mayDeclare() && (d.status === "planned" || d.status === "active")) {
        actions.append(" ", el("button", { class: "minor", text: t("drills.end"), dataset: { role: "end" },
          on: { click: () => endDrill(d, section) } }));
      }
      return el("tr", { dataset: { drillId: d.id, status: d.status } },
        el("td", { text: d.name }),
        el("td", { text: (d.places || []).map(fw.placeName).join("、") }),
        el("td", { text: `${fw.fmtTime(d.start_ts)} – ${fw.fmtTime(d.ended_ts && d.ended_ts < d.end_ts ? d.ended_ts : d.end_ts)}` }),
        el("td", { text: t(`drills.status.${d.status}`), dataset: { role: "status" } }),
        el("td", { text: told.join("、") || t("drills.none") }),
        actions);
    });
    const panel = el("section", { class: "panel" },
      el("div", { class: "panel-head" }, el("h2", { text: t("drills.title") })),
      rows.length
        ? table("drills", [t("drills.name"), t("drills.places"), t("drills.window"), t("drills.status"), t("drills.recipients"), t("drills.actions")], rows)
        : el("p", { class: "empty", text: t("drills.empty") }));
    clear(section).append(panel);
    if (mayDeclare()) section.append(declareForm(section));
  }

  function declareForm(section) {
    const options = fw.places.list.map((p) => el("option", { text: fw.placeName(p.path), attrs: { value: p.path } }));
    const field = (key, input) => el("label", { class: "field" }, el("span", { text: t(key) }), input);
    const name = el("input", { attrs: { maxlength: 200 }, dataset: { role: "drill-name" } });
    const places = el("select", { attrs: { multiple: "", size: 8 }, dataset: { role: "drill-places" } }, ...options);
    const start = el("input", { attrs: { type: "datetime-local" }, dataset: { role: "drill-start" } });
    const minutes = el("input", { attrs: { type: "number", min: 1, max: 1440, value: 60 }, dataset: { role: "drill-minutes" } });
    const routes = el("input", { dataset: { role: "drill-routes" } });
    const urls = el("textarea", { attrs: { rows: 2 }, dataset: { role: "drill-urls" } });
    const note = el("input", { attrs: { maxlength: 2000 }, dataset: { role: "drill-note" } });
    const error = el("p", { class: "error", dataset: { role: "drill-error" } });
    const submit = el("button", { class: "primary", text: t("drills.submit"), attrs: { type: "submit" }, dataset: { role: "drill-submit" } });
    const form = el("form", { class: "panel", attrs: { novalidate: "" }, dataset: { role: "drill-form" } },
      el("h2", { text: t("drills.declare") }),
      field("drills.name", name), field("drills.places", places), field("drills.start", start),
      field("drills.minutes", minutes), field("drills.routes", routes), field("drills.urls", urls),
      field("drills.note", note), error, submit);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const chosen = [...places.selectedOptions].map((o) => o.value);
      if (!name.value.trim()) { error.textContent = t("drills.need_name"); return; }
      if (!chosen.length) { error.textContent = t("drills.need_places"); return; }
      // The window on the service's clock (a simulation may run it faster than the wall clock).
      const begin = start.value ? new Date(start.value).getTime() / 1000 : null;
      const body = {
        name: name.value.trim(),
        places: chosen,
        end: (begin ?? fw.serverNow()) + Number(minutes.value || 0) * 60,
        routes: routes.value.split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean),
        urls: urls.value.split("\n").map((s) => s.trim()).filter(Boolean),
        note: note.value.trim(),
      };
      if (begin !== null) body.start = begin;
      submit.disabled = true;
      try {
        await fw.api("/api/v1/drills", { method: "POST", body });
        await renderList(section);
      } catch (err) {
        error.textContent = err.message || String(err);
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  async function endDrill(d, section) {
    if (!window.confirm(t("drills.end_confirm"))) return;
    await fw.guarded(async () => {
      await fw.api(`/api/v1/drills/${encodeURIComponent(d.id)}/end`, { method: "POST", body: {} });
      await renderList(section);
    });
  }

  async function renderReport(id, section) {
    await fw.loadPlaces().catch(() => {});
    const r = await fw.api(`/api/v1/drills/${encodeURIComponent(id)}/report`);
    const d = r.drill;
    const stepName = (s) => t(`drills.step.${s}`);
    const summary = table("drill-summary", [t("drills.step"), t("drills.count"), t("drills.median"), t("drills.max")],
      (r.summary || []).map((s) => el("tr", { dataset: { step: s.step } },
        el("td", { text: stepName(s.step) }), el("td", { text: s.count }),
        el("td", { text: dur(s.median_s) }), el("td", { text: dur(s.max_s) }))));
    const incidents = (r.incidents || []).map((i) => {
      const byStep = new Map((i.steps || []).map((s) => [s.step, s]));
      return el("tr", { dataset: { incidentId: i.incident_id } },
        el("td", { text: `#${i.incident_id} ${i.place_name}` }),
        el("td", { text: fw.fmtTime(i.first_ts) }),
        el("td", { text: i.verdict }),
        ...STEPS.map((step) => {
          const s = byStep.get(step);
          const done = s && typeof s.ts === "number";
          return el("td", { dataset: { step }, text: done ? `+${dur(s.seconds)} ${s.by || ""}`.trim() : t("drills.not_done") });
        }));
    });
    const tests = (r.test_events || []).map((e) => el("tr", {},
      el("td", { text: fw.fmtTime(e.ts) }), el("td", { text: e.device_id }), el("td", { text: e.place_name })));
    const pdf = el("button", { class: "minor", text: t("drills.pdf"), dataset: { role: "drill-pdf" },
      on: { click: () => fw.guarded(() => downloadPdf(d.id)) } });
    clear(section).append(el("section", { class: "panel", dataset: { role: "drill-report", drillId: d.id } },
      el("div", { class: "panel-head" },
        el("h2", { text: `${t("drills.report")}：${d.name}` }),
        el("a", { class: "link", text: t("drills.back"), attrs: { href: "#/drills" } }), pdf),
      el("p", { class: "meta", text: [
        (d.places || []).map(fw.placeName).join("、"),
        `${fw.fmtTime(d.start_ts)} – ${fw.fmtTime(d.ended_ts && d.ended_ts < d.end_ts ? d.ended_ts : d.end_ts)}`,
        t(`drills.status.${d.status}`),
      ].join(" · ") }),
      el("p", { dataset: { role: "drill-actors" }, text: `${t("drills.actors")}：${(r.actors || []).join("、") || "—"}` }),
      el("h3", { text: t("drills.summary") }), summary,
      el("h3", { text: t("drills.incidents") }),
      incidents.length
        ? table("drill-incidents", [t("drills.incident"), t("drills.first"), t("drills.verdict"), ...STEPS.map(stepName)], incidents)
        : el("p", { class: "empty", text: t("drills.no_incidents") }),
      el("h3", { text: t("drills.tests") }),
      tests.length
        ? table("drill-tests", [t("drills.time"), t("drills.device"), t("drills.place")], tests)
        : el("p", { class: "empty", text: t("drills.no_tests") })));
  }

  /** The PDF needs the Bearer header, so a plain link cannot fetch it: fetch, then save the blob. */
  async function downloadPdf(id) {
    const resp = await fw.request(`/api/v1/drills/${encodeURIComponent(id)}/report.pdf`, { accept: "application/pdf" });
    fw.saveBlob(await resp.blob(), `演练报告-${id}.pdf`);
  }
})();
