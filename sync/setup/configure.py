"""The wizard without a browser (`run.py configure`): the same steps, checks and messages.

Every step runs in the wizard's order; the first refusal stops with its message (the CLI
exits 2), and what was accepted before it stays stored, as in the wizard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sync.setup import choices as choices_step
from sync.setup import instance, mailbox, organizations, user_filters
from sync.setup.messages import N_, SetupError
from sync.setup.ports import CrmUser, SetupPorts
from sync.setup.profile import Profile


@dataclass
class ConfigureOptions:
    org: str
    connected: Sequence[str] = ()
    confirm_org_change: bool = False
    mailbox_form: dict[str, str] = field(default_factory=dict)
    """The mailbox step's form fields (type, email, ews_url, auth, username, password, …)."""
    set_methods: bool = False
    """Consent to set the CRM mailbox record's methods to this client."""
    take_over: bool | None = None
    filters: Sequence[str] | None = None
    own_filters: Sequence[str] = ()
    """Filters of one's own, as `user_filters.parse_spec` reads them; added and ticked."""
    tracking: str | None = None
    """[h1a] None: as stored, or "none" on a first run (email is taken from server-side sync
    only when asked: any other option sets Incoming Email to this client)."""
    interval_seconds: int = 300
    # [h1a] email: Sent Items tracked too, messages of the last N days, CRM email sent here
    track_sent_items: bool = True
    track_days_back: int = 0
    send_crm_email: bool = False
    directions: dict[str, str] = field(default_factory=dict)


def configure(profile: Profile, ports: SetupPorts, options: ConfigureOptions) -> list[str]:
    """Run every step; returns what was done, line by line. Raises SetupError."""
    done: list[str] = []
    if not profile.signed_in_upn:
        raise SetupError(
            N_("Sign in first: run `signin` (or open the app and sign in), then run this again.")
        )
    if options.org.lower() in (name.lower() for name in options.connected):
        # the wizard's page cannot ask for this; here it is a contradiction, not a choice
        raise SetupError(
            N_(
                "%(name)s is the synchronizing organization, so it cannot also be a connected "
                "one: leave it out of --connect.",
                name=options.org,
            ),
            "connected",
        )
    available = organizations.list_organizations(ports.discovery())
    chosen = organizations.find_by_unique_name(available, options.org)
    connected = [organizations.find_by_unique_name(available, n).id for n in options.connected]
    organizations.choose(
        profile,
        available,
        organizations.OrgChoice(chosen.id, tuple(connected)),
        confirmed=options.confirm_org_change,
    )
    done.append(f"Synchronizing organization: {chosen.friendly_name} ({chosen.unique_name})")

    directory = ports.directory(chosen)
    done += [f"  {n}" for n in organizations.check_change_readers(profile, lambda: directory)]
    user: CrmUser = directory.current_user()
    config, secrets = mailbox.parse_mailbox_form(options.mailbox_form, profile.mailbox_secrets())
    record = mailbox.check_mailbox_owner(directory, user, config.email)
    if options.set_methods:
        record = mailbox.set_to_this_client(directory, record, consent=True)
    mailbox.save_mailbox(profile, directory, ports.mailbox_tester(), user, config, secrets)
    done.append(f"Mailbox: {config.email} ({config.type}), connection tested")
    if config.type == "graph":  # graph-wire (issue 9)
        done.append("  Through Microsoft Graph: contacts, appointments, tasks and email")
    stored = choices_step.current_choices(profile)
    tracking = options.tracking or (stored.tracking if profile.step_done("choices") else "none")
    email = mailbox.email_workloads(tracking != "none", options.send_crm_email)
    for status in mailbox.delivery_status(record, config.type, email):
        mark = "ok" if status.is_this_client else "NOT this client"
        if status.workload in email and not status.is_this_client:
            mark = "NOT this client yet: set with the email choices below"
        if not status.synced_here:
            mark = (
                "left as it is: email is off here"
                if status.workload != "act"
                else ("left as it is: a POP3 mailbox has no contacts, calendar or tasks")
            )
        done.append(f"  {status.label}: {status.current} [{mark}]")

    store = ports.claims(chosen, config, user)
    state = instance.decide(profile, store, options.take_over)
    if profile.messaging_enabled:
        done.append(f"Synchronizing computer: this one ({profile.instance_name})")
    else:
        done.append(str(instance.not_synchronizing_reason(state.holder_name)))

    specs = [user_filters.parse_spec(spec) for spec in options.own_filters]  # all valid first
    picked = (
        list(options.filters)
        if options.filters is not None
        else list(choices_step.current_choices(profile).filters)
    )
    for kind, name, conditions in specs:
        picked.append(user_filters.replace_filter(profile, kind, name, conditions).slug)
    form = {
        "tracking": tracking,
        "interval_seconds": str(options.interval_seconds),
        **{f"direction_{k}": v for k, v in options.directions.items()},
        "email_form": "1",
        "track_sent_items": "1" if options.track_sent_items else None,
        "track_days_back": str(options.track_days_back),
        "token_enabled": "1" if stored.token_enabled else None,
        "token_prefix": stored.token_prefix,
        "send_crm_email": "1" if options.send_crm_email else None,
    }
    picked_choices = choices_step.parse_choices(
        {k: v for k, v in form.items() if v is not None}, picked
    )
    if picked_choices.email_on:  # as the wizard: the email methods become this client's now
        record = (
            mailbox.take_email_methods(
                directory,
                user.id,
                incoming=picked_choices.tracking != "none",
                outgoing=picked_choices.send_crm_email,
            )
            or record
        )
        for status in mailbox.delivery_status(record, config.type, email):
            if status.workload in email:
                done.append(f"  {status.label}: {status.current} [ok: email is on]")
    choices_step.save_choices(profile, picked_choices)
    done.append(
        f"Filters: {', '.join(picked_choices.filters) or 'none'}; tracking: "
        f"{picked_choices.tracking}"
        f"{'' if picked_choices.track_sent_items else ' (not Sent Items)'}"
        f"{f', the last {picked_choices.track_days_back} days' if picked_choices.track_days_back else ''}"
        f"; sending CRM email: {'on' if picked_choices.send_crm_email else 'off'}"
        f"; every {picked_choices.interval_seconds} s"
    )
    return done
