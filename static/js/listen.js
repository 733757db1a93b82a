// The coordinator's listening page: a note on the timeline plays the recording from where the
// note was begun, and the note being heard is marked as the recording plays.
// A recording made by MediaRecorder (WebM) says nothing of its length, so the browser knows
// its duration only once it has read the whole file: until then a jump past what is loaded
// would land at the end of what it has. The page asks for the end once (which makes the
// browser find the length) and then goes where the note is.
const audio = document.getElementById("recording-audio");
const timeline = document.getElementById("timeline");

function knowsDuration() {
  return Number.isFinite(audio.duration) && audio.duration > 0;
}

// Resolves when the duration is known (at once for a file that names it).
let durationKnown = null;
function whenDurationKnown() {
  if (knowsDuration()) return Promise.resolve();
  if (durationKnown) return durationKnown;
  durationKnown = new Promise((resolve) => {
    const done = () => {
      if (!knowsDuration()) return;
      audio.removeEventListener("durationchange", done);
      audio.removeEventListener("timeupdate", done);
      resolve();
    };
    audio.addEventListener("durationchange", done);
    audio.addEventListener("timeupdate", done);
    const ask = () => {
      // far past any end: the browser reads to the end and learns the length
      audio.currentTime = 1e101;
    };
    if (audio.readyState >= HTMLMediaElement.HAVE_METADATA) ask();
    else audio.addEventListener("loadedmetadata", ask, { once: true });
  });
  return durationKnown;
}

async function playFrom(ms) {
  const seconds = Math.max(0, ms / 1000);
  // a browser that did not fetch the metadata yet (it may save data) is asked to now
  if (audio.readyState === HTMLMediaElement.HAVE_NOTHING) audio.load();
  await whenDurationKnown();
  audio.currentTime = Math.min(seconds, audio.duration);
  try {
    await audio.play();
  } catch {
    // the player's own controls still work; the place is set
  }
}

function markCurrent() {
  const now = audio.currentTime * 1000;
  let current = null;
  for (const item of timeline.querySelectorAll(".timeline-item")) {
    if (Number(item.dataset.offsetMs) <= now) current = item;
  }
  for (const item of timeline.querySelectorAll(".timeline-item")) {
    const button = item.querySelector("button");
    if (item === current) {
      item.classList.add("current");
      button.setAttribute("aria-current", "true");
    } else {
      item.classList.remove("current");
      button.removeAttribute("aria-current");
    }
  }
}

if (audio && timeline) {
  timeline.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-offset-ms]");
    if (!button || button.disabled) return;
    playFrom(Number(button.dataset.offsetMs));
  });
  audio.addEventListener("timeupdate", markCurrent);
  audio.addEventListener("seeked", markCurrent);
}
