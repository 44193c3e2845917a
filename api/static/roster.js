// The duty roster view (值班表, #/roster): who is on duty now, this week's shifts, and for the safety
// office and admins adding, changing and deleting shifts, the XLSX import with its row errors, the
// template and export downloads, and people's phone numbers and push addresses (docs/duty.md).
// Data is only ever inserted as text (fw.el); every string goes through fw.t.
"use strict";

(() => {
  const fw = window.fw;
  const { t, el, clear } = fw;
  const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  const DAY_S = 86400;
  const ROLES = ["control_room", "micro_fire_station", "leader_on_call"];
  const EDITORS = ["safety", "admin"];

  fw.addI18n(
    {
      "nav.roster": "值班表",
      "roster.now": "当前值班",
      "roster.nobody": "当前无人值班：值班表在此时段没有班次",
      "roster.next": "下一班次：{name}（{start} 起）",
      "roster.week": "本周班次",
      "roster.shift": "班次", "roster.start": "开始", "roster.end": "结束", "roster.other": "其他岗位",
      "roster.actions": "操作", "roster.phone": "电话",
      "roster.gap": "空档：{start} 至 {end} 无人值班",
      "roster.none": "本周没有班次",
      "roster.role.control_room": "消防控制室",
      "roster.role.micro_fire_station": "微型消防站",
      "roster.role.leader_on_call": "值班领导",
      "roster.add": "新增班次", "roster.edit": "修改", "roster.delete": "删除",
      "roster.save": "保存班次", "roster.cancel": "取消",
      "roster.name": "班次名称",
      "roster.confirmDelete": "删除班次「{name}」？",
      "roster.saved": "已保存",
      "roster.rules": "每班消防控制室至少 2 人（GB 25506-2010），值班领导 1 人，同一人每班只出现一次，班次不得重叠。",
      "roster.import": "导入 XLSX", "roster.importFile": "选择值班表文件",
      "roster.imported": "已导入 {n} 个班次",
      "roster.template": "下载模板", "roster.export": "导出本周",
      "roster.contacts": "人员联系方式", "roster.addresses": "推送地址（每行一个）",
      "roster.saveContact": "保存", "roster.person": "人员",
      "roster.problems": "未保存，请修改：",
    },
    {
      "nav.roster": "Duty roster",
      "roster.now": "On duty now",
      "roster.nobody": "Nobody is on duty now: the roster has no shift at this time",
      "roster.next": "Next shift: {name} (from {start})",
      "roster.week": "This week's shifts",
      "roster.shift": "Shift", "roster.start": "Start", "roster.end": "End", "roster.other": "Other roles",
      "roster.actions": "Actions", "roster.phone": "Phone",
      "roster.gap": "Gap: nobody on duty from {start} to {end}",
      "roster.none": "No shifts this week",
      "roster.role.control_room": "Fire control room",
      "roster.role.micro_fire_station": "Micro fire station",
      "roster.role.leader_on_call": "Leader on call",
      "roster.add": "Add a shift", "roster.edit": "Edit", "roster.delete": "Delete",
      "roster.save": "Save shift", "roster.cancel": "Cancel",
      "roster.name": "Shift name",
      "roster.confirmDelete": "Delete the shift \"{name}\"?",
      "roster.saved": "Saved",
      "roster.rules": "Each shift: at least 2 in the fire control room (GB 25506-2010), 1 leader on call, a person once, no overlapping shifts.",
      "roster.import": "Import XLSX", "roster.importFile": "Choose a roster file",
      "roster.imported": "{n} shifts imported",
      "roster.template": "Download template", "roster.export": "Export this week",
      "roster.contacts": "People's contacts", "roster.addresses": "Push addresses (one a line)",
      "roster.saveContact": "Save", "roster.person": "Person",
      "roster.problems": "Not saved; please fix:",
    },
  );

  const roleText = (role) => (ROLES.includes(role) ? t(`roster.role.${role}`) : role);
  const mayEdit = () => fw.heldRoles().some((r) => EDITORS.includes(r));
  const personText = (m) => (m.phone ? `${m.display_name || m.user} ${m.phone}` : m.display_name || m.user);
  const state = { editing: null, message: null, problems: [], people: [] };

  /** The messages of a refusal, one by one: the rules' and the sheet's errors as the API gives them. */
  function problemsOf(err) {
    const errors = err && err.problem && Array.isArray(err.problem.errors) ? err.problem.errors : [];
    const list = errors.map((e) => String(e.msg ?? "")).filter((m) => m);
    return list.length ? list : [err && err.message ? err.message : String(err)];
  }

  function localInput(ts) {
    const d = new Date(ts * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
  }

  function weekStart() {
    const d = new Date(fw.serverNow() * 1000);
    d.setHours(0, 0, 0, 0);
    return d.getTime() / 1000;
  }

  async function download(path, params, filename) {
    const resp = await fw.request(path, { params, accept: XLSX });
    fw.saveBlob(await resp.blob(), filename);
  }

  function nowCard(now) {
    const box = el("div", { class: "roster-now", attrs: { id: "roster-now" } }, el("h2", { text: t("roster.now") }));
    if (!now.covered || !now.shift) {
      box.append(el("p", { class: "roster-gap", text: t("roster.nobody") }));
    } else {
      box.append(el("p", { class: "roster-shift-name", text: `${now.shift.name} · ${fw.fmtTime(now.shift.start_ts)} – ${fw.fmtTime(now.shift.end_ts)}` }));
      const list = el("ul", { class: "roster-people" });
      for (const m of now.shift.members) {
        list.append(el("li", { dataset: { user: m.user, role: m.role } },
          el("span", { class: "roster-role", text: roleText(m.role) }), " ",
          el("span", { class: "roster-person", text: m.display_name || m.user }),
          m.phone ? el("span", { class: "roster-phone", text: ` ${m.phone}` }) : null));
      }
      box.append(list);
    }
    if (now.next_shift) {
      box.append(el("p", { class: "muted", text: t("roster.next", { name: now.next_shift.name, start: fw.fmtTime(now.next_shift.start_ts) }) }));
    }
    return box;
  }

  function weekTable(roster, section) {
    const table = el("table", { class: "grid-table roster-table", attrs: { id: "roster-table" } });
    const head = el("tr", {}, el("th", { text: t("roster.shift") }), el("th", { text: t("roster.start") }), el("th", { text: t("roster.end") }),
      ...ROLES.map((r) => el("th", { text: roleText(r) })), el("th", { text: t("roster.other") }));
    if (mayEdit()) head.append(el("th", { text: t("roster.actions") }));
    table.append(el("thead", {}, head));
    const body = el("tbody");
    for (const s of roster.shifts) {
      const byRole = (role) => s.members.filter((m) => m.role === role).map(personText).join("、");
      const other = s.members.filter((m) => !ROLES.includes(m.role)).map((m) => `${roleText(m.role)} ${personText(m)}`).join("、");
      const row = el("tr", { dataset: { shift: s.id } }, el("td", { text: s.name }), el("td", { text: fw.fmtTime(s.start_ts) }),
        el("td", { text: fw.fmtTime(s.end_ts) }), ...ROLES.map((r) => el("td", { text: byRole(r) })), el("td", { text: other }));
      if (mayEdit()) {
        row.append(el("td", {},
          el("button", { class: "link", text: t("roster.edit"), dataset: { role: "edit" }, on: { click: () => { state.editing = s; state.problems = []; render(null, section); } } }),
          " ",
          el("button", { class: "link", text: t("roster.delete"), dataset: { role: "delete" }, on: { click: () => fw.guarded(async () => {
            if (!window.confirm(t("roster.confirmDelete", { name: s.name }))) return;
            await fw.request(`/api/v1/roster/${s.id}`, { method: "DELETE" });
            await render(null, section);
          }) } })));
      }
      body.append(row);
    }
    table.append(body);
    const parts = [table];
    if (!roster.shifts.length) parts.push(el("p", { class: "muted", text: t("roster.none") }));
    const gaps = el("ul", { class: "roster-gaps", attrs: { id: "roster-gaps" } });
    for (const g of roster.gaps) gaps.append(el("li", { text: t("roster.gap", { start: fw.fmtTime(g.start_ts), end: fw.fmtTime(g.end_ts) }) }));
    parts.push(gaps);
    return parts;
  }

  function problemList() {
    const box = el("div", { class: "roster-problems", attrs: { id: "roster-problems", role: "alert" } });
    if (state.problems.length) {
      box.append(el("p", { text: t("roster.problems") }));
      const list = el("ul");
      for (const p of state.problems) list.append(el("li", { text: p }));
      box.append(list);
    }
    if (state.message) box.append(el("p", { class: "roster-message", text: state.message }));
    return box;
  }

  function shiftForm(section) {
    const s = state.editing && state.editing !== "new" ? state.editing : null;
    const start = s ? s.start_ts : weekStart() + 8 * 3600;
    const end = s ? s.end_ts : start + 12 * 3600;
    const name = el("input", { attrs: { id: "roster-name", maxlength: 32, value: s ? s.name : "白班" } });
    const from = el("input", { attrs: { id: "roster-start", type: "datetime-local", value: localInput(start) } });
    const to = el("input", { attrs: { id: "roster-end", type: "datetime-local", value: localInput(end) } });
    const pickers = ROLES.map((role) => {
      const select = el("select", { attrs: { id: `roster-pick-${role}`, multiple: "", size: 5 } });
      for (const p of state.people) {
        const chosen = s && s.members.some((m) => m.user === p.user && m.role === role);
        const option = el("option", { text: p.display_name ? `${p.display_name}（${p.user}）` : p.user, attrs: { value: p.user } });
        option.selected = Boolean(chosen);
        select.append(option);
      }
      return { role, select };
    });
    const save = el("button", { class: "primary", text: t("roster.save"), attrs: { id: "roster-save", type: "button" }, on: { click: () => fw.guarded(async () => {
      const members = pickers.flatMap(({ role, select }) => [...select.selectedOptions].map((o) => ({ user: o.value, role })));
      const body = {
        name: name.value.trim(),
        start_ts: new Date(from.value).getTime() / 1000,
        end_ts: new Date(to.value).getTime() / 1000,
        members,
      };
      try {
        const saved = await fw.api(s ? `/api/v1/roster/${s.id}` : "/api/v1/roster", { method: s ? "PUT" : "POST", body });
        state.editing = null;
        state.problems = saved.warnings || [];
        state.message = t("roster.saved");
      } catch (err) {
        if (!(err instanceof fw.ApiError) || err.status !== 422) throw err;
        state.problems = problemsOf(err);
        state.message = null;
        clear(section.querySelector("#roster-problems")).replaceWith(problemList());
        return;
      }
      await render(null, section);
    }) } });
    const cancel = el("button", { class: "tool", text: t("roster.cancel"), attrs: { type: "button" }, on: { click: () => { state.editing = null; state.problems = []; render(null, section); } } });
    return el("div", { class: "roster-form", attrs: { id: "roster-form" } },
      el("p", { class: "muted", text: t("roster.rules") }),
      el("label", {}, t("roster.name"), " ", name), " ",
      el("label", {}, t("roster.start"), " ", from), " ",
      el("label", {}, t("roster.end"), " ", to),
      el("div", { class: "roster-pickers" }, ...pickers.map(({ role, select }) => el("label", { class: "roster-pick" }, roleText(role), select))),
      el("div", {}, save, " ", cancel));
  }

  function tools(section, start) {
    const file = el("input", { attrs: { id: "roster-file", type: "file", accept: ".xlsx", title: t("roster.importFile") } });
    const importButton = el("button", { class: "tool", text: t("roster.import"), attrs: { id: "roster-import", type: "button" }, on: { click: () => fw.guarded(async () => {
      if (!file.files || !file.files.length) return;
      try {
        const done = await fw.api("/api/v1/roster/import", { method: "POST", body: new Blob([file.files[0]], { type: XLSX }) });
        state.problems = [];
        state.message = t("roster.imported", { n: done.created.length });
      } catch (err) {
        if (!(err instanceof fw.ApiError) || err.status !== 422) throw err;
        state.problems = problemsOf(err);
        state.message = null;
      }
      await render(null, section);
    }) } });
    const bar = el("div", { class: "roster-tools" });
    if (mayEdit()) {
      bar.append(el("button", { class: "tool", text: t("roster.add"), attrs: { id: "roster-add", type: "button" }, on: { click: () => { state.editing = "new"; state.problems = []; state.message = null; render(null, section); } } }), " ",
        file, importButton, " ",
        el("button", { class: "tool", text: t("roster.template"), attrs: { id: "roster-template", type: "button" }, on: { click: () => fw.guarded(() => download("/api/v1/roster/template.xlsx", {}, "值班表模板.xlsx")) } }), " ");
    }
    bar.append(el("button", { class: "tool", text: t("roster.export"), attrs: { id: "roster-export", type: "button" }, on: { click: () => fw.guarded(() => download("/api/v1/roster/export.xlsx", { start, end: start + 7 * DAY_S }, "值班表.xlsx")) } }));
    return bar;
  }

  function contactsTable(section) {
    const table = el("table", { class: "grid-table roster-contacts", attrs: { id: "roster-contacts" } },
      el("thead", {}, el("tr", {}, el("th", { text: t("roster.person") }), el("th", { text: t("roster.phone") }), el("th", { text: t("roster.addresses") }), el("th"))));
    const body = el("tbody");
    for (const p of state.people) {
      const phone = el("input", { attrs: { maxlength: 32, value: p.phone || "" } });
      const addresses = el("textarea", { attrs: { rows: 2, cols: 40 } });
      addresses.value = (p.addresses || []).join("\n");
      const save = el("button", { class: "tool", text: t("roster.saveContact"), attrs: { type: "button" }, on: { click: () => fw.guarded(async () => {
        const list = addresses.value.split("\n").map((a) => a.trim()).filter((a) => a);
        try {
          await fw.api(`/api/v1/roster/contacts/${encodeURIComponent(p.user)}`, { method: "PUT", body: { phone: phone.value.trim(), addresses: list } });
          state.problems = [];
          state.message = `${p.display_name || p.user}：${t("roster.saved")}`;
        } catch (err) {
          if (!(err instanceof fw.ApiError) || err.status !== 422) throw err;
          state.problems = problemsOf(err).map((m) => `${p.display_name || p.user}：${m}`);
          state.message = null;
        }
        await render(null, section);
      }) } });
      body.append(el("tr", { dataset: { user: p.user } }, el("td", { text: p.display_name || p.user, title: p.display_name ? p.user : "" }), el("td", {}, phone), el("td", {}, addresses), el("td", {}, save)));
    }
    table.append(body);
    return el("div", {}, el("h2", { text: t("roster.contacts") }), table);
  }

  async function render(_arg, section) {
    const start = weekStart();
    const [now, roster] = await Promise.all([
      fw.api("/api/v1/roster/now"),
      fw.api("/api/v1/roster", { params: { start, end: start + 7 * DAY_S } }),
    ]);
    state.people = mayEdit() ? await fw.api("/api/v1/roster/contacts") : [];
    clear(section).append(
      nowCard(now),
      el("h2", { text: t("roster.week") }),
      tools(section, start),
      problemList(),
      ...(state.editing ? [shiftForm(section)] : []),
      ...weekTable(roster, section),
      ...(mayEdit() ? [contactsTable(section)] : []),
    );
  }

  fw.registerView("roster", { tabKey: "nav.roster", roles: [], render: (arg, section) => fw.guarded(() => render(arg, section)) });
})();
