// The staff hazard report page (随手拍): what a QR code on a wall or a device opens. No sign-in: the
// token in the address says where the report is about. Chinese first, English on the toggle; data
// only ever set as text. A phone's photo is shrunk here (at most 1600 px, JPEG) before it is sent.
"use strict";

const I18N = {
  zh: {
    title: "消防隐患随手拍", where: "上报位置", description: "发现了什么问题？（必填）", photo: "拍照（可选）",
    name: "您的姓名（可选）", phone: "联系电话（可选，便于核实和奖励）", submit: "提交", sending: "正在提交…",
    done: "已收到，谢谢！", number: "整改单编号", done_hint: "消防控制室将派人处理。如需查询，请提供整改单编号。",
    again: "再报一条", note: "如遇火情请立即拨打 119 并按下最近的手动报警按钮。", lang: "English",
    need: "请描述发现的问题", bad_phone: "电话号码只能包含数字、+ 和 -",
    e404: "二维码无效或已停用，请联系消防控制室。", e413: "照片太大，请重新拍摄或选择较小的照片。",
    e415: "只能上传照片（JPEG、PNG、WebP 或 HEIC）。", e422: "填写的内容有误，请检查后再提交。",
    e429: "提交过于频繁，请稍后再试。", e503: "服务暂时不可用，请稍后再试或直接联系消防控制室。",
    network: "网络连接失败，请检查网络后重试。", loading: "正在读取位置…",
  },
  en: {
    title: "Report a fire hazard", where: "Location", description: "What is wrong? (required)", photo: "Photo (optional)",
    name: "Your name (optional)", phone: "Phone (optional, to check back and reward)", submit: "Send", sending: "Sending…",
    done: "Received, thank you!", number: "Ticket number", done_hint: "The fire control room will send someone. Quote the ticket number to ask about it.",
    again: "Report another", note: "In case of fire call 119 at once and press the nearest manual call point.", lang: "中文",
    need: "Describe what you found", bad_phone: "A phone number has digits, + and - only",
    e404: "This QR code is not in use. Please contact the fire control room.", e413: "The photo is too large: take or choose a smaller one.",
    e415: "Only photos can be sent (JPEG, PNG, WebP or HEIC).", e422: "Something in the form is not right: check it and send again.",
    e429: "Too many reports from here: try again later.", e503: "The service is unavailable: try again later or call the fire control room.",
    network: "No connection: check the network and try again.", loading: "Loading the location…",
  },
};

const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem("fw.report.lang") === "en" ? "en" : "zh";
const t = (key) => I18N[lang][key] ?? I18N.zh[key] ?? key;
const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const api = `/api/v1/public/reports/${encodeURIComponent(token)}`;
let lastError = "";

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("lang").textContent = t("lang");
  $("lang").setAttribute("lang", lang === "zh" ? "en" : "zh-CN");
  if (lastError) showError(lastError);
}

function showError(key) {
  lastError = key;
  $("error").textContent = key ? t(key) : "";
}

function errorKey(status) {
  return { 404: "e404", 413: "e413", 415: "e415", 422: "e422", 429: "e429", 503: "e503" }[status] || "e503";
}

async function loadPlace() {
  $("place").textContent = t("loading");
  let resp;
  try { resp = await fetch(api, { headers: { Accept: "application/json" } }); } catch { fatal("network"); return; }
  if (!resp.ok) { fatal(errorKey(resp.status)); return; }
  const where = await resp.json();
  $("place").textContent = String(where.place_name || "");
  $("device").textContent = String(where.device_name || "");
  $("device").hidden = !where.device_name;
  $("report-form").hidden = false;
}

function fatal(key) {
  $("where").hidden = true;
  $("report-form").hidden = true;
  $("fatal").hidden = false;
  $("fatal").dataset.i18n = key;
  $("fatal").textContent = t(key);
}

/** A phone camera's photo, shrunk to at most 1600 px on its long side as a JPEG; the file as it is
 * when the browser cannot draw it (the server checks the type and the size anyway). */
async function shrink(file) {
  if (!file || !file.type.startsWith("image/")) return file;
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    if (!blob || blob.size >= file.size) return file;
    return new File([blob], (file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg", { type: "image/jpeg" });
  } catch {
    return file;
  }
}

async function submit(ev) {
  ev.preventDefault();
  const description = $("description").value.trim();
  const phone = $("phone").value.trim();
  if (!description) { showError("need"); return; }
  if (!/^[0-9+\- ]*$/.test(phone)) { showError("bad_phone"); return; }
  showError("");
  const form = new FormData();
  form.append("description", description);
  form.append("name", $("name").value.trim());
  form.append("phone", phone);
  const file = $("photo").files[0];
  if (file) {
    const photo = await shrink(file);
    form.append("photo", photo, photo.name || "photo.jpg");
  }
  $("submit").disabled = true;
  $("submit").textContent = t("sending");
  try {
    let resp;
    try { resp = await fetch(api, { method: "POST", body: form }); } catch { showError("network"); return; }
    if (!resp.ok) { showError(errorKey(resp.status)); return; }
    const receipt = await resp.json();
    $("number").textContent = String(receipt.number || "");
    $("report-form").hidden = true;
    $("done").hidden = false;
  } finally {
    $("submit").disabled = false;
    $("submit").textContent = t("submit");
  }
}

function again() {
  $("report-form").reset();
  $("preview").hidden = true;
  $("done").hidden = true;
  $("report-form").hidden = false;
}

function preview() {
  const file = $("photo").files[0];
  if (!file) { $("preview").hidden = true; return; }
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("fw.report.lang", lang);
    applyLanguage();
  });
  $("report-form").addEventListener("submit", submit);
  $("again").addEventListener("click", again);
  $("photo").addEventListener("change", preview);
  applyLanguage();
  loadPlace();
});
