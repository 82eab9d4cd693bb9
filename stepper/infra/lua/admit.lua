-- Admission alone, before a provider call (stepper.guards.admission): KEYS and ARGV as admission.lua's admit takes them.
return admit(KEYS, ARGV)
