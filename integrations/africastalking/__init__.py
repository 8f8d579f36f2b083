"""Africa's Talking: the SIM-swap adapter and a local stand-in of AT's HTTP APIs.

The SMS sender lives in ``sms/sender.py``. Nothing is imported here so that
``python -m integrations.africastalking.standin`` stays standard-library only.
"""
