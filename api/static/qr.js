// 随手拍二维码: the staff hazard report QR codes of a place and everything below it, for the safety
// office to print (a PDF of labels) and to revoke one by one (GET /api/v1/report-codes, sheet.pdf,
// POST /api/v1/report-codes/{id}/revoke). Each code opens /report/<token> on a phone.
"use strict";

(() => {
  const fw = window.fw;
  const { t, el, clear } = fw;

  fw.addI18n({
    "nav.qr": "随手拍二维码",
    "qr.title": "消防隐患随手拍二维码", "qr.place": "位置（含下级位置和设备）", "qr.choose": "请选择位置",
    "qr.list": "显示二维码", "qr.pdf": "下载打印版（PDF）", "qr.base": "手机访问地址",
    "qr.hint": "每个位置和设备一个二维码。张贴后，员工和陪护扫码即可上报隐患，无需登录；上报会生成整改单。",
    "qr.col.place": "位置", "qr.col.device": "设备", "qr.col.reports": "已上报", "qr.col.link": "上报页面",
    "qr.revoke": "停用", "qr.revoke_confirm": "停用这个二维码？已张贴的该码将无法再上报，下次显示时会生成新码。",
    "qr.open": "打开", "qr.count": "共 {n} 个二维码",
  }, {
    "nav.qr": "Report QR codes",
    "qr.title": "Hazard report QR codes", "qr.place": "Place (with the places and devices below)", "qr.choose": "Choose a place",
    "qr.list": "Show codes", "qr.pdf": "Download to print (PDF)", "qr.base": "Address phones use",
    "qr.hint": "One code per place and device. Posted, staff and visitors scan it to report a hazard without signing in; a report opens a ticket.",
    "qr.col.place": "Place", "qr.col.device": "Device", "qr.col.reports": "Reports", "qr.col.link": "Report page",
    "qr.revoke": "Revoke", "qr.revoke_confirm": "Revoke this code? The posted label stops working; a new code is made the next time the list is shown.",
    "qr.open": "Open", "qr.count": "{n} codes",
  });

  const state = { place: "", base: "" };

  function params() {
    const p = { place: state.place };
    if (state.base) p.base_url = state.base;
    return p;
  }

  async function downloadSheet() {
    const resp = await fw.request("/api/v1/report-codes/sheet.pdf", { params: params(), accept: "application/pdf" });
    fw.saveBlob(await resp.blob(), "随手拍二维码.pdf");
  }

  async function revoke(code, box) {
    if (!window.confirm(t("qr.revoke_confirm"))) return;
    await fw.request(`/api/v1/report-codes/${encodeURIComponent(code.id)}/revoke`, { method: "POST" });
    await drawCodes(box);
  }

  async function drawCodes(box) {
    clear(box);
    if (!state.place) return;
    const list = await fw.api("/api/v1/report-codes", { params: params() });
    if (!Array.isArray(list)) throw new fw.ApiError(t("error.format", { detail: "report codes" }));
    box.append(el("p", { class: "muted", text: t("qr.count", { n: list.length }), attrs: { id: "qr-count" } }));
    const rows = list.map((c) => el("tr", { dataset: { codeId: c.id, deviceId: c.device_id || "" } },
      el("td", { text: c.place_name || fw.placeName(c.place), dataset: { label: t("qr.col.place") } }),
      el("td", { text: c.device_name || "—", dataset: { label: t("qr.col.device") } }),
      el("td", { text: c.reports, dataset: { label: t("qr.col.reports") } }),
      el("td", {}, el("a", { text: t("qr.open"), attrs: { href: c.url, target: "_blank", rel: "noopener" } })),
      el("td", {}, el("button", { text: t("qr.revoke"), dataset: { role: "revoke" }, on: { click: () => fw.guarded(() => revoke(c, box)) } }))));
    box.append(el("div", { class: "table-scroll" }, el("table", { class: "grid-table", attrs: { id: "qr-table" } },
      el("thead", {}, el("tr", {}, ...["qr.col.place", "qr.col.device", "qr.col.reports", "qr.col.link", "qr.revoke"].map((k) => el("th", { text: t(k) })))),
      el("tbody", {}, ...rows))));
  }

  async function render(_arg, section) {
    if (!fw.places.loaded) await fw.guarded(fw.loadPlaces);
    clear(section);
    if (!state.base) state.base = location.origin;
    const placeSelect = el("select", { attrs: { id: "qr-place" } }, el("option", { text: t("qr.choose"), attrs: { value: "" } }));
    const sorted = [...(fw.places.list || [])].filter((p) => p && typeof p.path === "string").sort((a, b) => a.path.localeCompare(b.path));
    for (const p of sorted) placeSelect.append(el("option", { text: `${"　".repeat(p.path.split("/").length - 1)}${p.name || p.path}`, attrs: { value: p.path } }));
    placeSelect.value = state.place;
    const base = el("input", { attrs: { id: "qr-base", type: "url", value: state.base, maxlength: 200 } });
    const results = el("div", { attrs: { id: "qr-results" } });
    const read = () => { state.place = placeSelect.value; state.base = base.value.trim().replace(/\/+$/, ""); };
    section.append(el("section", { class: "panel" },
      el("h2", { text: t("qr.title") }),
      el("p", { class: "muted", text: t("qr.hint") }),
      el("div", { class: "history-form" },
        el("label", { class: "field" }, el("span", { text: t("qr.place") }), placeSelect),
        el("label", { class: "field" }, el("span", { text: t("qr.base") }), base),
        el("div", { class: "actions" },
          el("button", { text: t("qr.list"), attrs: { id: "qr-list" }, on: { click: () => { read(); fw.guarded(() => drawCodes(results)); } } }),
          el("button", { class: "primary", text: t("qr.pdf"), attrs: { id: "qr-pdf" }, on: { click: () => { read(); if (state.place) fw.guarded(downloadSheet); } } }))),
      results));
    if (state.place) await drawCodes(results);
  }

  fw.registerView("qr", { tabKey: "nav.qr", roles: ["safety"], render });
})();
