// The duty view (值班记录): the control room's duty log and its handovers (交接班), GB 25506-2010's duty
// and handover records (docs/duty.md).
//
// Route `#/duty`. The people on duty (operator, safety, leader, admin) write log entries; everyone
// signed in searches the log. The outgoing person starts a handover from here: the snapshot of what
// is open now (GET /api/v1/handovers/snapshot) is shown before they sign, with their notes and the
// incoming person (prefilled from the roster's next shift when GET /api/v1/roster/now answers). The
// incoming person countersigns in a dialog with their own user name and password at this screen, or
// from their own session. Each handover's shift report is a PDF, fetched signed in and saved.
"use strict";

(() => {
  const fw = window.fw;
  const { t, el, clear, api, request } = fw;

  fw.addI18n({
    "duty.tab": "值班记录", "duty.log": "值班记录", "duty.write": "写值班记录", "duty.kind": "类别",
    "duty.text": "内容", "duty.submit": "记录", "duty.need_text": "请填写内容",
    "duty.kind.patrol": "巡查", "duty.kind.alarm_handling": "报警处理", "duty.kind.equipment": "设备情况",
    "duty.kind.other": "来访与其他", "duty.kind.handover": "交接班", "duty.kind.all": "全部类别",
    "duty.search": "查询", "duty.q": "内容包含", "duty.author": "记录人（用户名）", "duty.since": "自",
    "duty.until": "至", "duty.time": "时间", "duty.by": "记录人", "duty.empty": "没有符合条件的记录",
    "duty.total": "共 {n} 条", "duty.prev": "上一页", "duty.next": "下一页", "duty.window_pdf": "导出本时段值班记录（PDF）",
    "duty.need_window": "请先选择起止时间",
    "ho.title": "交接班", "ho.start": "发起交班", "ho.start_title": "发起交班（交班人签字）",
    "ho.open_now": "当前未处理事项（交班时记录）", "ho.notes": "交班说明", "ho.incoming": "接班人用户名（可不填）",
    "ho.outgoing_is": "交班人：{who}", "ho.sign_start": "签字交班", "ho.id": "编号", "ho.outgoing": "交班人",
    "ho.started": "交班时间", "ho.incoming_col": "接班人", "ho.signed": "接班时间", "ho.open": "未处理事项",
    "ho.actions": "操作", "ho.pending": "待接班", "ho.countersign": "接班签字", "ho.pdf": "交接班记录（PDF）",
    "ho.empty": "暂无交接班记录",
    "ho.cs_title": "接班签字", "ho.cs_what": "交接班 {id}：{who} 于 {when} 交班", "ho.cs_user": "接班人用户名",
    "ho.cs_password": "接班人密码", "ho.cs_note": "接班说明", "ho.cs_submit": "签字接班",
    "ho.cs_self": "以本人登录身份接班", "ho.cs_need": "请接班人填写用户名和密码",
    "ho.cs_hint": "接班人在此输入本人的用户名和密码签字，交班人的登录不受影响。",
    "ho.c.incidents": "未结束事件", "ho.c.unacknowledged": "未确认报警", "ho.c.disabled": "屏蔽点位",
    "ho.c.faults": "故障", "ho.c.overdue_tickets": "超期整改单", "ho.counts": "事件 {i} · 未确认 {u} · 屏蔽 {d} · 故障 {f} · 超期 {o}",
    "ho.nothing": "无未处理事项", "ho.truncated": "每类最多列出 500 项",
  }, {
    "duty.tab": "Duty log", "duty.log": "Duty log", "duty.write": "Write to the duty log", "duty.kind": "Kind",
    "duty.text": "Entry", "duty.submit": "Record", "duty.need_text": "Write the entry first",
    "duty.kind.patrol": "Patrol", "duty.kind.alarm_handling": "Alarm handling", "duty.kind.equipment": "Equipment",
    "duty.kind.other": "Visitors and other", "duty.kind.handover": "Handover", "duty.kind.all": "All kinds",
    "duty.search": "Search", "duty.q": "Text contains", "duty.author": "Written by (user name)", "duty.since": "From",
    "duty.until": "To", "duty.time": "Time", "duty.by": "Written by", "duty.empty": "No entries match",
    "duty.total": "{n} entries", "duty.prev": "Previous", "duty.next": "Next", "duty.window_pdf": "Report of this window (PDF)",
    "duty.need_window": "Choose the window's start and end first",
    "ho.title": "Handovers", "ho.start": "Hand over", "ho.start_title": "Hand over (outgoing signature)",
    "ho.open_now": "Open now (recorded at the handover)", "ho.notes": "Handover notes", "ho.incoming": "Incoming person's user name (optional)",
    "ho.outgoing_is": "Outgoing: {who}", "ho.sign_start": "Sign and hand over", "ho.id": "No.", "ho.outgoing": "Outgoing",
    "ho.started": "Handed over", "ho.incoming_col": "Incoming", "ho.signed": "Countersigned", "ho.open": "Open then",
    "ho.actions": "Actions", "ho.pending": "Waiting", "ho.countersign": "Countersign", "ho.pdf": "Handover record (PDF)",
    "ho.empty": "No handovers yet",
    "ho.cs_title": "Countersign the handover", "ho.cs_what": "Handover {id}: {who} handed over at {when}", "ho.cs_user": "Incoming person's user name",
    "ho.cs_password": "Incoming person's password", "ho.cs_note": "Note", "ho.cs_submit": "Countersign",
    "ho.cs_self": "Countersign as the signed-in user", "ho.cs_need": "The incoming person enters their user name and password",
    "ho.cs_hint": "The incoming person signs here with their own user name and password; this screen stays signed in.",
    "ho.c.incidents": "Open incidents", "ho.c.unacknowledged": "Unacknowledged alarms", "ho.c.disabled": "Disabled points",
    "ho.c.faults": "Faults", "ho.c.overdue_tickets": "Overdue tickets", "ho.counts": "incidents {i} · unacked {u} · disabled {d} · faults {f} · overdue {o}",
    "ho.nothing": "Nothing open", "ho.truncated": "At most 500 listed of each",
  });

  const KEEPERS = ["operator", "safety", "leader"]; // who keeps the duty (and admin)
  const KINDS = ["patrol", "alarm_handling", "equipment", "other"];
  const COUNTS = ["incidents", "unacknowledged", "disabled", "faults", "overdue_tickets"];
  const PAGE = 50;
  const state = { q: "", kind: "", author: "", since: "", until: "", offset: 0 };
  let section = null;

  const keepsDuty = () => fw.heldRoles().some((r) => r === "admin" || KEEPERS.includes(r));
  const epoch = (local) => (local ? new Date(local).getTime() / 1000 : null);
  const me = () => (fw.session.me ? fw.session.me.name : "");

  function field(labelKey, input) {
    return el("label", { class: "field" }, el("span", { text: t(labelKey) }), input);
  }

  function kindSelect(id, withAll) {
    const s = el("select", { attrs: { id } });
    if (withAll) s.append(el("option", { text: t("duty.kind.all"), attrs: { value: "" } }));
    for (const k of withAll ? [...KINDS, "handover"] : KINDS) s.append(el("option", { text: t(`duty.kind.${k}`), attrs: { value: k } }));
    return s;
  }

  // --- the log -----------------------------------------------------------------------------------

  function writeForm() {
    const kind = kindSelect("duty-kind", false);
    const text = el("textarea", { attrs: { id: "duty-text", maxlength: "4000", rows: "3" } });
    const error = el("p", { class: "form-error", attrs: { id: "duty-write-error", role: "alert" } });
    const form = el("form", { class: "inline-form", attrs: { id: "duty-write-form", novalidate: "" } },
      el("h3", { text: t("duty.write") }), field("duty.kind", kind), field("duty.text", text), error,
      el("div", { class: "buttons" }, el("button", { class: "primary", text: t("duty.submit"), attrs: { type: "submit", id: "duty-write" } })));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!text.value.trim()) { error.textContent = t("duty.need_text"); return; }
      fw.guarded(async () => {
        try {
          await api("/api/v1/duty-log", { method: "POST", body: { kind: kind.value, text: text.value } });
        } catch (err) { error.textContent = err.message; return; }
        text.value = ""; error.textContent = ""; state.offset = 0;
        await renderLog();
      });
    });
    return form;
  }

  function searchForm() {
    const q = el("input", { attrs: { id: "duty-q", type: "search", maxlength: "200", value: state.q } });
    const kind = kindSelect("duty-search-kind", true);
    kind.value = state.kind;
    const author = el("input", { attrs: { id: "duty-author", type: "text", maxlength: "100", value: state.author } });
    const since = el("input", { attrs: { id: "duty-since", type: "datetime-local", value: state.since } });
    const until = el("input", { attrs: { id: "duty-until", type: "datetime-local", value: state.until } });
    const go = el("button", { class: "primary", text: t("duty.search"), attrs: { type: "submit", id: "duty-search" } });
    const pdf = el("button", { text: t("duty.window_pdf"), attrs: { type: "button", id: "duty-window-pdf" } });
    const form = el("form", { class: "duty-search", attrs: { id: "duty-search-form" } },
      field("duty.q", q), field("duty.kind", kind), field("duty.author", author),
      field("duty.since", since), field("duty.until", until), el("div", { class: "buttons" }, pdf, go));
    const take = () => Object.assign(state, { q: q.value.trim(), kind: kind.value, author: author.value.trim(), since: since.value, until: until.value });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); take(); state.offset = 0; fw.guarded(renderLog); });
    pdf.addEventListener("click", () => {
      take();
      if (!state.since || !state.until) { fw.showError(new fw.ApiError(t("duty.need_window"))); return; }
      fw.guarded(() => savePdf("/api/v1/duty-log/report.pdf", { start: epoch(state.since), end: epoch(state.until) }, "值班记录.pdf"));
    });
    return form;
  }

  async function renderLog() {
    const body = section.querySelector("#duty-log tbody");
    const page = await api("/api/v1/duty-log", {
      params: { q: state.q, kind: state.kind, author: state.author, since: epoch(state.since), until: epoch(state.until), limit: PAGE, offset: state.offset },
    });
    if (!page || !Array.isArray(page.items)) throw new fw.ApiError(t("error.format", { detail: "duty-log" }));
    clear(body).append(...page.items.map((e) => el("tr", { dataset: { kind: e.kind, id: e.id } },
      el("td", { text: fw.fmtTime(e.ts) }), el("td", { text: fw.label("duty.kind", e.kind) }),
      el("td", { text: e.author_name || fw.person(e.author), title: e.author }), el("td", { class: "duty-text", text: e.text }))));
    section.querySelector("#duty-log-empty").hidden = page.items.length > 0;
    section.querySelector("#duty-total").textContent = t("duty.total", { n: page.total });
    section.querySelector("#duty-prev").disabled = state.offset === 0;
    section.querySelector("#duty-next").disabled = state.offset + PAGE >= page.total;
  }

  // --- handovers ---------------------------------------------------------------------------------

  const countsText = (c) => t("ho.counts", { i: c.incidents, u: c.unacknowledged, d: c.disabled, f: c.faults, o: c.overdue_tickets });

  function snapshotView(snap) {
    const box = el("div", { class: "ho-snapshot", attrs: { id: "handover-snapshot" } });
    box.append(el("ul", { class: "ho-counts" }, ...COUNTS.map((k) => el("li", { dataset: { count: k } },
      `${t(`ho.c.${k}`)}：`, el("strong", { text: snap.counts[k] })))));
    const typeName = (a) => (fw.lang() === "zh" ? a.type_name : fw.typeLabel(a.alarm_type));
    const items = [
      ...snap.incidents.map((i) => `${fw.label("ikind", i.kind)} · ${fw.catLabel(i.category)} · ${i.place_name || fw.placeName(i.place)} · ${i.acked_by ? fw.person(i.acked_by) : t("inc.unacked")}`),
      ...["unacknowledged", "disabled", "faults"].flatMap((k) => snap[k].map((a) =>
        `${t(`ho.c.${k}`)}：${typeName(a)} · ${a.place_name || fw.placeName(a.place)} · ${fw.fmtTime(a.first_ts)}`)),
      ...snap.overdue_tickets.map((tk) => `${t("ho.c.overdue_tickets")}：${tk.number} · ${tk.place_name || fw.placeName(tk.place)} · ${tk.problem}`),
    ];
    box.append(items.length ? el("ul", { class: "ho-items" }, ...items.map((s) => el("li", { text: s }))) : el("p", { class: "muted", text: t("ho.nothing") }));
    if (snap.truncated) box.append(el("p", { class: "muted", text: t("ho.truncated") }));
    return box;
  }

  function dialog(id) {
    let d = document.getElementById(id);
    if (!d) { d = el("dialog", { class: "dialog", attrs: { id } }); document.body.append(d); }
    return clear(d);
  }

  async function openStart() {
    const [snap, now] = await Promise.all([api("/api/v1/handovers/snapshot"), rosterNow()]);
    const d = dialog("handover-dialog");
    const incoming = el("input", { attrs: { id: "handover-incoming", type: "text", maxlength: "64", autocapitalize: "off", spellcheck: "false" } });
    incoming.value = nextPerson(now);
    const notes = el("textarea", { attrs: { id: "handover-notes", maxlength: "4000", rows: "3" } });
    const error = el("p", { class: "form-error", attrs: { id: "handover-error", role: "alert" } });
    const cancel = el("button", { text: t("cancel"), attrs: { type: "button" }, on: { click: () => d.close() } });
    const form = el("form", { attrs: { method: "dialog", novalidate: "" } },
      el("h2", { text: t("ho.start_title") }), el("p", { class: "muted", text: t("ho.outgoing_is", { who: fw.whoName() }) }),
      el("h3", { text: t("ho.open_now") }), snapshotView(snap), field("ho.notes", notes), field("ho.incoming", incoming), error,
      el("div", { class: "buttons" }, cancel, el("button", { class: "primary", text: t("ho.sign_start"), attrs: { type: "submit", id: "handover-submit" } })));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      fw.guarded(async () => {
        const body = { notes: notes.value };
        if (incoming.value.trim()) body.incoming = incoming.value.trim();
        try { await api("/api/v1/handovers", { method: "POST", body }); } catch (err) { error.textContent = err.message; return; }
        d.close();
        await render(null, section);
      });
    });
    d.append(form);
    d.showModal();
  }

  function openCountersign(h) {
    const d = dialog("countersign-dialog");
    const user = el("input", { attrs: { id: "countersign-user", type: "text", maxlength: "64", autocomplete: "off", autocapitalize: "off", spellcheck: "false" } });
    if (h.incoming_expected) user.value = h.incoming_expected;
    const password = el("input", { attrs: { id: "countersign-password", type: "password", maxlength: "256", autocomplete: "off" } });
    const note = el("textarea", { attrs: { id: "countersign-note", maxlength: "2000", rows: "2" } });
    const error = el("p", { class: "form-error", attrs: { id: "countersign-error", role: "alert" } });
    const send = (body) => fw.guarded(async () => {
      try {
        await api(`/api/v1/handovers/${h.id}/countersign`, { method: "POST", body: { ...body, note: note.value } });
      } catch (err) { error.textContent = err.message; password.value = ""; return; }
      d.close();
      await render(null, section);
    });
    const buttons = el("div", { class: "buttons" }, el("button", { text: t("cancel"), attrs: { type: "button" }, on: { click: () => d.close() } }));
    if (me() !== h.outgoing && keepsDuty()) {
      buttons.append(el("button", { text: t("ho.cs_self"), attrs: { type: "button", id: "countersign-self" }, on: { click: () => send({}) } }));
    }
    buttons.append(el("button", { class: "primary", text: t("ho.cs_submit"), attrs: { type: "submit", id: "countersign-submit" } }));
    const form = el("form", { attrs: { method: "dialog", novalidate: "" } },
      el("h2", { text: t("ho.cs_title") }),
      el("p", { class: "what", text: t("ho.cs_what", { id: h.id, who: h.outgoing_name || h.outgoing, when: fw.fmtTime(h.started_ts) }) }),
      el("p", { class: "muted", text: t("ho.cs_hint") }),
      field("ho.cs_user", user), field("ho.cs_password", password), field("ho.cs_note", note), error, buttons);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!user.value.trim() || !password.value) { error.textContent = t("ho.cs_need"); return; }
      send({ username: user.value.trim(), password: password.value });
    });
    d.append(form);
    d.showModal();
    (h.incoming_expected ? password : user).focus();
  }

  /** The PDF needs the Bearer header: fetch it, then save the blob. */
  async function savePdf(path, params, filename) {
    const resp = await request(path, { params, accept: "application/pdf" });
    fw.saveBlob(await resp.blob(), filename);
  }

  async function rosterNow() {
    try { return await api("/api/v1/roster/now"); } catch (err) { if (err instanceof fw.SignedOut) throw err; return null; }
  }

  /** The roster's next shift's first person who is not me: who will most likely take over. */
  function nextPerson(now) {
    const shift = now && now.next_shift;
    const members = shift && Array.isArray(shift.members) ? shift.members : [];
    const other = members.find((m) => m && m.user && m.user !== me());
    return other ? other.user : "";
  }

  async function renderHandovers() {
    const page = await api("/api/v1/handovers", { params: { limit: 50 } });
    if (!page || !Array.isArray(page.items)) throw new fw.ApiError(t("error.format", { detail: "handovers" }));
    const body = section.querySelector("#handovers tbody");
    clear(body).append(...page.items.map((h) => {
      const signed = h.countersigned_ts !== null && h.countersigned_ts !== undefined;
      const actions = el("td", { class: "ho-actions" });
      if (!signed && keepsDuty()) actions.append(el("button", { class: "primary", text: t("ho.countersign"), dataset: { action: "countersign" }, on: { click: () => openCountersign(h) } }));
      actions.append(el("button", { class: "link", text: t("ho.pdf"), dataset: { action: "pdf" },
        on: { click: () => fw.guarded(() => savePdf(`/api/v1/handovers/${h.id}/report.pdf`, {}, `交接班记录-${h.id}.pdf`)) } }));
      return el("tr", { dataset: { id: h.id, signed: String(signed) } },
        el("td", { text: h.id }), el("td", { text: h.outgoing_name || h.outgoing }), el("td", { text: fw.fmtTime(h.started_ts) }),
        el("td", { text: signed ? h.incoming_name || h.incoming : t("ho.pending") }), el("td", { text: signed ? fw.fmtTime(h.countersigned_ts) : "—" }),
        el("td", { text: countsText(h.counts) }), actions);
    }));
    section.querySelector("#handovers-empty").hidden = page.items.length > 0;
    const now = await rosterNow();
    section.querySelector("#duty-now").textContent = now && typeof now.message === "string" ? now.message : "";
  }

  function table(id, keys) {
    return el("table", { class: "grid-table", attrs: { id } }, el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", { text: t(k) })))), el("tbody"));
  }

  async function render(_arg, into) {
    section = into;
    const prev = el("button", { text: t("duty.prev"), attrs: { type: "button", id: "duty-prev" }, on: { click: () => { state.offset = Math.max(0, state.offset - PAGE); fw.guarded(renderLog); } } });
    const next = el("button", { text: t("duty.next"), attrs: { type: "button", id: "duty-next" }, on: { click: () => { state.offset += PAGE; fw.guarded(renderLog); } } });
    const handovers = el("section", { class: "panel", attrs: { id: "duty-handovers" } },
      el("div", { class: "panel-head" }, el("h2", { text: t("ho.title") }), el("span", { class: "muted", attrs: { id: "duty-now" } }),
        keepsDuty() ? el("button", { class: "primary", text: t("ho.start"), attrs: { type: "button", id: "handover-start" }, on: { click: () => fw.guarded(openStart) } }) : null),
      table("handovers", ["ho.id", "ho.outgoing", "ho.started", "ho.incoming_col", "ho.signed", "ho.open", "ho.actions"]),
      el("p", { class: "empty", text: t("ho.empty"), attrs: { id: "handovers-empty", hidden: "" } }));
    const log = el("section", { class: "panel", attrs: { id: "duty-log-panel" } },
      el("div", { class: "panel-head" }, el("h2", { text: t("duty.log") }), el("span", { class: "muted", attrs: { id: "duty-total" } })),
      keepsDuty() ? writeForm() : null, searchForm(),
      table("duty-log", ["duty.time", "duty.kind", "duty.by", "duty.text"]),
      el("p", { class: "empty", text: t("duty.empty"), attrs: { id: "duty-log-empty", hidden: "" } }),
      el("div", { class: "buttons" }, prev, next));
    clear(into).append(el("div", { class: "duty-grid" }, handovers, log));
    await Promise.all([renderLog(), renderHandovers()]);
  }

  fw.registerView("duty", { tabKey: "duty.tab", roles: [], render });
})();
