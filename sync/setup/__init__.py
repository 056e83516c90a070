"""The setup wizard's domain logic (no Flask): the stored profile and each step's rules.

The web wizard (`webapp/wizard.py`) and `run.py configure` both call these modules, so a
choice is validated the same way, with the same messages, whichever way it is made.
"""
