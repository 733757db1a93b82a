// Signature pad for consent on the tablet: draws with finger, stylus or mouse (Pointer Events),
// and on submit puts the drawing into the hidden field as a PNG data URL.
const canvas = document.getElementById("signature-pad");
const field = document.getElementById("signature");
const clear = document.getElementById("signature-clear");
const form = document.getElementById("consent-form");

function setupMethodToggle() {
  const radios = form.querySelectorAll("input[name=method]");
  const tablet = form.querySelector(".method-tablet");
  const paper = form.querySelector(".method-paper");
  const update = () => {
    const chosen = form.querySelector("input[name=method]:checked");
    tablet.hidden = chosen ? chosen.value !== "tablet" : false;
    paper.hidden = chosen ? chosen.value !== "paper" : false;
    // the pad measures itself; a pad shown after being hidden must measure again
    window.dispatchEvent(new Event("resize"));
  };
  radios.forEach((r) => r.addEventListener("change", update));
  update();
}

function setupPad() {
  const ctx = canvas.getContext("2d");
  let drawing = false;
  let drawn = false;

  const resize = () => {
    // Match the bitmap to the displayed size so strokes land under the finger.
    const rect = canvas.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) return; // hidden: measure when shown
    const ratio = window.devicePixelRatio || 1;
    const snapshot = drawn ? canvas.toDataURL("image/png") : null;
    canvas.width = Math.round(rect.width * ratio);
    canvas.height = Math.round(rect.height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.lineWidth = 2.5;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#111";
    if (snapshot) {
      const img = new Image();
      img.onload = () => ctx.drawImage(img, 0, 0, rect.width, rect.height);
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
    field.value = "";
  });
  form.addEventListener("submit", () => {
    field.value = drawn ? canvas.toDataURL("image/png") : "";
  });
  window.addEventListener("resize", resize);
  resize();
  // A signature kept from a rejected submission is drawn again.
  if (field.value.startsWith("data:image/png;base64,")) {
    const img = new Image();
    img.onload = () => {
      const rect = canvas.getBoundingClientRect();
      ctx.drawImage(img, 0, 0, rect.width, rect.height);
      drawn = true;
    };
    img.src = field.value;
  }
}

if (canvas && field && form) {
  document.documentElement.classList.add("js");
  setupMethodToggle();
  setupPad();
}
