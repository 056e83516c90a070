"""Sandbox EWS: a task's Status, PercentComplete and CompleteDate agree, as in Exchange.

The EWS reference, office-developer-exchange-docs docs/web-service-reference/status.md and
percentcomplete.md (Remarks): setting PercentComplete to 100, setting CompleteDate and setting
Status to Completed have the same effect; in a request that sets two or more of them the last
one processed decides ("if PercentComplete is 100, CompleteDate is 1/1/2007, and Status is
NotStarted, and the properties are streamed in this order, the effect will be to set the Status
of the task to NotStarted, the CompleteDate to null, and the PercentComplete to 0"). Raw SOAP,
because exchangelib cleans inconsistent pairs before sending them.
"""

from __future__ import annotations

from typing import Any

from tests.sandbox.test_ews_server_soap import NS, call, codes, update


def create_task(server: Any, fields: str) -> tuple[str, str]:
    status, root = call(
        server,
        f"<m:CreateItem><m:Items><t:Task><t:Subject>Task</t:Subject>{fields}</t:Task>"
        "</m:Items></m:CreateItem>",
    )
    assert status == 200 and codes(root) == ["NoError"], codes(root)
    item_id = root.find(".//t:ItemId", NS)
    return item_id.get("Id"), item_id.get("ChangeKey")


def progress(server: Any, item_id: str) -> tuple[str | None, str | None, str | None]:
    status, root = call(
        server,
        "<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape>"
        '<t:AdditionalProperties><t:FieldURI FieldURI="task:CompleteDate"/>'
        "</t:AdditionalProperties></m:ItemShape>"
        f'<m:ItemIds><t:ItemId Id="{item_id}"/></m:ItemIds></m:GetItem>',
    )
    assert status == 200
    task = root.find(".//t:Task", NS)
    return (
        task.findtext("t:Status", namespaces=NS),
        task.findtext("t:PercentComplete", namespaces=NS),
        task.findtext("t:CompleteDate", namespaces=NS),
    )


def set_field(name: str, value: str) -> str:
    return (
        f'<t:SetItemField><t:FieldURI FieldURI="task:{name}"/>'
        f"<t:Task><t:{name}>{value}</t:{name}></t:Task></t:SetItemField>"
    )


def test_the_last_of_the_three_decides_as_in_the_reference_example(server: Any) -> None:
    item_id, _ = create_task(
        server,
        "<t:CompleteDate>2007-01-01T00:00:00Z</t:CompleteDate>"
        "<t:PercentComplete>100</t:PercentComplete><t:Status>NotStarted</t:Status>",
    )
    assert progress(server, item_id) == ("NotStarted", "0", None)


def test_not_started_at_fifty_is_stored_at_zero(server: Any) -> None:
    item_id, _ = create_task(
        server, "<t:PercentComplete>50</t:PercentComplete><t:Status>NotStarted</t:Status>"
    )
    assert progress(server, item_id)[:2] == ("NotStarted", "0")


def test_completed_means_one_hundred_and_a_completion_date(server: Any) -> None:
    item_id, _ = create_task(
        server, "<t:PercentComplete>40</t:PercentComplete><t:Status>Completed</t:Status>"
    )
    status, percent, date = progress(server, item_id)
    assert (status, percent) == ("Completed", "100") and date


def test_one_hundred_percent_completes_the_task(server: Any) -> None:
    item_id, _ = create_task(
        server, "<t:Status>InProgress</t:Status><t:PercentComplete>100</t:PercentComplete>"
    )
    status, percent, date = progress(server, item_id)
    assert (status, percent) == ("Completed", "100") and date


def test_a_consistent_pair_is_kept_as_sent(server: Any) -> None:
    item_id, _ = create_task(
        server, "<t:PercentComplete>50</t:PercentComplete><t:Status>InProgress</t:Status>"
    )
    assert progress(server, item_id) == ("InProgress", "50", None)


def test_updates_follow_the_same_rule_in_request_order(server: Any) -> None:
    item_id, key = create_task(
        server, "<t:PercentComplete>50</t:PercentComplete><t:Status>InProgress</t:Status>"
    )
    status, root = update(server, item_id, key, set_field("Status", "Completed"))
    assert status == 200 and codes(root) == ["NoError"]
    done = progress(server, item_id)
    assert done[:2] == ("Completed", "100") and done[2]
    status, root = update(
        server,
        item_id,
        None,
        set_field("PercentComplete", "100") + set_field("Status", "NotStarted"),
    )
    assert status == 200 and codes(root) == ["NoError"]
    assert progress(server, item_id) == ("NotStarted", "0", None)
    update(
        server,
        item_id,
        None,
        set_field("Status", "NotStarted") + set_field("PercentComplete", "100"),
    )
    assert progress(server, item_id)[:2] == ("Completed", "100")


def test_a_derived_change_is_an_item_change(server: Any) -> None:
    """SyncFolderItems and conflict detection see the fields the server set itself."""
    item_id, key = create_task(
        server, "<t:PercentComplete>50</t:PercentComplete><t:Status>InProgress</t:Status>"
    )
    update(server, item_id, key, set_field("Status", "NotStarted"))
    # A stale key that set only PercentComplete collides with the server's own change of it.
    status, root = update(server, item_id, key, set_field("PercentComplete", "30"))
    assert codes(root) == ["ErrorIrresolvableConflict"]
