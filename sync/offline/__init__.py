"""Offline (DESIGN.md §1.4, issue 12): CRM rows kept in the local database to work on without a
connection, the queue of local changes, and their reconciliation on going online.

- `store`: `OfflineStore` (list/get/create/update/delete; each change and its queue item in one
  transaction), the mode and the conflict policy settings;
- `download`: go offline / refresh (change tracking, offline filters applied here);
- `metadata`: what the editor needs of a table (labels, types, choices, lookup targets);
- `merge`: the field-level three-way merge (pure);
- `replay`: go online (journalled, crash-safe replay with `If-Match`, conflicts recorded);
- `service`: the above behind one `OfflineService` (job lock held), `job`: the scheduled job,
  `connect`: the service from the stored profile, `cli`: `run.py offline …`,
  `resolve`: taking the other side of an offline conflict.
"""
