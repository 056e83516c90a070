"""Display names and option sets the sandbox serves in two languages, English (1033) and
Japanese (1041), as a Dynamics 365 organization with the Japanese language pack does.

`DisplayName` is a Label: `LocalizedLabels` (every language installed) and `UserLocalizedLabel`
("the label for the language of the current user", Label.UserLocalizedLabel; the user's UI
language is usersettings.uilanguageid). Options carry labels the same way (powerapps-docs
webapi/query-metadata-web-api.md, "Retrieving attributes": `OptionSet.Options[].Label`).

English labels follow the entity reference pages' display names; Japanese ones the product's
Japanese UI where known. A column without an entry gets a label made from its logical name in
both languages (never an empty label), so a form built from metadata is always labelled.
"""

from __future__ import annotations

import uuid
from typing import Any

ENGLISH, JAPANESE = 1033, 1041
LANGUAGES = (ENGLISH, JAPANESE)
_NAMESPACE = uuid.UUID("5d0c8f8e-3b1e-4b7a-9a57-0b3f9a6c2e11")

TABLES: dict[str, tuple[str, str]] = {
    "account": ("Account", "取引先企業"),
    "contact": ("Contact", "取引先担当者"),
    "lead": ("Lead", "リード"),
    "opportunity": ("Opportunity", "営業案件"),
    "task": ("Task", "タスク"),
    "appointment": ("Appointment", "予定"),
    "recurringappointmentmaster": ("Recurring Appointment", "定期的な予定"),
    "email": ("Email", "電子メール"),
    "systemuser": ("User", "ユーザー"),
    "mailbox": ("Mailbox", "メールボックス"),
    "activityparty": ("Activity Party", "活動パーティ"),
    "activitypointer": ("Activity", "活動"),
    "usersettings": ("User Settings", "ユーザー設定"),
}

COLUMNS: dict[str, tuple[str, str]] = {
    # people
    "fullname": ("Full Name", "氏名"),
    "firstname": ("First Name", "名"),
    "lastname": ("Last Name", "姓"),
    "middlename": ("Middle Name", "ミドル ネーム"),
    "nickname": ("Nickname", "ニックネーム"),
    "salutation": ("Salutation", "敬称"),
    "suffix": ("Suffix", "接尾辞"),
    "yomifirstname": ("Yomi First Name", "名 (ふりがな)"),
    "yomilastname": ("Yomi Last Name", "姓 (ふりがな)"),
    "jobtitle": ("Job Title", "役職"),
    "department": ("Department", "部署"),
    "company": ("Company Name", "会社名"),
    "companyname": ("Company Name", "会社名"),
    "birthdate": ("Birthday", "誕生日"),
    "anniversary": ("Anniversary", "記念日"),
    "gendercode": ("Gender", "性別"),
    "familystatuscode": ("Marital Status", "配偶者の有無"),
    "spousesname": ("Spouse/Partner Name", "配偶者/パートナーの名前"),
    "assistantname": ("Assistant", "アシスタント"),
    "assistantphone": ("Assistant Phone", "アシスタントの電話"),
    "managername": ("Manager", "マネージャー"),
    "managerphone": ("Manager Phone", "マネージャーの電話"),
    "governmentid": ("Government", "政府機関 ID"),
    "preferredcontactmethodcode": ("Preferred Method of Contact", "優先する連絡方法"),
    "donotemail": ("Do not allow Emails", "電子メールを許可しない"),
    "donotphone": ("Do not allow Phone Calls", "電話を許可しない"),
    # contact details
    "emailaddress1": ("Email", "電子メール"),
    "emailaddress2": ("Email Address 2", "電子メール アドレス 2"),
    "emailaddress3": ("Email Address 3", "電子メール アドレス 3"),
    "telephone1": ("Business Phone", "勤務先電話"),
    "telephone2": ("Home Phone", "自宅電話"),
    "telephone3": ("Telephone 3", "電話番号 3"),
    "mobilephone": ("Mobile Phone", "携帯電話"),
    "fax": ("Fax", "FAX"),
    "pager": ("Pager", "ポケットベル"),
    "websiteurl": ("Website", "Web サイト"),
    # accounts, leads, opportunities
    "name": ("Name", "名前"),
    "accountnumber": ("Account Number", "取引先企業番号"),
    "industrycode": ("Industry", "業種"),
    "revenue": ("Annual Revenue", "年間売上高"),
    "numberofemployees": ("Number of Employees", "従業員数"),
    "tickersymbol": ("Ticker Symbol", "銘柄コード"),
    "leadsourcecode": ("Lead Source", "リード ソース"),
    "leadqualitycode": ("Rating", "評価"),
    "estimatedvalue": ("Est. Revenue", "見込売上高"),
    "estimatedclosedate": ("Est. Close Date", "完了予定日"),
    "closeprobability": ("Probability", "確度"),
    # activities
    "subject": ("Subject", "件名"),
    "description": ("Description", "説明"),
    "location": ("Location", "場所"),
    "scheduledstart": ("Start Date", "開始日"),
    "scheduledend": ("Due Date", "期限"),
    "actualstart": ("Actual Start", "実際の開始"),
    "actualend": ("Actual End", "実際の終了"),
    "actualdurationminutes": ("Actual Duration", "実際の所要時間"),
    "scheduleddurationminutes": ("Duration", "所要時間"),
    "prioritycode": ("Priority", "優先度"),
    "percentcomplete": ("Percent Complete", "達成率"),
    "category": ("Category", "区分"),
    "subcategory": ("Sub-Category", "サブカテゴリ"),
    "activitytypecode": ("Activity Type", "活動の種類"),
    "isregularactivity": ("Is Regular Activity", "通常の活動"),
    "isbilled": ("Is Billed", "請求済み"),
    "isworkflowcreated": ("Is Workflow Created", "ワークフローで作成"),
    "isalldayevent": ("All Day Event", "終日イベント"),
    "ismapiprivate": ("Is Private", "非公開"),
    "isonlinemeeting": ("Is Online Meeting", "オンライン会議"),
    "onlinemeetingjoinurl": ("Online Meeting Join URL", "オンライン会議への参加 URL"),
    "onlinemeetingid": ("Online Meeting ID", "オンライン会議 ID"),
    "onlinemeetingtype": ("Online Meeting Type", "オンライン会議の種類"),
    "instancetypecode": ("Appointment Type", "予定の種類"),
    "originalstartdate": ("Original Start Date", "元の開始日"),
    "globalobjectid": ("Outlook Appointment ID", "Outlook 予定 ID"),
    "outlookownerapptid": ("Outlook Owner Appointment ID", "Outlook 所有者の予定 ID"),
    "isunsafe": ("Is Unsafe", "安全でない"),
    "attachmentcount": ("Attachment Count", "添付ファイル数"),
    "modifiedfieldsmask": ("Modified Fields Mask", "変更されたフィールドのマスク"),
    "exchangeitemid": ("Exchange Item ID", "Exchange アイテム ID"),
    "exchangeweblink": ("Exchange WebLink", "Exchange Web リンク"),
    "crmtaskassigneduniqueid": ("Task Assigned Unique ID", "タスク割り当て一意 ID"),
    "onholdtime": ("On Hold Time (Minutes)", "保留時間 (分)"),
    "lastonholdtime": ("Last On Hold Time", "前回の保留時刻"),
    "sortdate": ("Sort Date", "並べ替え日"),
    "senton": ("Date Sent", "送信日"),
    # state and system
    "statecode": ("Status", "状態"),
    "statuscode": ("Status Reason", "ステータス理由"),
    "createdon": ("Created On", "作成日"),
    "modifiedon": ("Modified On", "修正日"),
    "versionnumber": ("Version Number", "バージョン番号"),
    "overriddencreatedon": ("Record Created On", "レコード作成日"),
    "importsequencenumber": ("Import Sequence Number", "インポート シーケンス番号"),
    "timezoneruleversionnumber": (
        "Time Zone Rule Version Number",
        "タイム ゾーン規則のバージョン番号",
    ),
    "utcconversiontimezonecode": ("UTC Conversion Time Zone Code", "UTC 変換タイム ゾーン コード"),
    # lookups (by attribute name)
    "ownerid": ("Owner", "所有者"),
    "createdby": ("Created By", "作成者"),
    "modifiedby": ("Modified By", "修正者"),
    "owningbusinessunit": ("Owning Business Unit", "所有部署"),
    "parentcustomerid": ("Company Name", "会社名"),
    "parentaccountid": ("Parent Account", "親取引先企業"),
    "parentcontactid": ("Parent Contact", "親取引先担当者"),
    "primarycontactid": ("Primary Contact", "取引先担当者 (主)"),
    "customerid": ("Potential Customer", "潜在顧客"),
    "regardingobjectid": ("Regarding", "関連"),
    "seriesid": ("Series Id", "シリーズ ID"),
}
"""column (a lookup by its attribute name) → (English, Japanese) display name."""
PER_TABLE: dict[tuple[str, str], tuple[str, str]] = {
    ("account", "name"): ("Account Name", "取引先企業名"),
    ("account", "telephone1"): ("Main Phone", "代表電話"),
    ("account", "telephone2"): ("Other Phone", "その他の電話"),
    ("opportunity", "name"): ("Topic", "トピック"),
    ("lead", "subject"): ("Topic", "トピック"),
    ("appointment", "scheduledend"): ("End Time", "終了時刻"),
    ("appointment", "scheduledstart"): ("Start Time", "開始時刻"),
}
_ADDRESS_PARTS = {
    "line1": ("Street 1", "番地 1"),
    "line2": ("Street 2", "番地 2"),
    "line3": ("Street 3", "番地 3"),
    "city": ("City", "市区町村"),
    "stateorprovince": ("State/Province", "都道府県"),
    "postalcode": ("ZIP/Postal Code", "郵便番号"),
    "country": ("Country/Region", "国/地域"),
    "county": ("County", "郡"),
    "telephone1": ("Telephone 1", "電話番号 1"),
    "name": ("Name", "名前"),
}

_YES_NO = ((1, "Yes", "はい"), (0, "No", "いいえ"))
_ALLOW = ((1, "Do Not Allow", "許可しない"), (0, "Allow", "許可する"))
BOOLEANS: dict[str, tuple[tuple[int, str, str], ...]] = {
    "donotemail": _ALLOW,
    "donotphone": _ALLOW,
}
"""Two-option columns whose labels are not Yes/No: (value, English, Japanese) true first."""

_ACTIVE = ((0, "Active", "アクティブ"), (1, "Inactive", "非アクティブ"))
_ACTIVE_STATUS = ((1, "Active", "アクティブ"), (2, "Inactive", "非アクティブ"))
_PRIORITY = ((0, "Low", "低"), (1, "Normal", "標準"), (2, "High", "高"))
OPTIONS: dict[tuple[str, str], tuple[tuple[int, str, str], ...]] = {
    ("contact", "statecode"): _ACTIVE,
    ("contact", "statuscode"): _ACTIVE_STATUS,
    ("account", "statecode"): _ACTIVE,
    ("account", "statuscode"): _ACTIVE_STATUS,
    ("contact", "gendercode"): ((1, "Male", "男性"), (2, "Female", "女性")),
    ("contact", "familystatuscode"): (
        (1, "Single", "独身"), (2, "Married", "既婚"), (3, "Divorced", "離婚"),
        (4, "Widowed", "死別"),
    ),
    ("contact", "preferredcontactmethodcode"): (
        (1, "Any", "指定なし"), (2, "Email", "電子メール"), (3, "Phone", "電話"),
        (4, "Fax", "FAX"), (5, "Mail", "郵便"),
    ),
    ("account", "industrycode"): (
        (1, "Accounting", "会計"), (6, "Business Services", "ビジネス サービス"),
        (7, "Consulting", "コンサルティング"), (16, "Financial", "金融"),
        (20, "Insurance", "保険"), (21, "Legal Services", "法律サービス"),
        (30, "Transportation", "運輸"), (33, "Wholesale", "卸売"),
    ),
    ("lead", "statecode"): ((0, "Open", "オープン"), (1, "Qualified", "認定済み"),
                            (2, "Disqualified", "不認定")),
    ("lead", "statuscode"): (
        (1, "New", "新規"), (2, "Contacted", "連絡済み"), (3, "Qualified", "認定済み"),
        (4, "Lost", "損失"), (5, "Cannot Contact", "連絡不可"),
        (6, "No Longer Interested", "関心なし"), (7, "Canceled", "キャンセル済み"),
    ),
    ("lead", "leadsourcecode"): (
        (1, "Advertisement", "広告"), (2, "Employee Referral", "従業員の紹介"),
        (3, "External Referral", "外部からの紹介"), (4, "Partner", "パートナー"),
        (5, "Public Relations", "広報"), (6, "Seminar", "セミナー"),
        (7, "Trade Show", "展示会"), (8, "Web", "Web"), (9, "Word of Mouth", "口コミ"),
        (10, "Other", "その他"),
    ),
    ("lead", "leadqualitycode"): ((1, "Hot", "ホット"), (2, "Warm", "ウォーム"),
                                  (3, "Cold", "コールド")),
    ("opportunity", "statecode"): ((0, "Open", "オープン"), (1, "Won", "受注"),
                                   (2, "Lost", "失注")),
    ("opportunity", "statuscode"): (
        (1, "In Progress", "進行中"), (2, "On Hold", "保留"), (3, "Won", "受注"),
        (4, "Canceled", "キャンセル済み"), (5, "Out-Sold", "他社に敗退"),
    ),
    ("task", "statecode"): ((0, "Open", "オープン"), (1, "Completed", "完了"),
                            (2, "Canceled", "キャンセル済み")),
    ("task", "statuscode"): (
        (2, "Not Started", "未開始"), (3, "In Progress", "進行中"),
        (4, "Waiting on someone else", "他者の作業待ち"), (7, "Deferred", "延期"),
        (5, "Completed", "完了"), (6, "Canceled", "キャンセル済み"),
    ),
    ("task", "prioritycode"): _PRIORITY,
    ("appointment", "prioritycode"): _PRIORITY,
    ("appointment", "statecode"): (
        (0, "Open", "オープン"), (1, "Completed", "完了"), (2, "Canceled", "キャンセル済み"),
        (3, "Scheduled", "スケジュール済み"),
    ),
    ("appointment", "statuscode"): (
        (1, "Free", "空き時間"), (2, "Tentative", "仮承諾"), (3, "Completed", "完了"),
        (4, "Canceled", "キャンセル済み"), (5, "Busy", "予定あり"), (6, "Out of Office", "外出中"),
    ),
    ("appointment", "instancetypecode"): (
        (0, "Not Recurring", "定期的でない"), (1, "Recurring Master", "定期的な予定のマスター"),
        (2, "Recurring Instance", "定期的な予定のインスタンス"),
        (3, "Recurring Exception", "定期的な予定の例外"),
        (4, "Recurring Future Exception", "定期的な予定の将来の例外"),
    ),
    ("appointment", "onlinemeetingtype"): ((1, "Teams Meeting", "Teams 会議"),),
}  # fmt: skip
"""(table, column) → options: (value, English, Japanese)."""


def _id(*parts: Any) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def label(texts: tuple[str, str], language: int, *key: Any) -> dict[str, Any]:
    """A Label complex type: both languages, and the caller's as UserLocalizedLabel."""
    localized = [
        {
            "Label": text,
            "LanguageCode": code,
            "IsManaged": True,
            "MetadataId": _id(*key, code),
            "HasChanged": None,
        }
        for code, text in zip(LANGUAGES, texts, strict=True)
    ]
    mine = next((x for x in localized if x["LanguageCode"] == language), localized[0])
    return {"LocalizedLabels": localized, "UserLocalizedLabel": mine}


def _words(name: str) -> str:
    return " ".join(w.capitalize() for w in name.replace("_", " ").split()) or name


def table_texts(logical_name: str) -> tuple[str, str]:
    words = _words(logical_name)
    return TABLES.get(logical_name, (words, words))


def column_texts(table: str, column: str) -> tuple[str, str]:
    """(English, Japanese) display name of a column (a lookup by its attribute name)."""
    found = PER_TABLE.get((table, column)) or COLUMNS.get(column)
    if found:
        return found
    prefix, _, part = column.partition("_")
    if prefix in ("address1", "address2") and part in _ADDRESS_PARTS:
        number = prefix[-1]
        english, japanese = _ADDRESS_PARTS[part]
        return f"Address {number}: {english}", f"住所 {number}: {japanese}"
    return _words(column), _words(column)


def options(table: str, column: str, kind: str) -> list[tuple[int, str, str]] | None:
    """A choice column's options, or a two-option column's (true first); None: not known."""
    if kind == "bool":
        return list(BOOLEANS.get(column, _YES_NO))
    found = OPTIONS.get((table, column))
    return list(found) if found else None
