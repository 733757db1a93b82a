"""Who may use which route: one table naming every endpoint, its roles and its ownership rule.

The views check objects themselves (`access.participant_or_404`, `interview_or_404`,
`coordinated_case_or_404`); this table says in one place what they check, and `init_app`
enforces its role column again before any view runs, so a route someone forgets to guard
is still refused. An endpoint that is not in the table answers 404.
"""

from dataclasses import dataclass

from flask import Flask, abort, request
from flask_login import current_user

from interview.store.extensions import login_manager
from interview.web.errors import api_login_required

ANONYMOUS = "anonymous"
PEER = "peer"
COORDINATOR = "coordinator"
ADMIN = "admin"

EVERYONE = frozenset({ANONYMOUS, PEER, COORDINATOR, ADMIN})
LOGGED_IN = frozenset({PEER, COORDINATOR, ADMIN})
COORDINATING = frozenset({COORDINATOR, ADMIN})

# -- ownership rules: what decides the answer once the role is allowed -----------------------
PUBLIC = "public"
ANY_USER = "any logged-in user"
OWN_SESSION = "own session"
PUBLISHED = "published guide or consent form, the same for everyone"
VISIBLE_ONLY = "lists only what the user may see"
OWN_CASES = "the coordinator's own cases, an admin's all"
OWN_CASES_FILTER = "own cases; a ?case= outside them is 404"
CASE_IN_URL = "coordinator of the case in the URL, or admin"
PARTICIPANT = "assigned peer or coordinator of the participant's case or admin"
INTERVIEW = "assigned peer or coordinator of the participant's case or admin; withdrawn: nobody"
NOTE = "the note's interview, as for an interview"
OPEN_ALERT = "an open alert in the coordinator's own cases"
CODEBOOK = "the study's one codebook, shared by all coordinators"
CONSENT_FORMS = "the study's consent forms: one decision per version, shared by all coordinators"
EACH_CHANGE = "each change as for an interview; updates only what the user may see"
RECORDING = (
    "the recording's interview, as for an interview; its chunks and end only from whoever "
    "made it (others: 409); withdrawn or deleted: 410"
)

OBJECT_RULES = frozenset(
    {CASE_IN_URL, PARTICIPANT, INTERVIEW, NOTE, RECORDING, OPEN_ALERT, OWN_CASES_FILTER}
)


@dataclass(frozen=True)
class Route:
    """One endpoint: its methods, the roles allowed, the ownership rule and why."""

    endpoint: str
    methods: frozenset[str]
    roles: frozenset[str]
    rule: str
    why: str


def _route(endpoint: str, methods: str, roles: frozenset[str], rule: str, why: str) -> Route:
    return Route(endpoint, frozenset(methods.split()), roles, rule, why)


GET, POST, BOTH, PUT = "GET", "POST", "GET POST", "PUT"

# fmt: off
ROUTES = (
    # -- public: no research data, needed before login or by the tablet without a session ---
    _route("static", GET, EVERYONE, PUBLIC, "app shell files, the same for everyone; no data"),
    _route("main.healthz", GET, EVERYONE, PUBLIC, "load balancer probe; says only ok"),
    _route("main.offline_page", GET, EVERYONE, PUBLIC, "the tablet's no-network page; no data"),
    _route("main.service_worker", GET, EVERYONE, PUBLIC, "must load before any login"),
    _route("main.manifest", GET, EVERYONE, PUBLIC, "the web app manifest; names the app only"),
    _route("auth.signed_out", GET, EVERYONE, PUBLIC,
           "the page a signed-out tablet keeps and shows; names nobody"),
    _route("auth.login", BOTH, EVERYONE, PUBLIC, "the way in; a logged-in user is sent home"),
    _route("api.openapi", GET, EVERYONE, PUBLIC, "the API's description; no data"),
    _route("api.study_key_info", GET, EVERYONE, PUBLIC,
           "the study's public key: tablets seal to it; it opens nothing"),
    # -- any logged-in user -----------------------------------------------------------------
    _route("main.home", GET, LOGGED_IN, ANY_USER, "sends each role to its start page"),
    _route("auth.logout", POST, LOGGED_IN, OWN_SESSION, "ends the caller's own session"),
    _route("api.session_info", GET, LOGGED_IN, OWN_SESSION, "the caller's name and CSRF token"),
    _route("api.offline_manifest", GET, LOGGED_IN, VISIBLE_ONLY,
           "pages of the interviews the user may see"),
    _route("api.sync", POST, LOGGED_IN, EACH_CHANGE,
           "every change is checked against its participant (docs/sync.md)"),
    _route("api.recording", "GET PUT", LOGGED_IN, RECORDING,
           "an audio recording the participant consented to; never any sound back"),
    _route("api.recording_chunk", PUT, LOGGED_IN, RECORDING,
           "a chunk of sound, encrypted on the tablet, kept as received"),
    _route("api.recording_end", POST, LOGGED_IN, RECORDING, "the end of a recording"),
    _route("documents.index", GET, LOGGED_IN, PUBLISHED, "guides and forms carry no research data"),
    _route("documents.guide_page", GET, LOGGED_IN, PUBLISHED, "a published guide"),
    _route("documents.guide_pdf", GET, LOGGED_IN, PUBLISHED, "a published guide, printed"),
    _route("documents.consent_pdf", GET, LOGGED_IN, PUBLISHED, "a blank consent form"),
    # -- the interview: the assigned peer, and the case's coordinators ----------------------
    _route("interviews.mine", GET, LOGGED_IN, VISIBLE_ONLY, "the user's own interview list"),
    _route("interviews.conflicts", GET, LOGGED_IN, VISIBLE_ONLY,
           "notes with two versions, in interviews the user may see"),
    _route("interviews.resolve_conflict", POST, LOGGED_IN, NOTE,
           "whoever may see the interview may settle its note"),
    _route("interviews.overview", GET, LOGGED_IN, INTERVIEW, "an interview's summary"),
    _route("interviews.capacity", BOTH, LOGGED_IN, INTERVIEW, "capacity check before consent"),
    _route("interviews.reschedule", BOTH, LOGGED_IN, INTERVIEW, "moves the interview"),
    _route("interviews.consent", BOTH, LOGGED_IN, INTERVIEW, "records the participant's consent"),
    _route("interviews.section", BOTH, LOGGED_IN, INTERVIEW, "the guide and the notes"),
    _route("interviews.pause", POST, LOGGED_IN, INTERVIEW, "safety bar: a pause in the record"),
    _route("interviews.resume", POST, LOGGED_IN, INTERVIEW, "safety bar: go on after a pause"),
    _route("interviews.check_in", POST, LOGGED_IN, INTERVIEW, "lone-worker safety"),
    _route("interviews.distress", BOTH, LOGGED_IN, INTERVIEW, "distress protocol, stage 1"),
    _route("interviews.distress_two", BOTH, LOGGED_IN, INTERVIEW, "distress protocol, stage 2"),
    _route("interviews.stop", BOTH, LOGGED_IN, INTERVIEW, "ends the interview early"),
    _route("interviews.finish", BOTH, LOGGED_IN, INTERVIEW, "completes the interview"),
    _route("interviews.debrief", BOTH, LOGGED_IN, INTERVIEW,
           "the caller's own debrief of an interview they may see"),
    # -- the coordinator's desk -------------------------------------------------------------
    _route("coordinator.participants", GET, COORDINATING, OWN_CASES,
           "participants of the coordinator's cases; ?case= only narrows"),
    _route("coordinator.new_participant", BOTH, COORDINATING, OWN_CASES,
           "registers into one of the coordinator's cases only"),
    _route("coordinator.detail", GET, COORDINATING, PARTICIPANT, "a participant's page"),
    _route("coordinator.assign", POST, COORDINATING, PARTICIPANT,
           "who interviews decides who sees: coordinators only"),
    _route("coordinator.plan_interview", POST, COORDINATING, PARTICIPANT, "plans an interview"),
    _route("coordinator.identity", POST, COORDINATING, PARTICIPANT,
           "who a code belongs to: coordinators only, audited"),
    _route("coordinator.withdraw_participant", BOTH, COORDINATING, PARTICIPANT,
           "deletes research data: coordinators only"),
    _route("coordinator.withdraw_consent_items", BOTH, COORDINATING, PARTICIPANT,
           "partial withdrawal: takes quote marks off notes; coordinators only, audited"),
    _route("coordinator.consent_forms", GET, COORDINATING, OWN_CASES,
           "consent form versions; who in the coordinator's teams consented on an older one"),
    _route("coordinator.ask_renewal", POST, COORDINATING, CONSENT_FORMS,
           "asks renewed consent on the newest form for the whole study, audited"),
    _route("desk.overview", GET, COORDINATING, OWN_CASES, "progress of the coordinator's teams"),
    _route("desk.case_page", GET, COORDINATING, CASE_IN_URL, "progress of one team"),
    _route("alerts.index", GET, COORDINATING, OWN_CASES, "alerts of the coordinator's teams"),
    _route("alerts.acknowledge", POST, COORDINATING, OPEN_ALERT, "marks an alert seen, audited"),
    _route("rescue.index", BOTH, COORDINATING, OWN_CASES,
           "imports a rescue copy of a peer in the coordinator's cases, audited"),
    _route("codebook.index", BOTH, COORDINATING, CODEBOOK,
           "one codebook for the study; note counts from own cases"),
    _route("codebook.rename", POST, COORDINATING, CODEBOOK, "renames a theme for the study"),
    _route("codebook.retire", POST, COORDINATING, CODEBOOK, "retires a theme for the study"),
    _route("codebook.matrix", GET, COORDINATING, OWN_CASES, "themes x the coordinator's teams"),
    _route("codebook.cell", GET, COORDINATING, CASE_IN_URL, "note texts behind one cell"),
    _route("exports.index", GET, COORDINATING, OWN_CASES_FILTER, "choice of team and format"),
    _route("exports.csv_export", GET, COORDINATING, OWN_CASES_FILTER, "note texts, audited"),
    _route("exports.xlsx_export", GET, COORDINATING, OWN_CASES_FILTER, "note texts, audited"),
    _route("exports.json_export", GET, COORDINATING, OWN_CASES_FILTER, "all research data"),
    _route("exports.qdpx_export", GET, COORDINATING, OWN_CASES_FILTER, "all research data"),
    _route("audit.index", GET, COORDINATING, OWN_CASES,
           "the audit log: an admin's every row, a coordinator's rows about their teams; "
           "never content; each view audited"),
    _route("audit.csv", GET, COORDINATING, OWN_CASES,
           "the same rows as CSV for a data protection officer, audited"),
    _route("documents.record_pdf", GET, COORDINATING, INTERVIEW,
           "an ended interview's record for the archive, audited"),
    _route("documents.consent_record", GET, COORDINATING, PARTICIPANT,
           "a consent's signed record (it names the participant), no-store, audited"),
    _route("listen.page", GET, COORDINATING, RECORDING,
           "a recording's facts and the notes begun while it ran; audited"),
    _route("listen.audio", GET, COORDINATING, RECORDING,
           "the decrypted sound of a recording, in byte ranges, no-store; audited once a listen"),
    _route("documents.progress_report", GET, COORDINATING, OWN_CASES, "progress, printed"),
    _route("documents.case_progress_report", GET, COORDINATING, CASE_IN_URL,
           "one team's progress, printed"),
)
# fmt: on

POLICY: dict[str, Route] = {r.endpoint: r for r in ROUTES}


def allows_role(route: Route, user) -> bool:
    """True when the route's roles include the user's (anonymous when nobody is logged in)."""
    role = user.role if user.is_authenticated else ANONYMOUS
    return role in route.roles


def _enforce():
    if request.endpoint is None:
        return None  # no route matched: routing answers 404 or 405 itself
    route = POLICY.get(request.endpoint)
    method = "GET" if request.method == "HEAD" else request.method
    if method == "OPTIONS" and getattr(request.url_rule, "provide_automatic_options", False):
        return None  # Flask answers it with the Allow header; no view runs
    if route is None or method not in route.methods:
        # a route nobody wrote down is a route nobody reviewed
        abort(404)
    if allows_role(route, current_user):
        return None
    if not current_user.is_authenticated:
        if request.blueprint == "api":
            # the tablet's API answers JSON 401 (never a redirect) and keeps its outbox
            return api_login_required()
        return login_manager.unauthorized()
    abort(403)


def init_app(app: Flask) -> None:
    """Refuse, before any view runs, what the table's role column does not allow."""
    app.before_request(_enforce)
