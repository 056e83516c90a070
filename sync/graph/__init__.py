"""Microsoft Graph mailbox access: the httpx client and the Graph side (contacts, tasks)."""
