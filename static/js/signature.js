// The consent form on the tablet: the way of consenting shows only its own fields; the signature
// pad draws with finger, stylus or mouse (Pointer Events) and on submit puts the drawing into the
// hidden field as a PNG data URL; and the form is checked before anything is saved, with the
// same error summary and marks as the server's (GOV.UK pattern), in the peer's language.
const canvas = document.getElementById("signature-pad");
const field = document.getElementById("signature");
const clear = document.getElementById("signature-clear");
const form = document.getElementById("consent-form");
const stringsEl = document.getElementById("consent-strings");
const strings = stringsEl ? JSON.parse(stringsEl.textContent) : {};
let drawn = false;
// A signature kept from a rejected submission, until it is drawn again on a pad that is shown.
let kept = field && field.value.startsWith("data:image/png;base64,") ? field.value : null;

function setupMethodToggle() {
  const radios = form.querySelectorAll("input[name=method]");
  const tablet = form.querySelector(".method-tablet");
  const paper = form.querySelector(".method-paper");
  const update = () => {
    // before a choice neither is shown: the choice comes first
    const chosen = form.querySelector("input[name=method]:checked");
    tablet.hidden = !chosen || chosen.value !== "tablet";
    paper.hidden = !chosen || chosen.value !== "paper";
    // the pad measures itself; a pad shown after being hidden must measure again
    window.dispatchEvent(new Event("resize"));
  };
  radios.forEach((r) => r.addEventListener("change", update));
  update();
}

function setupPad() {
  const ctx = canvas.getContext("2d");
  let drawing = false;

  const resize = () => {
    // Match the bitmap to the displayed size so strokes land under the finger.
    const rect = canvas.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) return; // hidden: measure when shown
    const ratio = window.devicePixelRatio || 1;
    const snapshot = kept || (drawn ? canvas.toDataURL("image/png") : null);
    canvas.width = Math.round(rect.width * ratio);
    canvas.height = Math.round(rect.height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.lineWidth = 2.5;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#111";
    if (snapshot) {
      const img = new Image();
      img.onload = () => {
        ctx.drawImage(img, 0, 0, rect.width, rect.height);
        if (snapshot === kept) kept = null; // on the pad now: the pad speaks for it
      };
      img.src = snapshot;
    }
  };
  const point = (e) => {
    const rect = canvas.getBoundingClientRect();
    return [e.clientX - rect.left, e.clientY - rect.top];
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = point(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 0.1, y + 0.1);
    ctx.stroke();
    drawn = true;
    e.preventDefault();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const [x, y] = point(e);
    ctx.lineTo(x, y);
    ctx.stroke();
    e.preventDefault();
  });
  const end = () => {
    drawing = false;
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  clear.addEventListener("click", () => {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    drawn = false;
    kept = null;
    field.value = "";
  });
  window.addEventListener("resize", resize);
  drawn = Boolean(kept);
  resize();
}

// Error marks: a message under the legend or label, named by the field's aria-describedby,
// the field's inputs aria-invalid, and the summary at the top naming each with a link.
function unmark() {
  form.querySelector(".error-summary")?.remove();
  form.querySelectorAll("ul.errors").forEach((list) => {
    form.querySelectorAll("[aria-describedby]").forEach((el) => {
      const rest = el.getAttribute("aria-describedby").split(" ").filter((id) => id && id !== list.id);
      if (rest.length) el.setAttribute("aria-describedby", rest.join(" "));
      else el.removeAttribute("aria-describedby");
    });
    list.remove();
  });
  form.querySelectorAll(".has-error").forEach((el) => el.classList.remove("has-error"));
  form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
}

function mark({ box, before, described, invalid, id, message }) {
  box.classList.add("has-error");
  const list = document.createElement("ul");
  list.className = "errors";
  list.id = id;
  const li = document.createElement("li");
  li.textContent = message;
  list.append(li);
  before.before(list);
  const ids = (described.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
  described.setAttribute("aria-describedby", [...ids, id].join(" "));
  invalid.forEach((el) => el.setAttribute("aria-invalid", "true"));
}

// "Answer yes or no: %(item)s" with the item's own words (and language) in place of %(item)s
function withItem(format, legendWords) {
  const [head, tail = ""] = format.split("%(item)s");
  const words = document.createElement("span");
  words.lang = legendWords.lang;
  words.textContent = legendWords.textContent;
  return [head, words, tail];
}

function problems() {
  const found = [];
  const method = form.querySelector("input[name=method]:checked");
  const radios = [...form.querySelectorAll("input[name=method]")];
  if (!method) {
    const box = radios[0].closest("fieldset");
    found.push({
      target: radios[0].id,
      says: [strings.need_method],
      box,
      before: box.querySelector(".check"),
      described: box,
      invalid: radios,
      id: "method-errors",
      message: strings.need_method,
    });
  }
  for (const key of form.dataset.items.split(" ")) {
    const choices = [...form.querySelectorAll(`input[name="item-${CSS.escape(key)}"]`)];
    const chosen = choices.find((r) => r.checked);
    if (chosen && chosen.value === "yes") continue;
    if (chosen && key !== "participate") continue;
    const box = choices[0].closest("fieldset");
    const refused = Boolean(chosen); // participate answered no
    found.push({
      target: choices[0].id,
      says: withItem(refused ? strings.participate_item : strings.answer_item, box.querySelector("legend [lang]")),
      box,
      before: box.querySelector(".yes-no"),
      described: box,
      invalid: choices,
      id: `item-${key}-errors`,
      message: refused ? strings.need_participate : strings.answer_every_item,
    });
  }
  if (method && method.value === "tablet" && !drawn) {
    found.push({
      target: canvas.id,
      says: [strings.need_signature],
      box: canvas.closest(".field"),
      before: canvas,
      described: canvas,
      invalid: [canvas],
      id: "signature-errors",
      message: strings.need_signature,
    });
  }
  const number = document.getElementById("paper_form_number");
  if (method && method.value === "paper" && !number.value.trim()) {
    found.push({
      target: number.id,
      says: [strings.need_paper_number],
      box: number.closest(".field"),
      before: number,
      described: number,
      invalid: [number],
      id: "paper_form_number-errors",
      message: strings.need_paper_number,
    });
  }
  return found;
}

function summarise(found) {
  const summary = document.createElement("div");
  summary.className = "error-summary";
  summary.id = "error-summary";
  summary.setAttribute("role", "alert");
  summary.setAttribute("aria-labelledby", "error-summary-title");
  summary.tabIndex = -1;
  const title = document.createElement("h2");
  title.id = "error-summary-title";
  title.textContent = strings.title;
  const list = document.createElement("ul");
  for (const problem of found) {
    const link = document.createElement("a");
    link.href = `#${problem.target}`;
    link.append(...problem.says);
    const li = document.createElement("li");
    li.append(link);
    list.append(li);
  }
  summary.append(title, list);
  form.prepend(summary);
  return summary;
}

// Bring a box into view below the interview's sticky safety bar, which would otherwise cover it.
function showBelowBar(box) {
  const bar = document.querySelector(".safety-bar");
  const covered = bar && getComputedStyle(bar).position === "sticky" ? bar.getBoundingClientRect().bottom : 0;
  window.scrollBy(0, box.getBoundingClientRect().top - covered - 12);
}

function focusSummary(summary) {
  summary.focus({ preventScroll: true });
  showBelowBar(summary);
}

// A link in the summary puts focus on the field itself, with its question in view.
function followSummaryLinks() {
  form.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest(".error-summary a[href^='#']");
    if (!link) return;
    const target = document.getElementById(decodeURIComponent(link.hash.slice(1)));
    if (!target) return;
    event.preventDefault();
    target.focus({ preventScroll: true });
    showBelowBar(target.closest("fieldset") || target.closest(".field") || target);
  });
}

function setupChecks() {
  // on the form itself, so it runs before the tablet's own save (a listener on the document)
  form.addEventListener("submit", (event) => {
    field.value = kept || (drawn ? canvas.toDataURL("image/png") : "");
    unmark();
    const found = problems();
    if (!found.length) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    found.forEach(mark);
    focusSummary(summarise(found));
  });
  followSummaryLinks();
  // the server found something missing: its summary is read out first
  const summary = form.querySelector(".error-summary");
  if (summary) focusSummary(summary);
}

if (canvas && field && form) {
  document.documentElement.classList.add("js");
  setupMethodToggle();
  setupPad();
  setupChecks();
}
