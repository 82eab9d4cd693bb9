"""What happens once a task's outcome is final: listeners, each one small, registered in one place.

:mod:`stepper.outcomes.base` draws the listener and :mod:`stepper.outcomes.listeners` the order. The hooks a
deployment registers, the alert counter, the dead-letter store and the webhook are one listener each. None may
change the outcome.
"""
