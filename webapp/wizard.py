"""The setup wizard: one step a page (`/setup/<step>`), back and next, htmx partial updates.

Every rule lives in `sync.setup`; this module only reads forms, calls the step's functions
and renders. The page to show is derived from the stored profile, so the wizard resumes
where it was after a restart. Forms are plain POST forms (they work without JavaScript);
htmx makes them update in place when it is there.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from sync.auth import ConsentRequired
from sync.service import MESSAGING
from sync.setup import choices as choices_step
from sync.setup import instance as instance_step
from sync.setup import mailbox as mailbox_step
from sync.setup import organizations, user_filters
from sync.setup import profile as keys
from sync.setup.messages import N_, Msg, SetupError
from sync.setup.ports import CrmDirectory, CrmUser, MailboxRecord, OrgInfo, SetupPorts
from sync.setup.profile import STEP_TITLES, STEPS, Profile
from sync.setup.user_filters import UserFilter
from sync.sides import AuthError, SideError
from webapp import state
from webapp.conditions import ConditionRow, condition_rows
from webapp.signin import consent_message, sandbox_info

bp = Blueprint("wizard", __name__, url_prefix="/setup")

PORTS_KEY = "mailbox_sync.setup_ports"
POP3_HAS_NO_ACT = N_(
    "Contacts, appointments and tasks need an Exchange mailbox, as in Dynamics 365: a POP3 "
    "mailbox has no contacts, calendar or tasks to keep in step."
)


# --- helpers ------------------------------------------------------------------------------


def current_profile() -> Profile:
    return Profile(state.database(), current_app.config["DATA_DIR"])


def ports(profile: Profile) -> SetupPorts:
    """The app's ports: a SetupPorts, or a factory called with the profile (tests inject)."""
    configured = current_app.extensions.get(PORTS_KEY)
    if isinstance(configured, SetupPorts):
        return configured
    if callable(configured):
        built: SetupPorts = configured(profile)
        return built
    if "setup_ports" not in g:  # one set per request: the token provider is built once
        from sync.setup.adapters import default_ports

        g.setup_ports = default_ports(profile, sandbox_info())
    built_default: SetupPorts = g.setup_ports
    return built_default


@bp.teardown_app_request
def _close_ports(_error: BaseException | None) -> None:
    built = g.pop("setup_ports", None)
    if built is not None:
        from sync.setup.adapters import close_ports

        close_ports(built)


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def go(endpoint: str, **values: Any) -> Response:
    """Next page: a full navigation for htmx (HX-Redirect), a 303 otherwise."""
    url = url_for(endpoint, **values)
    if is_htmx():
        return Response("", status=200, headers={"HX-Redirect": url})
    return redirect(url, code=303)


def reachable(profile: Profile, step: str) -> bool:
    """A step can be opened once every step before it is done."""
    return STEPS.index(step) <= STEPS.index(profile.current_step())


def page(step: str, profile: Profile, status: int = 200, **context: Any) -> tuple[str, int]:
    index = STEPS.index(step)
    html = render_template(
        f"wizard/{step}.html",
        step=step,
        steps=STEPS,
        step_titles=STEP_TITLES,
        current=profile.current_step(),
        previous=STEPS[index - 1] if index > 0 else None,
        profile=profile,
        **context,
    )
    return html, status


def failure(error: BaseException) -> Msg:
    """A port's failure as a message the page can show."""
    if isinstance(error, SetupError):
        return error.msg
    if isinstance(error, ConsentRequired):  # one resource's consent, not a whole new sign-in
        return consent_message(error)
    if isinstance(error, AuthError):
        return N_("Your sign-in was refused or has expired. Sign in again, then retry.")
    if isinstance(error, SideError):
        return N_(
            "The service could not be reached: %(detail)s. Check your network and retry.",
            detail=error.message or type(error).__name__,
        )
    raise error


def guarded(action: Callable[[], Any]) -> tuple[Any, Msg | None]:
    try:
        return action(), None
    except (SetupError, SideError) as error:
        return None, failure(error)


@bp.before_app_request
def send_new_users_to_the_wizard() -> Response | None:
    """The dashboard is the home page only once set up; before that `/` opens the wizard."""
    if request.endpoint != "dashboard.index" or not current_app.config.get("SETUP_REDIRECT", True):
        return None
    if request.args.get("setup") == "later":  # "look at the dashboard first"
        return None
    profile = current_profile()
    if profile.is_complete():
        return None
    return redirect(url_for("wizard.step", step=profile.current_step()))


@bp.get("/")
def start() -> Response:
    return redirect(url_for("wizard.step", step=current_profile().current_step()))


@bp.route("/<step>", methods=["GET", "POST"])
def step(step: str) -> Any:
    if step not in STEPS:
        return redirect(url_for("wizard.start"))
    profile = current_profile()
    if not reachable(profile, step):
        return redirect(url_for("wizard.step", step=profile.current_step()))
    view = VIEWS[step]
    return view(profile)


# --- organization ---------------------------------------------------------------------------


def _available(profile: Profile) -> tuple[list[OrgInfo], Msg | None]:
    if not profile.signed_in_upn:
        return [], None
    orgs, error = guarded(lambda: organizations.list_organizations(ports(profile).discovery()))
    return orgs or [], error


def organization_view(profile: Profile) -> Any:
    orgs, error = _available(profile)
    chosen = profile.synchronizing_org()
    form = {
        "synchronizing": chosen.id if chosen else "",
        "connected": [o.id for o in profile.connected_orgs()],
    }
    confirm: Msg | None = None
    status = 200
    if request.method == "POST":
        form = {
            "synchronizing": request.form.get("synchronizing", ""),
            "connected": request.form.getlist("connected"),
        }
        choice = organizations.OrgChoice(str(form["synchronizing"]), tuple(form["connected"]))
        try:
            chosen = organizations.choose(
                profile, orgs, choice, confirmed=request.form.get("confirm") == "yes"
            )
            # tables read without change tracking: an alert saying which and why (never blocks)
            organizations.check_change_readers(profile, lambda: ports(profile).directory(chosen))
            return go("wizard.step", step="mailbox")
        except organizations.NeedsConfirmation as needs:
            confirm, status = needs.msg, 409
        except SetupError as refused:
            error, status = refused.msg, 422
    return page(
        "organization",
        profile,
        status=200 if is_htmx() else status,
        orgs=orgs,
        error=error,
        form=form,
        confirm=confirm,
        signed_in=profile.signed_in_upn,
    )


# --- mailbox --------------------------------------------------------------------------------


def _crm(profile: Profile) -> tuple[CrmDirectory, CrmUser]:
    org = profile.synchronizing_org()
    assert org is not None  # reachable() guarantees the organization step is done
    directory = ports(profile).directory(org)
    stored = profile.get(keys.CRM_USER)
    user = CrmUser(stored["id"], stored["name"]) if stored else directory.current_user()
    if not stored:
        profile.set(keys.CRM_USER, {"id": user.id, "name": user.name})
    return directory, user


def _mailbox_form() -> dict[str, str]:
    fields = [
        "type",
        "email",
        "ews_url",
        "auth",
        "username",
        "password",
        "pop3_host",
        "pop3_port",
        "pop3_security",
        "smtp_host",
        "smtp_port",
        "smtp_security",
        "smtp_password",
    ]
    return {name: request.form.get(name, "") for name in fields}


def _stored_form(profile: Profile) -> dict[str, Any]:
    config = profile.mailbox()
    if config is None:
        email = profile.signed_in_upn or ""
        return {"type": _picked_type(profile, email), "email": email, "auth": "oauth"}
    return {k: v for k, v in vars(config).items()}


def _picked_type(profile: Profile, email: str) -> str:
    """graph-wire (issue 9): Exchange Online through Graph when the signed-in user's own
    tenant holds the mailbox (Graph `/me` and `/me/mailboxSettings` answer), else EWS."""
    try:
        probe = ports(profile).graph_probe
        return mailbox_step.pick_mailbox_type(probe() if probe else None, email)
    except Exception:  # noqa: BLE001 (only the default of a radio: EWS, as before)
        current_app.logger.info("the Graph mailbox probe failed", exc_info=True)
        return "exchange"


def _record(directory: CrmDirectory, user: CrmUser) -> MailboxRecord | None:
    try:
        return directory.mailbox_of_user(user.id)
    except SideError:
        return None


def _email_workloads(profile: Profile) -> frozenset[str]:
    """[h1a] The email workloads the stored choices make this client's (shown as such); none
    before the "What to sync" step is saved: email is the user's choice, never a default."""
    from sync.mail import settings as email_settings

    return email_settings.chosen_workloads(profile)


def mailbox_view(profile: Profile) -> Any:
    crm, error = guarded(lambda: _crm(profile))
    directory, user = crm if crm is not None else (None, None)
    form: dict[str, Any] = _stored_form(profile)
    errors: dict[str, Msg] = {}
    result: Msg | None = None
    result_ok = False
    status = 200
    action = request.form.get("action", "") if request.method == "POST" else ""
    if request.method == "POST" and action not in ("test", "save"):
        form = _mailbox_form()  # "refresh" without JavaScript: redraw for the chosen type
    elif request.method == "POST" and error is None:
        form = _mailbox_form()
        assert directory is not None and user is not None
        try:
            config, secrets = mailbox_step.parse_mailbox_form(form, profile.mailbox_secrets())
            if action == "test":
                mailbox_step.check_mailbox_owner(directory, user, config.email)
                merged = {**profile.mailbox_secrets(), **{k: v for k, v in secrets.items() if v}}
                mailbox_step.check_connection(ports(profile).mailbox_tester(), config, merged)
                result, result_ok = N_("Connection works."), True
            elif action == "save":
                mailbox_step.save_mailbox(
                    profile, directory, ports(profile).mailbox_tester(), user, config, secrets
                )
                return go("wizard.step", step="instance")
        except mailbox_step.FormErrors as bad:
            errors, status = bad.errors, 422
        except (SetupError, SideError) as refused:
            message = failure(refused)
            field = refused.field if isinstance(refused, SetupError) else ""
            if action == "test":
                result = message
            if field:
                errors = {field: message}
            else:
                error = message
            status = 422
    record = _record(directory, user) if directory is not None and user is not None else None
    context = {
        "form": form,
        "errors": errors,
        "error": error,
        "result": result,
        "result_ok": result_ok,
        "record": record,
        "methods": (
            mailbox_step.delivery_status(
                record, str(form.get("type") or "exchange"), _email_workloads(profile)
            )
            if record
            else []
        ),
        "methods_error": None,
        "crm_user": user,
        "has_password": bool(profile.mailbox_secrets().get(keys.MAILBOX_PASSWORD)),
    }
    if is_htmx() and action in ("test", "check"):
        return render_template("wizard/_mailbox_form.html", previous="organization", **context)
    return page("mailbox", profile, status=200 if is_htmx() else status, **context)


@bp.post("/mailbox/check")
def mailbox_check() -> str:
    """htmx: validate the form as it is typed and redraw it (switches Exchange/POP3 fields)."""
    profile = current_profile()
    form = _mailbox_form()
    errors: dict[str, Msg] = {}
    try:
        mailbox_step.parse_mailbox_form(form, profile.mailbox_secrets())
    except mailbox_step.FormErrors as bad:
        # only fields the user has filled in: an empty form is not a wall of red
        errors = {k: v for k, v in bad.errors.items() if form.get(k) or k == "type"}
    return render_template(
        "wizard/_mailbox_form.html",
        previous="organization",
        form=form,
        errors=errors,
        result=None,
        result_ok=False,
        redraw=True,
        has_password=bool(profile.mailbox_secrets().get(keys.MAILBOX_PASSWORD)),
    )


@bp.post("/mailbox/methods")
def mailbox_methods() -> Any:
    """Set the CRM mailbox record's method for appointments, contacts and tasks to this client
    (consent required; the email methods are left as they are)."""
    profile = current_profile()
    if not reachable(profile, "mailbox"):
        return redirect(url_for("wizard.step", step=profile.current_step()))
    methods_error: Msg | None = None
    record = None
    config = profile.mailbox()
    mailbox_type = config.type if config is not None else "exchange"
    try:
        if "act" not in mailbox_step.synced_workloads(mailbox_type):
            raise SetupError(POP3_HAS_NO_ACT)  # nothing of it would sync here: leave it alone
        directory, user = _crm(profile)
        record = directory.mailbox_of_user(user.id)
        if record is None:
            raise SetupError(N_("Your CRM user has no mailbox record. Ask your administrator."))
        record = mailbox_step.set_to_this_client(
            directory, record, consent=request.form.get("consent") == "yes"
        )
        mailbox_step.note_methods(profile, record)
    except (SetupError, SideError) as refused:
        methods_error = failure(refused)
    context = {
        "record": record,
        "methods": (
            mailbox_step.delivery_status(record, mailbox_type, _email_workloads(profile))
            if record
            else []
        ),
        "methods_error": methods_error,
    }
    if is_htmx():
        return render_template("wizard/_methods.html", **context)
    if methods_error is None:
        return go("wizard.step", step="mailbox")
    return page(  # the full page, the error beside the methods
        "mailbox",
        profile,
        status=422,
        form=_stored_form(profile),
        errors={},
        error=None,
        result=None,
        result_ok=False,
        crm_user=None,
        has_password=bool(profile.mailbox_secrets().get(keys.MAILBOX_PASSWORD)),
        **context,
    )


# --- instance -------------------------------------------------------------------------------


def _claims(profile: Profile) -> Any:
    org = profile.synchronizing_org()
    config = profile.mailbox()
    assert org is not None and config is not None
    _directory, user = _crm(profile)
    return ports(profile).claims(org, config, user)


def instance_view(profile: Profile) -> Any:
    store, error = guarded(lambda: _claims(profile))
    status = 200
    if request.method == "POST" and store is not None:
        answer = request.form.get("take_over", "")
        take_over = {"yes": True, "no": False}.get(answer)
        try:
            # refused whole, never cut short: the command line takes the same names
            name = instance_step.clean_instance_name(request.form.get("instance_name", ""))
            if "instance_name" in request.form:  # empty: the host name, as the page says
                profile.set(keys.INSTANCE_NAME, name or None)
            instance_step.decide(profile, store, take_over)
            return go("wizard.step", step="choices")
        except (SetupError, SideError) as refused:
            bad_name = isinstance(refused, SetupError) and refused.field == "instance_name"
            error, status = failure(refused), 422 if bad_name else 409
    claim, claim_error = (
        guarded(lambda: instance_step.claim_state(store, profile.instance_id))
        if store is not None
        else (None, None)
    )
    return page(
        "instance",
        profile,
        status=200 if is_htmx() else status,
        error=error or claim_error,
        claim=claim,
        host_name=socket.gethostname(),
    )


# --- choices -------------------------------------------------------------------------------


def _counts(
    profile: Profile, slugs: list[str], own: list[UserFilter]
) -> tuple[dict[str, int], Msg | None]:
    """Live counts of the built-in filters (by slug) and the user's own, over one client."""

    def count_all() -> dict[str, int]:
        directory, user = _crm(profile)
        tz = str(profile.get("timezone") or "UTC")
        counts = {slug: choices_step.count_for(directory, slug, user.id) for slug in slugs}
        counts.update({f.slug: user_filters.count(directory, f, user.id, tz) for f in own})
        return counts

    counts, error = guarded(count_all)
    return counts or {}, error


def _offered_filters() -> list[choices_step.FilterDef]:
    """The built-in filters the page offers: messaging's and offline's (issue 12: the records
    "Go offline" takes with it, counted live like the others)."""
    return list(choices_step.BUILTIN_FILTERS)


def choices_view(
    profile: Profile, new_filter: Mapping[str, str] | None = None, filter_error: Msg | None = None
) -> Any:
    """The step's page; a POST of the step's own form saves it (not the add-filter form's,
    which comes here with `new_filter` to show its error).

    For a POP3 mailbox the page offers email and the offline filters only. Turning email on points the CRM mailbox
    record's email methods at this client (`take_email_methods`); off, they are left alone."""
    stored = choices_step.current_choices(profile)
    config = profile.mailbox()
    pop3 = config is not None and config.type == "pop3"
    # graph-wire (issue 9): what this mailbox type syncs
    kinds_here = set(mailbox_step.supported_kinds(config.type if config else "exchange"))
    graph = config is not None and config.type == "graph"
    error: Msg | None = None
    field = ""
    status = 200
    selected = list(stored.filters)
    form: dict[str, Any] = {
        "tracking": stored.tracking,
        "interval_seconds": stored.interval_seconds,
        **{f"direction_{k}": v for k, v in (stored.directions or {}).items()},
        "track_days_back": stored.track_days_back,
        "token_prefix": stored.token_prefix,
    }
    checks = {  # [h1a] the email checkboxes, as stored (a POST's own replace them)
        "track_sent_items": stored.track_sent_items,
        "token_enabled": stored.token_enabled,
        "send_crm_email": stored.send_crm_email,
    }
    if request.method == "POST" and new_filter is None:
        selected = request.form.getlist("filters")
        if pop3:  # the page offers a POP3 mailbox the offline filters only
            selected = [s for s in selected if choices_step.is_offline(s)]
        form = {**form, **dict(request.form.items())}
        if "email_form" in request.form:
            checks = {name: name in request.form for name in checks}
        try:
            # [offline2] the user's own offline filters are not messaging's
            picked = choices_step.parse_choices(form, selected, _offline_slugs())
            if picked.email_on:  # [h1a] the email methods become this client's only now
                directory, user = _crm(profile)
                mailbox_step.take_email_methods(
                    directory,
                    user.id,
                    incoming=picked.tracking != "none",
                    outgoing=picked.send_crm_email,
                )
            choices_step.save_choices(profile, picked)
            sched = state.scheduler()
            if sched is not None:  # the new interval applies now, not after a restart
                sched.reschedule(MESSAGING, picked.interval_seconds)
            return go("wizard.step", step="done")
        except SetupError as refused:
            error, field, status = refused.msg, refused.field, 422
        except SideError as refused:  # reading or writing the CRM mailbox record
            error, field, status = failure(refused), "tracking", 422
    own = [] if pop3 else user_filters.user_filters(profile)
    offered = [] if pop3 else _offered_filters()
    if graph:  # graph-wire: only the kinds a Graph mailbox syncs (offline filters are the CRM's)
        own = [f for f in own if f.kind in kinds_here]
        offered = [f for f in offered if f.kind in kinds_here or f.kind.startswith("offline:")]
    counts, count_error = (
        _counts(profile, [f.slug for f in offered], own) if offered or own else ({}, None)
    )
    if filter_error is not None:
        status = 422
    html, code = page(
        "choices",
        profile,
        status=200 if is_htmx() else status,
        pop3=pop3,
        graph=graph,  # graph-wire
        own_filters=own,
        describe_filter=_describer(profile, own),
        **builder_context(profile, new_filter or {}, filter_error),
        filters=offered,
        kind_labels=choices_step.KIND_LABELS,
        selected=selected,
        counts=counts,
        count_error=count_error,
        form=form,
        checks=checks,
        tracking_options=choices_step.TRACKING_OPTIONS,
        error=error,
        field=field,
        intervals=choices_step.INTERVALS,
        directions=choices_step.DIRECTIONS,
        field_groups=choices_step.FIELD_GROUPS,
        **_offline_context(  # [offline2]
            selected if request.method == "POST" else None, stored.filters
        ),
    )
    if error is not None and is_htmx():
        # the refusal in view, beside the Next button just pressed: the swap alone leaves
        # the scroll where the builders below the form (which load themselves) put it
        return html, code, {"HX-Reswap": "outerHTML show:[data-testid=error]:bottom"}
    return html, code


# [offline2] the own offline filters' part of the step (webapp/offline_filters.py) ------------


def _offline_slugs() -> set[str]:
    from webapp.offline_filters import offline_slugs

    return offline_slugs()


def _offline_context(selected: list[str] | None, stored: tuple[str, ...]) -> dict[str, Any]:
    from webapp.offline_filters import choices_context

    return choices_context(selected, stored)


# [/offline2] --------------------------------------------------------------------------------


# --- the own-filter builder: htmx swaps just the builder, the step's form keeps its choices ---


def _builder_kind(form: Mapping[str, str]) -> str:
    kind = form.get("filter_kind", "")
    return kind if kind in user_filters.FIELDS else next(iter(user_filters.FIELDS))


def builder_rows(form: Mapping[str, str]) -> list[ConditionRow]:
    """The builder's lines for the chosen kind (`webapp.conditions.condition_rows`)."""
    kind = _builder_kind(form)
    return condition_rows(form, lambda column: user_filters.field_def(kind, column))


def _raw_value(form: Mapping[str, str], row: ConditionRow) -> str:
    """What the server validates for a line: for a date, "days from today" (when given) wins
    over the date picker, as the relative form "today+N" the engine resolves at each run."""
    typed_days = form.get(f"days_{row.index}", "").strip()
    if row.field is not None and row.field.type == "date" and typed_days:
        try:
            days = int(typed_days)
        except ValueError:
            raise SetupError(
                N_("%(field)s: days from today is a whole number, such as 7 or -30.",
                   field=row.field.label),
                "value",
            ) from None  # fmt: skip
        return "today" if days == 0 else f"today{days:+d}"
    return form.get(f"value_{row.index}", "")


def _picker_users(profile: Profile, rows: list[ConditionRow]) -> tuple[list[CrmUser], Msg | None]:
    """The CRM's users for an owner line (asked only when a line tests the owner)."""
    if not any(r.field is not None and r.field.type == "user" for r in rows):
        return [], None
    found, error = guarded(lambda: _crm(profile)[0].users())
    return found or [], error


def builder_context(
    profile: Profile, form: Mapping[str, str], error: Msg | None = None
) -> dict[str, Any]:
    rows = builder_rows(form)
    users, users_error = _picker_users(profile, rows)
    return {
        "new_filter": {**form, "filter_kind": _builder_kind(form)},
        "builder_rows": rows,
        "kind_fields": user_filters.FIELDS[_builder_kind(form)],
        "filter_kinds": user_filters.KINDS,
        "picker_users": users,
        "filter_error": error or users_error,
        "me": user_filters.ME_WORD,
    }


def _builder(
    profile: Profile, form: Mapping[str, str], error: Msg | None = None, redraw: bool = False
) -> str:
    """The builder alone; `redraw`: for a change of kind or field (the name box is kept)."""
    return render_template(
        "wizard/_filter_builder.html", redraw=redraw, **builder_context(profile, form, error)
    )


@bp.post("/choices/filters/builder")
def filter_builder() -> Any:
    """htmx: redraw the builder for the chosen kind and fields (no validation yet)."""
    profile = current_profile()
    if not reachable(profile, "choices"):
        return redirect(url_for("wizard.step", step=profile.current_step()))
    return _builder(profile, dict(request.form.items()), redraw=True)


@bp.post("/choices/filters")
def add_user_filter() -> Any:
    """Add one of the user's own filters (enabled). With htmx the answer is the builder again
    (with its error, or empty) and the new filter's line added to the step's form, its box
    ticked, so that nothing else the user chose on the page is lost; without, the page."""
    profile = current_profile()
    if not reachable(profile, "choices"):
        return redirect(url_for("wizard.step", step=profile.current_step()))
    form = dict(request.form.items())
    kind, name = form.get("filter_kind", ""), form.get("filter_name", "")
    if form.get("action") == "refresh":  # the kind or a field changed, without JavaScript
        return choices_view(profile, new_filter=form)
    try:
        rows = [
            (form.get(f"field_{r.index}", ""), form.get(f"op_{r.index}", ""), _raw_value(form, r))
            for r in builder_rows(form)
        ]  # as posted: the server's checks are the authority, not what the page offered
        conditions = user_filters.parse_filter(kind, name, rows)
    except SetupError as refused:
        if is_htmx():
            return _builder(profile, form, refused.msg)
        return choices_view(profile, new_filter=form, filter_error=refused.msg)
    made = user_filters.add_filter(profile, kind, name, conditions)
    if not is_htmx():
        return go("wizard.step", step="choices")
    counts, count_error = _counts(profile, [], [made])
    fresh = {"filter_kind": kind}
    html = render_template(
        "wizard/_filter_added.html",
        added=made,
        counts=counts,
        count_error=count_error,
        describe_filter=_describer(profile, [made]),
        own_filters=user_filters.user_filters(profile),
        **builder_context(profile, fresh),
    )
    # the step's totals count the new (ticked) filter too: their fieldset listens for this
    return Response(
        html, mimetype="text/html", headers={"HX-Trigger-After-Settle": "filters-changed"}
    )


def _user_names(profile: Profile, wanted: set[str]) -> dict[str, str]:
    """The full names of the CRM users `wanted` (ids); an id that cannot be read stays an id."""
    if not wanted:
        return {}

    def read() -> dict[str, str]:
        directory = _crm(profile)[0]
        return {user_id: directory.user_name(user_id) for user_id in sorted(wanted)}

    names, _error = guarded(read)
    return names or {}


def _describer(profile: Profile, filters: list[UserFilter]) -> Callable[[UserFilter], Any]:
    """`user_filters.describe` with the names of the users the filters name (looked up once)."""
    names = _user_names(profile, user_filters.user_ids(filters))
    return lambda found: user_filters.describe(found, names)


@bp.post("/choices/filters/<int:filter_id>/delete")
def delete_user_filter(filter_id: int) -> Any:
    profile = current_profile()
    user_filters.delete_filter(profile, filter_id)
    return go("wizard.step", step="choices")


@bp.post("/choices/counts")
def choices_counts() -> str:
    """htmx (hx-trigger=change): the live totals for the ticked filters."""
    profile = current_profile()
    selected = [
        s
        for s in request.form.getlist("filters")
        if s in choices_step.BY_SLUG and not choices_step.is_offline(s)
    ]

    ticked = set(request.form.getlist("filters"))
    own = [f for f in user_filters.user_filters(profile) if f.slug in ticked]

    def union() -> dict[str, int]:
        directory, user = _crm(profile)
        tz = str(profile.get("timezone") or "UTC")
        return choices_step.count_union(directory, selected, user.id, own, tz)

    counted, error = guarded(union)
    totals = counted or {}
    return render_template(
        "wizard/_totals.html", totals=totals, kind_labels=choices_step.KIND_LABELS, error=error
    )


# --- done -----------------------------------------------------------------------------------


def done_view(profile: Profile) -> Any:
    if request.method == "POST":
        sched = state.scheduler()
        if sched is not None:  # the first sync starts now, not one interval later
            sched.sync_now(MESSAGING)
        return go("dashboard.index")
    own = user_filters.user_filters(profile)
    names = _user_names(profile, user_filters.user_ids(own))
    stored_kinds = profile.get("kinds", []) or []
    kinds = [k for k in choices_step.FIELD_GROUPS if k in stored_kinds]  # the page's order
    directions = dict(choices_step.current_choices(profile).directions or {})
    return page(
        "done",
        profile,
        org=profile.synchronizing_org(),
        connected=profile.connected_orgs(),
        mailbox=profile.mailbox(),
        choices=choices_step.current_choices(profile),
        tracking_options=choices_step.TRACKING_OPTIONS,
        kinds=kinds,
        kind_labels=choices_step.KIND_LABELS,
        chosen_filters=choices_step.chosen_filters(profile, names),
        direction_rows=[
            (label, choices_step.DIRECTIONS.get(directions.get(group, "both"), label))
            for group, label in choices_step.FIELD_GROUPS.items()
            if group in kinds
        ],
    )


VIEWS: dict[str, Callable[[Profile], Any]] = {
    "organization": organization_view,
    "mailbox": mailbox_view,
    "instance": instance_view,
    "choices": choices_view,
    "done": done_view,
}
