"""What axe does not check, measured in real Chromium on the tablet and desk pages, in both
languages, at 1024×768 and 768×1024: the contrast of the controls' own edges (WCAG 1.4.11),
focus never hidden under a sticky bar (2.4.11), radio and checkbox rows as whole targets of at
least 44 px, and the note's three polarity choices never split two and one."""

from datetime import timedelta

import pytest

from interview.store.extensions import db
from interview.store.models import Interview, Participant, Theme, User, utcnow
from tests.browser.helpers import _login
from tests.conftest import PASSWORD
from tests.helpers import (
    consented_interview,
    give_paper_consent,
    new_note_on_page,
    start_interview,
)

pytestmark = pytest.mark.browser

VIEWPORTS = {
    "landscape": {"width": 1024, "height": 768},
    "portrait": {"width": 768, "height": 1024},
}
CASES = [(v, lang) for v in VIEWPORTS for lang in ("nb", "en")]

# Colour maths as WCAG 2.2 defines it; a control's background is what lies under it (its
# ancestors' colours composited until one is opaque). A control shows itself by its border
# or by a fill that differs from what is around it; a control with neither (a link-styled
# button) is known by its text, which axe checks. Native radios and checkboxes are drawn by
# Chromium (#767676 edge) and are measured for size below, not here.
CONTRAST_JS = r"""
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat([1]);
  };
  const lum = (c) => {
    const ch = c.slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
  };
  const ratio = (a, b) => {
    const [l1, l2] = [lum(a), lum(b)].sort((x, y) => y - x);
    return (l1 + 0.05) / (l2 + 0.05);
  };
  const behind = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let colour = [255, 255, 255, 1];
    for (const c of layers.reverse()) colour = over(c, colour);
    return colour;
  };
  const controls = document.querySelectorAll(
    "button, input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, textarea,"
    + " a.button"
  );
  const failures = [];
  let measured = 0;
  for (const el of controls) {
    if (el.disabled || !el.checkVisibility({ visibilityProperty: true })) continue;
    const box = el.getBoundingClientRect();
    if (box.width < 2 || box.height < 2) continue;
    const s = getComputedStyle(el);
    const outside = behind(el.parentElement);
    const fill = parse(s.backgroundColor);
    const own = fill && fill[3] > 0 ? over(fill, outside) : outside;
    const sides = ["Top", "Right", "Bottom", "Left"];
    const edged = sides.every((side) =>
      parseFloat(s[`border${side}Width`]) >= 1 && s[`border${side}Style`] !== "none"
      && (parse(s[`border${side}Color`]) || [0, 0, 0, 0])[3] > 0);
    if (!edged && !(fill && fill[3] > 0)) continue; // known by its text alone
    let best = ratio(own, outside);
    if (edged) {
      const edge = sides.map(
        (side) => ratio(over(parse(s[`border${side}Color`]), outside), outside));
      best = Math.max(best, Math.min(...edge));
    }
    measured += 1;
    if (best < 3) {
      const name = (el.innerText || el.value || el.name || el.id || "").trim().slice(0, 30);
      failures.push(`${el.tagName.toLowerCase()}.${el.className} «${name}» ${best.toFixed(2)}:1`);
    }
  }
  return { measured, failures };
}
"""

# The focused element and whether every visible part of it is under a sticky or fixed bar
# that does not hold it (WCAG 2.4.11: focus not entirely hidden).
FOCUS_JS = r"""
() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return { done: true };
  window.__seen = window.__seen || new Set();
  if (window.__seen.has(el)) return { done: true };
  window.__seen.add(el);
  const bar = (e) => {
    for (; e; e = e.parentElement) {
      const p = getComputedStyle(e).position;
      if (p === "sticky" || p === "fixed") return e;
    }
    return null;
  };
  const name = `${el.tagName.toLowerCase()}${el.name ? "[" + el.name + "]" : ""}.${el.className}`
    + ` «${(el.innerText || el.value || "").trim().slice(0, 30)}»`;
  const own = bar(el);
  const r = el.getBoundingClientRect();
  let seen = 0;
  for (let i = 0; i < 5; i++) {
    for (let j = 0; j < 3; j++) {
      const x = r.left + 1 + (r.width - 2) * i / 4;
      const y = r.top + 1 + (r.height - 2) * j / 2;
      if (x < 0 || y < 0 || x >= innerWidth || y >= innerHeight) continue;
      const hit = document.elementFromPoint(x, y);
      const cover = hit && !el.contains(hit) ? bar(hit) : null;
      if (!cover || cover === own || cover.contains(el)) seen += 1;
    }
  }
  const style = getComputedStyle(el);
  const ring = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
  return { done: false, name, hidden: seen === 0, ring };
}
"""

# Each visible radio and checkbox: its row (the .check around it, else its label) and whether
# the row's edges, above and below the box and at the far right, all work the control.
TARGETS_JS = r"""
() => {
  const works = (input, x, y) => {
    const hit = document.elementFromPoint(x, y);
    if (!hit) return false;
    if (hit === input) return true;
    const label = hit.closest("label");
    return !!label && label.control === input;
  };
  const out = [];
  const inputs = [...document.querySelectorAll("input[type=radio], input[type=checkbox]")]
    .filter((i) => !i.disabled && i.checkVisibility({ visibilityProperty: true }));
  inputs.forEach((input, index) => {
    const row = input.closest(".check") || input.closest("label") || input.parentElement;
    row.scrollIntoView({ block: "center" });
    const r = row.getBoundingClientRect();
    const box = input.getBoundingClientRect();
    const cx = box.left + box.width / 2;
    const cy = r.top + r.height / 2;
    const name = `${input.name}=${input.value} «${row.innerText.trim().slice(0, 30)}»`;
    out.push({
      index, name, height: r.height,
      top: works(input, cx, r.top + 2),
      bottom: works(input, cx, r.bottom - 2),
      right: works(input, r.right - 3, cy),
    });
  });
  return out;
}
"""

CLICK_RIGHT_EDGE_JS = r"""
(index) => {
  const inputs = [...document.querySelectorAll("input[type=radio], input[type=checkbox]")]
    .filter((i) => !i.disabled && i.checkVisibility({ visibilityProperty: true }));
  const input = inputs[index];
  const row = input.closest(".check") || input.closest("label") || input.parentElement;
  row.scrollIntoView({ block: "center" });
  const r = row.getBoundingClientRect();
  return {
    x: r.right - 3, y: r.top + r.height / 2, checked: input.checked, radio: input.type === "radio",
  };
}
"""


def _pages_setup(app, client, world):
    """Interviews of peer_a at each tablet page: notes, consent, capacity check, debrief."""
    iid = consented_interview(client, world)
    with app.app_context():
        participant = db.session.get(Participant, world.participants["pa"])
        theme = db.session.scalars(db.select(Theme).order_by(Theme.key)).first()
        theme_id = theme.id
        # the consent page needs a participant not yet asked: pa2, whom peer_a joins
        other = db.session.get(Participant, world.participants["pa2"])
        other.interviewers.append(db.session.get(User, world.users["peer_a"]))
        extra = []
        for _ in range(2):
            iv = Interview(
                participant=participant,
                guide_version=db.session.get(Interview, iid).guide_version,
                language="nb",
                place_kind="home",
                planned_at=utcnow() + timedelta(hours=2),
            )
            db.session.add(iv)
            db.session.flush()
            extra.append(iv.id)
        db.session.commit()
    capacity_iid, debrief_iid = extra
    consent_iid = world.interviews["pa2"]
    start_interview(client, consent_iid)
    start_interview(client, debrief_iid)
    give_paper_consent(client, debrief_iid)
    client.post(f"/interviews/{debrief_iid}/finish")
    # one saved note with a polarity, a quote mark and a theme: every kind of choice shows
    page = client.get(f"/interviews/{iid}/section/0").text
    _new_id, fields = new_note_on_page(page, "context.services")
    client.post(
        f"/interviews/{iid}/section/0",
        data={
            **fields,
            "new-context.services-text": "Et notat.",
            "new-context.services-polarity": "promotes",
            "new-context.services-quote": "1",
            "new-context.services-theme": str(theme_id),
            "go": "stay",
        },
    )
    client.post("/logout")
    return {
        "section": f"/interviews/{iid}/section/0",
        "consent": f"/interviews/{consent_iid}/consent",
        "capacity": f"/interviews/{capacity_iid}/capacity",
        "debrief": f"/interviews/{debrief_iid}/debrief",
    }


def _open(page, url, tablet):
    page.goto(url)
    page.wait_for_load_state("load")
    if tablet:  # the status line has moved into the safety bar: the bars have their heights
        page.wait_for_selector("html.tablet-ready", state="attached")


def _contrast_failures(page) -> list[str]:
    return page.evaluate(CONTRAST_JS)["failures"]


def _hidden_focus(page) -> list[str]:
    """Tab through the page down and back up; focused elements wholly under a sticky bar or
    without a focus ring."""
    page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")
    hidden = []
    for key in ("Tab", "Shift+Tab"):
        page.evaluate("() => { window.__seen = new Set(); }")
        steps = 0
        for _ in range(600):
            page.keyboard.press(key)
            state = page.evaluate(FOCUS_JS)
            if state["done"]:
                break
            steps += 1
            if state["hidden"]:
                hidden.append(f"{state['name']} ({key})")
            if not state["ring"]:
                hidden.append(f"{state['name']} shows no focus ring")
        assert steps > 3, f"{key} went through only {steps} elements"
    return hidden


def _target_failures(page) -> list[str]:
    """Rows under 44 px, and rows whose edges do not work their radio or checkbox."""
    failures = []
    for row in page.evaluate(TARGETS_JS):
        if row["height"] < 44 - 0.5:
            failures.append(f"{row['name']}: {row['height']:.0f} px high")
        missed = [side for side in ("top", "bottom", "right") if not row[side]]
        if missed:
            failures.append(f"{row['name']}: its {', '.join(missed)} edge does nothing")
            continue
        spot = page.evaluate(CLICK_RIGHT_EDGE_JS, row["index"])
        if spot["radio"] and spot["checked"]:
            continue
        page.mouse.click(spot["x"], spot["y"])
        after = page.evaluate(CLICK_RIGHT_EDGE_JS, row["index"])
        if after["checked"] == spot["checked"]:
            failures.append(f"{row['name']}: a tap at the far right does not change it")
        elif not spot["radio"]:
            page.mouse.click(after["x"], after["y"])  # back as it was
    return failures


def _check_page(page, url, tablet=False) -> list[str]:
    _open(page, url, tablet)
    problems = [f"contrast {f}" for f in _contrast_failures(page)]
    problems += [f"focus hidden: {f}" for f in _hidden_focus(page)]
    problems += [f"target {f}" for f in _target_failures(page)]
    return [f"{url}: {p}" for p in problems]


@pytest.mark.parametrize(("shape", "lang"), CASES)
def test_tablet_pages_meet_contrast_focus_and_target_size(
    server, browser, app, client, world, shape, lang, tmp_path
):
    urls = _pages_setup(app, client, world)
    context = browser.new_context(viewport=VIEWPORTS[shape], has_touch=True)
    page = context.new_page()
    _login(page, server.url, "peer_a", lang)
    problems = []
    for name, path in urls.items():
        problems += _check_page(page, server.url + path, tablet=True)
        page.screenshot(path=str(tmp_path / f"{name}-{shape}-{lang}.png"))
    context.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("shape", "lang"), CASES)
def test_desk_forms_meet_contrast_focus_and_target_size(
    server, browser, app, client, world, shape, lang, tmp_path
):
    consented_interview(client, world)  # consent items to withdraw: checkboxes on that page
    client.post("/logout")
    context = browser.new_context(viewport=VIEWPORTS[shape])
    page = context.new_page()
    page.goto(f"{server.url}/login?lang={lang}")
    page.locator("#username").fill("coord_a")
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/participants/")
    problems = []
    urls = {
        "new-participant": "/participants/new",
        "participant": f"/participants/{world.participants['pa']}",
        "withdraw-items": f"/participants/{world.participants['pa']}/withdraw-items",
        "codebook": "/desk/themes/",
        "matrix": "/desk/themes/matrix",
    }
    for name, path in urls.items():
        problems += _check_page(page, server.url + path)
        page.screenshot(path=str(tmp_path / f"{name}-{shape}-{lang}.png"))
    context.close()
    assert not problems, "\n".join(problems)


def test_polarity_choices_never_split_two_and_one(server, browser, app, client, world, tmp_path):
    """Portrait Bokmål: the three choices share a line, or each has its own."""
    urls = _pages_setup(app, client, world)
    for shape, lang in CASES:
        context = browser.new_context(viewport=VIEWPORTS[shape], has_touch=True)
        page = context.new_page()
        _login(page, server.url, "peer_a", lang)
        _open(page, server.url + urls["section"], tablet=True)
        rows = page.evaluate(
            """() => [...document.querySelectorAll('.polarity')].filter((f) => f.checkVisibility())
              .map((f) => [...f.querySelectorAll('label')].map((l) => {
                 const r = l.getBoundingClientRect();
                 return [Math.round(r.top), Math.round(r.bottom)];
              }))"""
        )
        assert rows
        for tops in rows:
            lines = len({top for top, _bottom in tops})
            assert lines in (1, len(tops)), f"{shape} {lang}: polarity split over {lines} lines"
        page.locator(".note:not([data-new])").first.screenshot(
            path=str(tmp_path / f"note-{shape}-{lang}.png")
        )
        context.close()
